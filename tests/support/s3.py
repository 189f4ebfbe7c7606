"""A local S3 server for the tests of s3:// savepoints: moto's server (``moto[server]`` in the dev extra),
on a free port of 127.0.0.1, with the AWS environment pointing at it.

s3fs (through aiobotocore and botocore) reads ``AWS_ENDPOINT_URL``, the credentials and the region from
the environment, as every AWS SDK does, so code under test needs no settings of its own::

    with MotoServer() as server:
        with server.environment():          # AWS_ENDPOINT_URL and fake credentials
            server.create_bucket("savepoints")
            ... s3://savepoints/x.db ...
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import typing
import urllib.error
import urllib.request
from pathlib import Path

from e2e.processes import free_port, terminate


class MotoServer:
    def __init__(self, log: Path | None = None):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> MotoServer:
        output = open(self.log, "wb") if self.log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}"
                                   + (f": {self.log.read_text()[-2000:]}" if self.log else ""))
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"moto_server did not answer on {self.endpoint}")

    def stop(self) -> None:
        terminate(self.process, 10)
        self.process = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def variables(self) -> dict[str, str]:
        """The environment that points every AWS client (s3fs included) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}

    @contextlib.contextmanager
    def environment(self) -> typing.Iterator[None]:
        """The variables set in this process for the block (and fsspec's cached filesystems forgotten, so
        that one made for another endpoint is not reused)."""
        import s3fs

        saved = {name: os.environ.get(name) for name in self.variables()}
        os.environ.update(self.variables())
        s3fs.S3FileSystem.clear_instance_cache()  # s3fs keeps its instances per arguments
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            s3fs.S3FileSystem.clear_instance_cache()

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", **self._client_options()).create_bucket(Bucket=name)

    def _client_options(self) -> dict[str, str]:
        variables = self.variables()
        return {"endpoint_url": self.endpoint, "aws_access_key_id": variables["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": variables["AWS_SECRET_ACCESS_KEY"], "region_name": variables["AWS_DEFAULT_REGION"]}

    def objects(self, bucket: str) -> list[str]:
        import boto3

        listed = boto3.client("s3", **self._client_options()).list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))
