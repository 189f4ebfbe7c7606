"""Savepoints: an application at a consistent cut in one portable file (format.py), kept on a local disk
or in blob storage (storage.py), taken from and restored into either backend (embedded.py, kafka.py),
transformed on the way (transform.py). docs/savepoints.md is the user's guide."""
