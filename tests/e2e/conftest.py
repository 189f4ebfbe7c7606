import subprocess
import sys
from pathlib import Path

import pytest

from .processes import FunctionServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def official_python() -> str:
    result = subprocess.run([str(ROOT / "scripts" / "official-sdk-venv")], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"could not create the official SDK's virtualenv: {result.stderr}")
    return result.stdout.strip()


def official_server(official_python: str, folder: Path, reference: str) -> FunctionServer:
    server = FunctionServer(folder, reference)
    server.command = [official_python, str(Path(__file__).parent / "official_server.py"), str(folder), reference, str(server.port)]
    return server


def our_server(folder: Path, reference: str) -> FunctionServer:
    return FunctionServer(folder, reference)
