"""Persistence: the SQLite history (memory/store.py is its only writer)."""
