"""Durability backends: where the log and the stores live, and how an epoch commits."""
