from pathlib import Path

import pytest

from .processes import FunctionServer, Runtime

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def official_server(official_python: str, folder: Path, reference: str) -> FunctionServer:
    script = str(Path(__file__).parent / "official_server.py")
    return FunctionServer(folder, reference, lambda port: [official_python, script, str(folder), reference, str(port)])


def our_server(folder: Path, reference: str) -> FunctionServer:
    return FunctionServer(folder, reference)


FORMS = ["embedded", "remote-pystatefun", "remote-official"]
"""The three ways an example runs: our SDK inside the runtime, our SDK served remotely, the official SDK
served remotely."""


class Deployment:
    """An example's runtime (and function server) in one of FORMS; ``stop`` stops both."""

    def __init__(self, form: str, folder: Path, reference: str, data_dir: Path, official_python: str | None = None,
                 official_folder: Path | None = None):
        self.server = None
        if form == "embedded":
            self.runtime = Runtime(folder / "module.yaml", data_dir)
        else:
            if form == "remote-pystatefun":
                self.server = our_server(folder, reference)
            else:
                self.server = official_server(official_python, official_folder or folder, reference)
            self.server.start()
            self.runtime = Runtime(folder / "module-remote.yaml", data_dir, env={"FUNCTIONS_PORT": str(self.server.port)})
        self.runtime.start()

    def stop(self) -> None:
        self.runtime.stop()
        if self.server:
            self.server.stop()


CART = EXAMPLES / "shopping-cart"
OFFICIAL_CART = Path(__file__).parent / "apps" / "official_cart"  # the same cart, for the official SDK


@pytest.fixture(params=FORMS)
def shop(request, tmp_path):
    """The shopping-cart example running in each of FORMS."""
    official = request.getfixturevalue("official_python") if request.param == "remote-official" else None
    deployment = Deployment(request.param, CART, "shopping_cart:functions", tmp_path / "data", official, OFFICIAL_CART)
    yield deployment.runtime
    deployment.stop()
