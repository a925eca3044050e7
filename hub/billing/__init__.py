"""Billing: periods, cost pools, allocation and pricing methods, statements."""
