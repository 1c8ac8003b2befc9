"""Prefect flows: composition of the functions in `tasks`."""
