"""s3:// savepoints against a real local S3 server (moto's), configured only by the AWS environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

pytest.importorskip("s3fs", reason="s3:// savepoints need the s3 extra (pip install 'pystatefun[s3]')")

from pystatefun.savepoints import storage  # noqa: E402
from pystatefun.savepoints.format import SavepointError, SavepointReader  # noqa: E402
from support.s3 import MotoServer  # noqa: E402

from . import build  # noqa: E402
from .test_cli import cli, ok, one_line_error  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with MotoServer(log=tmp_path_factory.mktemp("moto") / "moto.log") as running:
        yield running


@pytest.fixture
def bucket(server) -> str:
    """A new bucket, with this process's AWS environment pointing at the server."""
    name = f"savepoints-{uuid.uuid4().hex[:12]}"
    with server.environment():
        server.create_bucket(name)
        yield name


def test_write_read_and_refuse_to_overwrite(server, bucket, tmp_path):
    url = f"s3://{bucket}/app/x.db"
    with storage.writing(url) as path:
        build.write(path)
    assert server.objects(bucket) == ["app/x.db"]  # the object only: no partial or temporary object

    with pytest.raises(SavepointError, match=f"^{url} exists already: give the savepoint a new path"):
        with storage.writing(url):
            pass
    with storage.reading(url) as path, SavepointReader(path, describe=url) as reader:
        reader.verify()
        assert reader.manifest.application == "shop" and reader.name == url
    assert not path.exists()  # the download is removed afterwards

    shown = json.loads(ok("inspect", url, "--json", "--verify"))
    assert shown["path"] == url and shown["verified_rows"] == 21
    assert json.loads(ok("inspect", url, "--address", "example/cart/u0", "--json"))["state"]["items"]["value"] == {"apple": 1}


def test_a_failed_write_leaves_no_object(server, bucket):
    url = f"s3://{bucket}/broken.db"
    with pytest.raises(RuntimeError, match="stop"):
        with storage.writing(url) as path:
            build.write(path)
            raise RuntimeError("stop")
    assert server.objects(bucket) == []


def test_missing_object_and_bucket_are_one_line_errors(server, bucket, tmp_path):
    assert one_line_error("inspect", f"s3://{bucket}/missing.db") == f"no savepoint at s3://{bucket}/missing.db: the object does not exist"
    assert one_line_error("inspect", "s3://no-such-bucket-here/x.db") == "no savepoint at s3://no-such-bucket-here/x.db: the bucket does not exist"
    # writing into a bucket that does not exist: refused when the upload finds out, and nothing is left
    source = tmp_path / "sp.db"
    build.write(source)
    with pytest.raises(SavepointError, match=r"^cannot upload the savepoint to s3://no-such-bucket-here/x.db: "
                                             r"FileNotFoundError: The specified bucket does not exist"):
        with storage.writing("s3://no-such-bucket-here/x.db") as path:
            build.write(path)


def test_transform_from_and_to_s3(server, bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = f"upgrade_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text("def upgrade(address, states):\n"
                                           "    return None if address.typename == 'example/cart' else states\n"
                                           "def fail(address, states):\n"
                                           "    raise ValueError('no')\n")
    source, target = f"s3://{bucket}/in.db", f"s3://{bucket}/out.db"
    with storage.writing(source) as path:
        build.write(path)
    assert "3 left without state" in ok("transform", source, target, "--with", f"{module}:upgrade")
    assert json.loads(ok("inspect", target, "--json"))["manifest"]["counts"]["state"] == 7
    assert "exists already" in one_line_error("transform", source, target, "--with", f"{module}:upgrade")
    message = one_line_error("transform", source, f"s3://{bucket}/failed.db", "--with", f"{module}:fail")
    assert message.startswith("transform failed at address example/blob/b: ValueError: no (")
    assert server.objects(bucket) == ["in.db", "out.db"]
    code, _, err = cli("transform", source, "s3://no-such-bucket-here/out.db", "--with", f"{module}:upgrade")
    assert code == 1 and err.count("\n") == 1 and "The specified bucket does not exist" in err


@pytest.mark.parametrize("endpoint_variable", ["AWS_ENDPOINT_URL", "FSSPEC_S3_ENDPOINT_URL"])
def test_a_fresh_process_finds_the_server_from_the_environment(server, bucket, endpoint_variable):
    """What a user does: set the environment, run the command (s3fs honours AWS_ENDPOINT_URL through
    botocore; fsspec's FSSPEC_S3_ENDPOINT_URL works too)."""
    url = f"s3://{bucket}/x.db"
    with storage.writing(url) as path:
        build.write(path)
    env = {**os.environ, **server.variables()}
    env.pop("AWS_ENDPOINT_URL")
    env[endpoint_variable] = server.endpoint
    result = subprocess.run([sys.executable, "-m", "pystatefun.cli", "savepoint", "inspect", url, "--json"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["manifest"]["application"] == "shop"


REFUSE = '''\
import importlib.abc
import sys


class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {refused!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _Refuse())
'''


@pytest.mark.parametrize("refused", [("s3fs",), ("s3fs", "fsspec")])
def test_without_the_s3_extra_the_error_names_it(tmp_path, refused):
    (tmp_path / "sitecustomize.py").write_text(REFUSE.format(refused=set(refused)))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pystatefun.cli", "savepoint", "inspect", "s3://bucket/x.db"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "install 'pystatefun[s3]'" in result.stderr
