"""Fixtures shared by the test folders."""

import pytest

from support import official


@pytest.fixture(scope="session")
def official_python() -> str:
    """The python of the official StateFun SDK's virtualenv (made on first use)."""
    return official.official_python()
