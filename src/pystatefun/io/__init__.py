"""Ingresses and egresses."""
