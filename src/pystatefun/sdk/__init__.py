"""The SDK users write functions with; ``pystatefun`` re-exports all of it."""
