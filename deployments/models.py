"""Deployments models (see DESIGN.md)."""
