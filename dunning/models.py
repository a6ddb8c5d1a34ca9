"""Dunning models (see DESIGN.md)."""
