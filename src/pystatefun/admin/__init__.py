"""The admin HTTP API of a running application (``--admin-port``): health now, inspection and repair
of state, parked addresses and metrics as they are added (docs/admin.md)."""

from pystatefun.admin.api import AdminApi

__all__ = ["AdminApi"]
