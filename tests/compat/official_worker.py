"""The official StateFun SDK (apache-flink-statefun 3.3.0) behind a pipe, for the differential tests.

Run with the python of the official SDK's virtualenv (scripts/official-sdk-venv); conftest.py does.
It serves ``statefun.RequestReplyHandler(logic.build_functions(statefun))`` with one event loop for the
whole process.

Protocol, on stdin/stdout, every integer big-endian:

* Request frame: 1 kind byte, a 4-byte payload length, the payload.
  * kind ``H``: the payload is the bytes of a ``ToFunction``; the handler's ``handle_async`` runs on it.
  * kind ``E``: the payload is a UTF-8 JSON list of type operations (see ``type_op``); the answer is a
    JSON list with one result per operation, ``{"ok": ...}`` or ``{"error": {...}}``.
* Reply frame: 1 status byte (0 = ok, 1 = error), a 4-byte length, the payload: the reply bytes when ok,
  or a UTF-8 JSON error description ``{"type", "module", "mro", "message"}`` when the handler raised.
* Right after start the worker writes one ok frame with a JSON description of itself (versions).

The process ends at end of input. Anything the code under test prints goes to stderr.

The value tagging helpers below use only the standard library: the tests import them too.
"""

from __future__ import annotations

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

KIND_HANDLE = b"H"
KIND_TYPES = b"E"
STATUS_OK = 0
STATUS_ERROR = 1
_HEADER = struct.Struct(">cI")
_REPLY_HEADER = struct.Struct(">BI")


# ---------------------------------------------------------------------------------------------------
# Values in JSON, exactly (floats by their bits, any str, bytes by hex)


def to_tagged(value):
    if value is None:
        return {"t": "none"}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": value}
    if isinstance(value, float):
        return {"t": "float", "bits": struct.pack("<d", value).hex()}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, (bytes, bytearray)):
        return {"t": type(value).__name__, "hex": bytes(value).hex()}
    descriptor = getattr(value, "DESCRIPTOR", None)
    if descriptor is not None:
        return {"t": "pb", "name": descriptor.full_name, "hex": value.SerializeToString(deterministic=True).hex()}
    if isinstance(value, (list, tuple, dict)):
        return {"t": "doc", "py": type(value).__name__, "v": json.dumps(value, ensure_ascii=True)}
    raise TypeError(f"can not tag {value!r}")


def from_tagged(tagged, pb_classes=None):
    t = tagged["t"]
    if t == "none":
        return None
    if t in ("bool", "int", "str"):
        return tagged["v"]
    if t == "float":
        return struct.unpack("<d", bytes.fromhex(tagged["bits"]))[0]
    if t == "bytes":
        return bytes.fromhex(tagged["hex"])
    if t == "bytearray":
        return bytearray.fromhex(tagged["hex"])
    if t == "pb":
        cls = pb_classes[tagged["name"]]
        return cls.FromString(bytes.fromhex(tagged["hex"]))
    if t == "doc":
        value = json.loads(tagged["v"])
        return tuple(value) if tagged["py"] == "tuple" else value
    raise ValueError(f"bad tagged value {tagged!r}")


def describe_error(e: BaseException) -> dict:
    cls = type(e)
    return {
        "type": cls.__name__,
        "module": cls.__module__,
        "mro": [c.__name__ for c in cls.__mro__],
        "message": str(e),
    }


# ---------------------------------------------------------------------------------------------------
# The worker


def type_op(op: dict, types, pb_classes) -> dict:
    """One operation of a kind-E request, with the official SDK's types.

    * ``{"op": "encode", "type": key, "value": tagged}`` -> hex of ``serializer().serialize(value)``
    * ``{"op": "decode", "type": key, "hex": ...}`` -> tagged ``serializer().deserialize(bytes)``
    * ``{"op": "typename", "type": key}`` -> the Type's typename
    """
    try:
        tpe = types.by_key[op["type"]]
        if op["op"] == "encode":
            data = tpe.serializer().serialize(from_tagged(op["value"], pb_classes))
            return {"ok": data.hex()}
        if op["op"] == "decode":
            return {"ok": to_tagged(tpe.serializer().deserialize(bytes.fromhex(op["hex"])))}
        if op["op"] == "typename":
            return {"ok": tpe.typename}
        raise ValueError(f"unknown op {op!r}")
    except Exception as e:
        return {"error": describe_error(e)}


def _read_exact(stream, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def main() -> None:
    import asyncio
    from importlib import metadata

    # The protocol owns the real stdout; whatever else is printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer

    def write(status: int, payload: bytes) -> None:
        out.write(_REPLY_HEADER.pack(status, len(payload)))
        out.write(payload)
        out.flush()

    sys.path.insert(0, HERE)
    import statefun
    from google.protobuf import duration_pb2, timestamp_pb2, wrappers_pb2
    from google.protobuf.internal import api_implementation

    import logic

    handler = statefun.RequestReplyHandler(logic.build_functions(statefun))
    types = logic.Types(statefun)
    pb_classes = {
        cls.DESCRIPTOR.full_name: cls
        for cls in (timestamp_pb2.Timestamp, duration_pb2.Duration, wrappers_pb2.StringValue)
    }
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    info = {
        "statefun": metadata.version("apache-flink-statefun"),
        "statefun_file": statefun.__file__,
        "protobuf": metadata.version("protobuf"),
        "protobuf_implementation": api_implementation.Type(),
        "python": sys.version,
    }
    write(STATUS_OK, json.dumps(info).encode("utf-8"))

    while True:
        header = _read_exact(stdin, _HEADER.size)
        if header is None:
            break
        kind, length = _HEADER.unpack(header)
        payload = _read_exact(stdin, length)
        if payload is None:
            break
        if kind == KIND_HANDLE:
            try:
                reply = loop.run_until_complete(handler.handle_async(payload))
            except Exception as e:
                write(STATUS_ERROR, json.dumps(describe_error(e)).encode("utf-8"))
            else:
                write(STATUS_OK, reply)
        elif kind == KIND_TYPES:
            ops = json.loads(payload.decode("utf-8"))
            results = [type_op(op, types, pb_classes) for op in ops]
            write(STATUS_OK, json.dumps(results).encode("utf-8"))
        else:
            write(STATUS_ERROR, json.dumps({"type": "ProtocolError", "module": "worker", "mro": [],
                                            "message": f"unknown request kind {kind!r}"}).encode("utf-8"))
    loop.close()


if __name__ == "__main__":
    main()
