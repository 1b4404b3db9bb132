"""The library version: one place, read by packaging (pyproject) and by provenance."""

__version__ = "0.1.0"
