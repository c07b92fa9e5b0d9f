"""Known-answer and behaviour tests for the event-stream codec."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from amazon_polly_streaming._wire.eventstream import (
    MAX_HEADER_VALUE_LENGTH,
    EventStreamDecoder,
    HeaderValue,
    Int8,
    Int16,
    Int32,
    Int64,
    Message,
    Timestamp,
    UUIDValue,
    decode_headers,
    encode_headers,
    encode_message,
)
from amazon_polly_streaming.exceptions import EventStreamError, ProtocolError

VECTORS = Path(__file__).parent / "vectors"
SMITHY = json.loads((VECTORS / "eventstream_smithy-python.json").read_text())
GO = VECTORS / "eventstream_aws-sdk-go"


def _smithy_value(spec: dict[str, Any]) -> HeaderValue:
    kind, value = spec["type"], spec["value"]
    markers: dict[str, Any] = {
        "byte": Int8,
        "short": Int16,
        "integer": Int32,
        "long": Int64,
        "timestamp_ms": Timestamp,
        "string": str,
        "bool": bool,
    }
    if kind == "bytes_hex":
        return bytes.fromhex(value)
    if kind == "uuid_hex":
        return UUIDValue(bytes.fromhex(value))
    return markers[kind](value)  # type: ignore[no-any-return]


def _decode_all(data: bytes) -> list[Message]:
    decoder = EventStreamDecoder()
    messages = decoder.feed(data)
    decoder.finish()
    return messages


@pytest.mark.parametrize("name", sorted(SMITHY["positive"]))
def test_smithy_positive_vectors_decode_and_reencode(name: str) -> None:
    case = SMITHY["positive"][name]
    encoded = bytes.fromhex(case["encoded_hex"])
    if not encoded:  # the "empty source" case: no bytes, no message
        assert _decode_all(encoded) == []
        return
    (message,) = _decode_all(encoded)
    expected = {key: _smithy_value(spec) for key, spec in case["headers"].items()}
    assert message.headers == expected
    for key, value in expected.items():
        assert type(message.headers[key]) is type(value)
    assert message.payload == bytes.fromhex(case["payload_hex"])
    # Re-encoding the decoded message gives back the exact bytes.
    assert encode_message(encode_headers(message.headers), message.payload) == encoded


def _smithy_negative(name: str) -> bytes:
    case = SMITHY["negative"][name]
    if case["encoded_hex"] is not None:
        return bytes.fromhex(case["encoded_hex"])
    # The 16 MiB case is stored as its recipe: prelude + payload + message CRC.
    assert name == "INVALID_PAYLOAD_LENGTH"
    return bytes.fromhex("0100001100000000f40861c5") + b"0" * (16 * 1024**2 + 1) + bytes.fromhex("2ab4c5a5")


# smithy-python caps payloads at 16 MiB; the Smithy event-stream specification
# allows 24 MiB (25,165,824 bytes), which is what we enforce.
_SMITHY_PYTHON_ONLY = {"INVALID_PAYLOAD_LENGTH"}


@pytest.mark.parametrize("name", sorted(set(SMITHY["negative"]) - _SMITHY_PYTHON_ONLY))
def test_smithy_negative_vectors_raise_our_error(name: str) -> None:
    with pytest.raises(EventStreamError):
        _decode_all(_smithy_negative(name))


def test_payload_limit_is_the_smithy_specs_24_mib() -> None:
    (message,) = _decode_all(_smithy_negative("INVALID_PAYLOAD_LENGTH"))  # 16 MiB + 1: within the spec
    assert len(message.payload) == 16 * 1024**2 + 1
    total = 16 + 24 * 1024**2 + 1
    prelude = struct.pack(">II", total, 0)
    with pytest.raises(EventStreamError, match="payload length"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


@pytest.mark.parametrize("name", sorted(p.name for p in (GO / "encoded" / "positive").iterdir()))
def test_go_positive_vectors(name: str) -> None:
    encoded = (GO / "encoded" / "positive" / name).read_bytes()
    expected = json.loads((GO / "decoded" / "positive" / name).read_text())
    (message,) = _decode_all(encoded)
    assert message.payload == base64.b64decode(expected["payload"] or "")
    decoded: dict[str, HeaderValue] = {}
    for header in expected["headers"]:
        value = header["value"]
        if header["type"] in (6, 7, 9):
            raw = base64.b64decode(value)
            value = raw.decode() if header["type"] == 7 else raw
        decoded[header["name"]] = value
    assert message.headers == decoded


@pytest.mark.parametrize("name", sorted(p.name for p in (GO / "encoded" / "negative").iterdir()))
def test_go_negative_vectors(name: str) -> None:
    encoded = (GO / "encoded" / "negative" / name).read_bytes()
    expected_text = (GO / "decoded" / "negative" / name).read_text().strip()
    with pytest.raises(EventStreamError, match=expected_text):
        _decode_all(encoded)


def _sample_stream() -> tuple[bytes, list[Message]]:
    messages = [
        Message({":message-type": "event", ":event-type": "AudioEvent"}, bytes(range(256)) * 7),
        Message({":message-type": "event", ":event-type": "AudioEvent"}, b""),
        Message({"n": Int64(-5), "t": Timestamp(1_700_000_000_000), "flag": False}, b"{}"),
    ]
    data = b"".join(encode_message(encode_headers(m.headers), m.payload) for m in messages)
    return data, messages


@pytest.mark.parametrize("step", [1, 2, 3, 7, 11, 12, 13, 100, 4096])
def test_incremental_decoding_at_every_split(step: int) -> None:
    data, expected = _sample_stream()
    decoder = EventStreamDecoder()
    got: list[Message] = []
    for start in range(0, len(data), step):
        got.extend(decoder.feed(data[start : start + step]))
    assert got == expected
    assert decoder.buffered == 0


def test_every_two_way_split() -> None:
    data, expected = _sample_stream()
    for cut in range(len(data) + 1):
        decoder = EventStreamDecoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == expected


def test_hostile_length_is_refused_before_buffering() -> None:
    decoder = EventStreamDecoder(max_message_length=1024)
    big = encode_message(b"", b"x" * 2048)
    with pytest.raises(EventStreamError, match="limit"):
        decoder.feed(big[:12])
    assert decoder.buffered == 0
    # The decoder stays failed: framing is lost.
    with pytest.raises(EventStreamError):
        decoder.feed(b"")


def test_header_value_limit_and_duplicate() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        encode_headers({"k": "v" * (MAX_HEADER_VALUE_LENGTH + 1)})
    one = encode_headers({"a": "1"})
    with pytest.raises(EventStreamError, match="Duplicate"):
        decode_headers(one + one)
    with pytest.raises(EventStreamError):
        decode_headers(b"\x01a\x0f")


def test_event_stream_error_is_a_runtime_protocol_error() -> None:
    assert issubclass(EventStreamError, ProtocolError)
    assert issubclass(EventStreamError, RuntimeError)


def test_decoded_headers_are_independent_per_message() -> None:
    frame = encode_message(encode_headers({":event-type": "AudioEvent"}), b"a")
    first, second = EventStreamDecoder().feed(frame + frame)
    first.headers["x"] = "y"
    assert "x" not in second.headers
