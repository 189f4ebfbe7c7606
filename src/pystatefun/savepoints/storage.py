"""Where a savepoint lives: a local path, a ``file://`` URL, or any fsspec URL (``s3://bucket/key`` with
the ``s3`` extra: ``pip install 'pystatefun[s3]'``).

SQLite needs a local file, so a savepoint is always written to a local file first and read from one:

* writing to a local path goes to a hidden ``.<name>.partial`` file beside it, renamed into place by
  ``writing`` only after the writer finished (a rename is atomic), so a savepoint interrupted by
  ``kill -9`` never appears under its name; a leftover partial file is removed by the next attempt.
* writing to a remote URL uploads the finished local file; object stores (S3 among them) make an object
  visible only once its upload completed, so the same holds.
* reading a remote URL downloads it to a temporary file first, removed afterwards.

S3 settings come from the usual AWS environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for an S3-compatible server such as MinIO or moto).
s3fs reads them through botocore, which honours ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_S3``, for
S3 alone) since botocore 1.31, as every AWS SDK does (tests/savepoints/test_s3.py checks it against
moto's server). fsspec's own configuration works as well, for settings only fsspec knows:
``FSSPEC_S3_ENDPOINT_URL=http://host:9000``, or ``FSSPEC_S3='{"endpoint_url": ..., "key": ...}'``
(any argument of ``s3fs.S3FileSystem``). Overwriting is refused by asking whether the object exists
first: two writers racing for one new URL can both pass that check, so give each savepoint its own name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import typing
from pathlib import Path
from urllib.parse import urlsplit

from pystatefun.savepoints.format import SavepointError


def _local(url: str) -> Path | None:
    """The local path of ``url``, or None when it names remote storage."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(parts.path)
    if parts.scheme in ("", ) or len(parts.scheme) == 1:  # a path (a Windows drive letter is not a scheme)
        return Path(url)
    return None


def _filesystem(url: str) -> typing.Any:
    try:
        import fsspec
    except ImportError:
        raise SavepointError(f"{url}: savepoints outside the local disk need fsspec and the package of the storage: "
                             f"pip install 'pystatefun[s3]' for s3://") from None
    try:
        filesystem, _ = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:
        raise SavepointError(f"{url}: cannot use this storage ({error}); for s3:// install 'pystatefun[s3]'") from None
    return filesystem


def _remote_failure(url: str, action: str, error: Exception) -> SavepointError:
    return SavepointError(f"cannot {action} {url}: {type(error).__name__}: {error} (check the URL, the bucket and the "
                          f"credentials in the AWS_* environment variables)")


def check_new(url: str) -> None:
    """Refuses, before any work, a ``url`` that a savepoint cannot be written to: one that exists already,
    or a local path whose directory does not exist. (A stop-with-savepoint asks before it stops.)"""
    local = _local(url)
    if local is not None:
        if local.exists():
            raise SavepointError(f"{local} exists already: give the savepoint a new path (a savepoint is never overwritten)")
        if not local.parent.is_dir():
            raise SavepointError(f"cannot write {local}: directory {local.parent} does not exist")
        return
    filesystem = _filesystem(url)
    try:
        exists = filesystem.exists(url)
    except Exception as error:  # the storage library's own errors: botocore's, aiohttp's, ...
        raise _remote_failure(url, "reach", error) from error
    if exists:
        raise SavepointError(f"{url} exists already: give the savepoint a new path (a savepoint is never overwritten)")


@contextlib.contextmanager
def writing(url: str) -> typing.Iterator[Path]:
    """A local file to write the savepoint of ``url`` into; it is published at ``url`` when the block ends
    without an error, and removed otherwise. Refuses a ``url`` that exists already."""
    check_new(url)
    local = _local(url)
    if local is not None:
        partial = local.parent / f".{local.name}.partial"
        partial.unlink(missing_ok=True)  # left by a writer that was killed
        try:
            yield partial
            os.replace(partial, local)
            directory = os.open(local.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename is durable too
            finally:
                os.close(directory)
        finally:
            partial.unlink(missing_ok=True)
        return
    filesystem = _filesystem(url)
    with tempfile.TemporaryDirectory(prefix="pystatefun-savepoint-") as folder:
        path = Path(folder) / "savepoint.db"
        yield path
        try:
            filesystem.put_file(str(path), url)
        except Exception as error:
            raise _remote_failure(url, "upload the savepoint to", error) from error


@contextlib.contextmanager
def reading(url: str) -> typing.Iterator[Path]:
    """A local file holding the savepoint at ``url`` for the length of the block."""
    local = _local(url)
    if local is not None:
        if not local.is_file():
            raise SavepointError(f"no savepoint at {url}: the file does not exist")
        yield local
        return
    filesystem = _filesystem(url)
    with tempfile.TemporaryDirectory(prefix="pystatefun-savepoint-") as folder:
        path = Path(folder) / "savepoint.db"
        try:
            filesystem.get_file(url, str(path))
        except FileNotFoundError as error:
            text = str(error).lower()  # s3fs keeps S3's words: "The specified bucket does not exist", NoSuchBucket
            missing = "bucket" if "specified bucket" in text or "nosuchbucket" in text else "object"
            raise SavepointError(f"no savepoint at {url}: the {missing} does not exist") from None
        except Exception as error:
            raise _remote_failure(url, "download", error) from error
        yield path
