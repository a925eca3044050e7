"""The hub's HTTP side (aiohttp): the worker's health endpoints."""
