"""Stub (see ../__init__.py)."""
