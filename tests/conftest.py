"""Fixtures shared by every tier."""

from tests.stack import clean_db, isolated, stack

__all__ = ["clean_db", "isolated", "stack"]
