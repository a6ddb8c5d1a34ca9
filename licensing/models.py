"""Licensing models (see DESIGN.md)."""
