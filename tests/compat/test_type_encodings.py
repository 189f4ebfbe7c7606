"""Built-in type encodings: pystatefun's bytes and values against the official SDK's, exactly.

For a table of values, ``XType.serializer().serialize(v)`` must give the same bytes in both SDKs (or
both must raise, ours an exception of the official one's class or a subclass); for a table of byte
strings -- canonical, non-canonical (fields repeated, zero values written out, unknown fields, wrong
wire types, long varints) and malformed -- ``deserialize`` must give the same value, floats compared
by their bits. Values encoded by one SDK are decoded by the other both ways. The official side runs
in the worker (official_worker.py, kind-E requests).
"""

from __future__ import annotations

import math
import struct

import pytest
from google.protobuf import duration_pb2, timestamp_pb2, wrappers_pb2

import pystatefun

from . import logic
from .official_worker import describe_error, to_tagged

OURS = logic.Types(pystatefun)

FLT_MAX = float.fromhex("0x1.fffffep+127")


def f64(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


NEG_NAN = -math.nan  # sign bit set
DOUBLE_SNAN = f64(0x7FF0000000000001)  # a signalling NaN with a payload
DOUBLE_PAYLOAD_NAN = f64(0x7FF8000000000123)

ENCODE_VALUES: dict[str, list] = {
    "bool": [True, False, 0, 1, 2, -1, 0.0, 1.5, None, "true"],
    "int": [0, 1, -1, 7, 255, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**63, True, False, 1.0, "1", None],
    "long": [0, 1, -1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, True, False,
             1.5, "1", None],
    "float": [
        0.0, -0.0, 0.1, -0.1, 1.0, -2.5, 0.5, 16777217.0, 1e-45, 1.401298464324817e-45, 7e-46, 1e-46, 1e-50,
        -1e-50, FLT_MAX, -FLT_MAX, 3.4028235e38, -3.4028235e38, 3.4028236e38, 1e39, -1e39, 1e308,
        math.inf, -math.inf, math.nan, NEG_NAN, DOUBLE_SNAN, DOUBLE_PAYLOAD_NAN,
        0, 1, -7, 2**24 + 1, 2**200, 10**400, True, False, "1.0", None,
    ],
    "double": [
        0.0, -0.0, 0.1, -0.1, 1 / 3, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
        -1.7976931348623157e308, math.inf, -math.inf, math.nan, NEG_NAN, DOUBLE_SNAN, DOUBLE_PAYLOAD_NAN,
        0, 1, -1, 2**53 + 1, 10**400, True, False, "0.1", None,
    ],
    "string": [
        "", "a", "héllo ☃", "𝄞", "\x00", "x" * 127, "x" * 128, "é" * 63, "é" * 64, "日本語" * 50, "x" * 20000,
        "\ud800", "a\udfffb", b"", b"abc", "ü".encode(), b"\xff", bytearray(b"abc"), 1, None,
    ],
    "json": [{"a": 1}, [1, 2.5, None, True], "ü", 0, -0.0, math.nan, [], (1, 2), {"k": [{"x": "ü" * 100}]}],
    "ts": [timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp(seconds=1, nanos=2),
           timestamp_pb2.Timestamp(seconds=-(2**40), nanos=999_999_999)],
    "dur": [duration_pb2.Duration(), duration_pb2.Duration(seconds=-5, nanos=-1)],
    "sv": [wrappers_pb2.StringValue(), wrappers_pb2.StringValue(value="ü" * 100)],
}

Z4, Z8 = b"\0" * 4, b"\0" * 8
DECODE_BYTES: dict[str, list[bytes]] = {
    "bool": [
        b"", b"\x08\x01", b"\x08\x00", b"\x08\x02", b"\x08\x81\x00", b"\x08" + b"\xff" * 9 + b"\x01",
        b"\x08\x01\x08\x00", b"\x08\x00\x08\x01", b"\x10\x01\x08\x01", b"\x08\x01\x1a\x00",
        b"\x0d\x01\x00\x00\x00", b"\x13\x08\x01\x14\x08\x01", b"\x08", b"\xff", b"\x00", b"\x0b", b"\x0c", b"\x0f",
    ],
    "int": [
        b"", b"\x0d\x01\x00\x00\x00", b"\x0d\xff\xff\xff\xff", b"\x0d\x00\x00\x00\x80", b"\x0d" + Z4,
        b"\x0d\x01\x00\x00\x00\x0d\x02\x00\x00\x00", b"\x10\x05\x0d\x07\x00\x00\x00", b"\x0d\x07\x00\x00\x00\x1a\x00",
        b"\x08\x05", b"\x09" + Z8, b"\x0a\x03abc", b"\x0d\x01", b"\x0d", b"\xff", b"\x0e\x00\x00\x00\x00",
        b"\x13\x08\x01\x14",  # an unknown group, properly closed
        b"\x5b\x74",  # a group (field 11) closed by an end-group tag of field 14: "[t", as in JSON text
    ],
    "long": [
        b"", b"\x09\x01" + b"\0" * 7, b"\x09" + b"\xff" * 8, b"\x09" + b"\xff" * 7 + b"\x7f", b"\x09" + Z8,
        b"\x09\x01" + b"\0" * 7 + b"\x09\x02" + b"\0" * 7, b"\x09\x01" + b"\0" * 7 + b"\x10\x01",
        b"\x0d\x01\x00\x00\x00", b"\x08\x05", b"\x09\x01\x02", b"\xff",
    ],
    "float": [
        b"", b"\x0d\x00\x00\x80\x3f", b"\x0d" + Z4, b"\x0d\x00\x00\x00\x80", b"\x0d\x00\x00\x80\x7f",
        b"\x0d\x00\x00\x80\xff", b"\x0d\x00\x00\xc0\x7f", b"\x0d\x00\x00\xc0\xff", b"\x0d\x01\x00\x80\x7f",
        b"\x0d\x01\x00\xc0\x7f", b"\x0d\xff\xff\xff\x7f", b"\x0d\x01\x00\x00\x00", b"\x0d\xff\xff\x7f\x7f",
        b"\x0d\x00\x00\x80\x3f\x0d\x00\x00\x00\x40", b"\x0d\x00\x00\x80\x3f\x10\x01", b"\x09" + Z8, b"\x0d\x01",
    ],
    "double": [
        b"", b"\x09" + struct.pack("<d", 0.1), b"\x09" + Z8, b"\x09" + b"\0" * 7 + b"\x80",
        b"\x09" + b"\0" * 6 + b"\xf0\x7f", b"\x09" + b"\0" * 6 + b"\xf0\xff", b"\x09" + b"\0" * 6 + b"\xf8\x7f",
        b"\x09" + b"\0" * 6 + b"\xf8\xff", b"\x09\x01" + b"\0" * 5 + b"\xf0\x7f", b"\x09" + b"\xff" * 7 + b"\x7f",
        b"\x09\x01" + b"\0" * 7, b"\x09" + struct.pack("<d", 1.0) + b"\x09" + struct.pack("<d", 2.0),
        b"\x1a\x00\x09" + struct.pack("<d", 3.0), b"\x0d\x00\x00\x80\x3f", b"\x09\x00",
    ],
    "string": [
        b"", b"\x0a\x01a", b"\x0a\x00", b"\x0a\x7f" + b"x" * 127, b"\x0a\x80\x01" + b"x" * 128,
        b"\x0a\x81\x00a", b"\x0a\x01a\x0a\x01b", b"\x10\x01\x0a\x02\xc3\xbc", b"\x0a\x02\xc3\xbc\x1a\x00",
        b"\x0a\x80\x00\x0a\x7d" + b"z" * 125,  # the field twice, the first with a 2-byte length varint
        b"\x0a\x80" + b"x" * 128,  # a length varint running into the data: truncated
        b"\x0a\x01\xff", b"\x0a\x02\xc3\xbc\x0a\x01\xff", b"\x0a\x01\xff\x0a\x01a", b"\x0a\x03\xed\xa0\x80",
        b"\x0d\x01\x00\x00\x00", b"\x0a\x05ab", b"\x0a", b"\xff",
    ],
    "json": [b'{"a": 1}', b"[1,2]", b"NaN", b'"\xc3\xbc"', b"", b"{", b"\xff"],
    "ts": [b"", b"\x08\x01\x10\x02", b"\x08\x01\x08\x02", b"\x08\x01\x18\x05", b"\xff"],
    "dur": [b"", b"\x08\x05", b"\x10\x01\x10\x02"],
    # (invalid UTF-8 in a StringValue is left out: protobuf 3.20 raises UnicodeDecodeError, protobuf 7 a
    # DecodeError, whichever SDK calls it)
    "sv": [b"", b"\x0a\x02hi", b"\x0a\x00"],
}


def _label(value) -> str:
    if isinstance(value, float):
        return f"{value!r}[{struct.pack('<d', value).hex()}]"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _encodable(value):
    """The value as the worker can receive it (a tag), or None for values that can not travel."""
    try:
        return to_tagged(value)
    except TypeError:
        return None


ENCODE_CASES = [
    (key, index) for key, values in ENCODE_VALUES.items() for index, value in enumerate(values) if _encodable(value)
]
DECODE_CASES = [(key, index) for key, datas in DECODE_BYTES.items() for index in range(len(datas))]


def _ours(fn) -> dict:
    try:
        return {"ok": fn()}
    except Exception as e:
        return {"error": describe_error(e)}


def ours_encode(key: str, value) -> dict:
    return _ours(lambda: OURS.by_key[key].serializer().serialize(value).hex())


def ours_decode(key: str, data: bytes) -> dict:
    return _ours(lambda: to_tagged(OURS.by_key[key].serializer().deserialize(data)))


def assert_same(what: str, theirs: dict, ours: dict) -> None:
    if "error" in theirs and "error" in ours:
        if theirs["error"]["type"] not in ours["error"]["mro"]:
            pytest.fail(
                f"{what}: both raise, but the official SDK raises {theirs['error']['type']} "
                f"({theirs['error']['message']}) and ours {ours['error']['type']} ({ours['error']['message']}), "
                "which is not a subclass of it",
                pytrace=False,
            )
        return
    if ours != theirs:
        pytest.fail(f"{what}:\n  official:   {_result(theirs)}\n  pystatefun: {_result(ours)}", pytrace=False)


def _result(result: dict) -> str:
    if "error" in result:
        return f"raises {result['error']['type']}: {result['error']['message']}"
    return f"{result['ok']}"


@pytest.fixture(scope="module")
def official_results(official):
    """Every official encode and decode of the tables, in one request each."""
    encode_ops = [{"op": "encode", "type": k, "value": to_tagged(ENCODE_VALUES[k][i])} for k, i in ENCODE_CASES]
    decode_ops = [{"op": "decode", "type": k, "hex": DECODE_BYTES[k][i].hex()} for k, i in DECODE_CASES]
    encodes = dict(zip(ENCODE_CASES, official.type_ops(encode_ops)))
    decodes = dict(zip(DECODE_CASES, official.type_ops(decode_ops)))
    return encodes, decodes


@pytest.mark.parametrize(
    "key,index", ENCODE_CASES, ids=[f"{k}-{_label(ENCODE_VALUES[k][i])}" for k, i in ENCODE_CASES]
)
def test_encoding_is_byte_identical(official_results, key, index):
    value = ENCODE_VALUES[key][index]
    theirs = official_results[0][(key, index)]
    assert_same(f"{key} serialize({_label(value)})", theirs, ours_encode(key, value))


@pytest.mark.parametrize(
    "key,index", DECODE_CASES, ids=[f"{k}-{DECODE_BYTES[k][i].hex()[:40]}" for k, i in DECODE_CASES]
)
def test_decoding_gives_the_same_value(official_results, key, index):
    data = DECODE_BYTES[key][index]
    theirs = official_results[1][(key, index)]
    ours = ours_decode(key, data)
    if (key, data) in READ_DIFFERENTLY_BY_UPB:
        # deliberate (docs/protocol.md): upb, which pystatefun runs on, refuses this malformed input
        assert "ok" in theirs and ours["error"]["type"] == "DecodeError", READ_DIFFERENTLY_BY_UPB[(key, data)]
        return
    if "error" in theirs and "error" in ours and theirs["error"]["type"] == "UnicodeDecodeError":
        # invalid UTF-8 inside a non-canonical string: both refuse it, upb with its DecodeError
        assert ours["error"]["type"] in ("UnicodeDecodeError", "DecodeError")
        return
    assert_same(f"{key} deserialize({data.hex()})", theirs, ours)


READ_DIFFERENTLY_BY_UPB = {
    ("int", b"\x5b\x74"): "a group closed by another field's end tag: pure-python protobuf reads 0, upb refuses it",
}


def test_values_encoded_by_one_sdk_decode_the_same_in_the_other(official, official_results):
    """Both ways: ours reads what the official SDK wrote, the official SDK reads what ours wrote."""
    encodes = official_results[0]
    pairs = []  # (key, label, bytes written by the official SDK, bytes written by ours)
    for (key, index), theirs in encodes.items():
        value = ENCODE_VALUES[key][index]
        ours = ours_encode(key, value)
        if "ok" in theirs and "ok" in ours:
            pairs.append((key, _label(value), bytes.fromhex(theirs["ok"]), bytes.fromhex(ours["ok"])))
    assert len(pairs) > 100
    ops = []
    for key, _, official_bytes, our_bytes in pairs:
        ops.append({"op": "decode", "type": key, "hex": our_bytes.hex()})
        ops.append({"op": "decode", "type": key, "hex": official_bytes.hex()})
    results = official.type_ops(ops)
    problems = []
    for n, (key, label, official_bytes, our_bytes) in enumerate(pairs):
        official_reads_ours, official_reads_official = results[2 * n], results[2 * n + 1]
        ours_reads_official = ours_decode(key, official_bytes)
        ours_reads_ours = ours_decode(key, our_bytes)
        if official_reads_ours != official_reads_official:
            problems.append(f"{key} {label}: the official SDK reads our bytes as {_result(official_reads_ours)}, "
                            f"its own as {_result(official_reads_official)}")
        if ours_reads_official != official_reads_official:
            problems.append(f"{key} {label}: ours reads the official bytes as {_result(ours_reads_official)}, "
                            f"the official SDK as {_result(official_reads_official)}")
        if ours_reads_ours != official_reads_ours:
            problems.append(f"{key} {label}: ours reads its own bytes as {_result(ours_reads_ours)}, "
                            f"the official SDK as {_result(official_reads_ours)}")
    if problems:
        pytest.fail(f"{len(problems)} cross-reads disagree:\n" + "\n".join(problems), pytrace=False)


def test_typenames_are_identical(official):
    keys = sorted(logic.TYPE_TYPENAMES)
    theirs = official.type_ops([{"op": "typename", "type": k} for k in keys])
    ours = [{"ok": OURS.by_key[k].typename} for k in keys]
    expected = [{"ok": logic.TYPE_TYPENAMES[k]} for k in keys]
    assert theirs == expected
    assert ours == expected
