"""Cohub's built-in connectors, each registered through the ``cohub`` entry points."""
