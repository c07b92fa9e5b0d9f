"""The AWS event-stream binary message format: encoder and incremental decoder.

Sans-IO: bytes in, messages out. A message is

    total_length u32 | headers_length u32 | prelude_crc u32 | headers | payload | message_crc u32

with big-endian integers and CRC32 checksums. The decoder accepts input split
at any byte, checks both checksums and every length before it trusts them, and
refuses messages larger than its limit, so a hostile length field cannot make
it buffer without bound.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import TypeAlias
from zlib import crc32

from ..exceptions import EventStreamError

__all__ = [
    "MAX_HEADERS_LENGTH",
    "MAX_HEADER_VALUE_LENGTH",
    "MAX_PAYLOAD_LENGTH",
    "EventStreamDecoder",
    "HeaderValue",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "Message",
    "Timestamp",
    "UUIDValue",
    "decode_headers",
    "encode_headers",
    "encode_message",
]

# Limits of the format as the Smithy event-stream specification sets them
# (smithy.io, "Event streams": a message's payload is at most 24 MiB =
# 25,165,824 bytes, its headers at most 128 KiB = 131,072 bytes).
MAX_HEADERS_LENGTH = 128 * 1024
MAX_HEADER_VALUE_LENGTH = 32767
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024
_PRELUDE_LENGTH = 12
_MIN_MESSAGE_LENGTH = 16
DEFAULT_MAX_MESSAGE_LENGTH = MAX_PAYLOAD_LENGTH + MAX_HEADERS_LENGTH + _MIN_MESSAGE_LENGTH

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_PRELUDE = struct.Struct(">II")
_PRELUDE_WITH_CRC = struct.Struct(">III")


# Integer header types are distinct on the wire; these markers keep the type
# through a decode/encode round trip. A plain ``int`` encodes as int32 (int64
# when it does not fit).
class Int8(int):
    __slots__ = ()


class Int16(int):
    __slots__ = ()


class Int32(int):
    __slots__ = ()


class Int64(int):
    __slots__ = ()


class Timestamp(int):
    """Milliseconds since the Unix epoch (header type 8)."""

    __slots__ = ()


class UUIDValue(bytes):
    """The 16 raw bytes of a UUID (header type 9)."""

    __slots__ = ()


HeaderValue: TypeAlias = bool | int | bytes | str
Headers: TypeAlias = Mapping[str, HeaderValue]


class Message:
    """One decoded message: its headers and its payload."""

    __slots__ = ("headers", "payload")

    def __init__(self, headers: dict[str, HeaderValue], payload: bytes) -> None:
        self.headers = headers
        self.payload = payload

    def __repr__(self) -> str:
        return f"Message(headers={self.headers!r}, payload=<{len(self.payload)} bytes>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.headers == other.headers and self.payload == other.payload

    __hash__ = None  # type: ignore[assignment]


# ------------------------------------------------------------------------- encoding


def _encode_header(name: str, value: HeaderValue) -> bytes:
    raw_name = name.encode("ascii")
    if not 0 < len(raw_name) < 256:
        raise ValueError(f"header name length must be 1..255 bytes: {name!r}")
    head = _U8.pack(len(raw_name)) + raw_name
    # bool before int: bool is an int subclass.
    if value is True:
        return head + b"\x00"
    if value is False:
        return head + b"\x01"
    if isinstance(value, Timestamp):
        return head + b"\x08" + struct.pack(">q", value)
    if isinstance(value, Int8):
        return head + b"\x02" + struct.pack(">b", value)
    if isinstance(value, Int16):
        return head + b"\x03" + struct.pack(">h", value)
    if isinstance(value, Int64):
        return head + b"\x05" + struct.pack(">q", value)
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return head + b"\x04" + struct.pack(">i", value)
        return head + b"\x05" + struct.pack(">q", value)
    if isinstance(value, UUIDValue):
        if len(value) != 16:
            raise ValueError("a UUID header value is 16 bytes")
        return head + b"\x09" + value
    if isinstance(value, str):
        data = value.encode("utf-8")
        kind = b"\x07"
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        kind = b"\x06"
    else:
        raise TypeError(f"unsupported header value type {type(value).__name__}")
    if len(data) > MAX_HEADER_VALUE_LENGTH:
        raise ValueError(f"header {name!r} value exceeds {MAX_HEADER_VALUE_LENGTH} bytes")
    return head + kind + _U16.pack(len(data)) + data


def encode_headers(headers: Headers | Iterable[tuple[str, HeaderValue]]) -> bytes:
    """Encode headers in the given order."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return b"".join(_encode_header(name, value) for name, value in items)


def encode_message(headers: bytes, payload: bytes) -> bytes:
    """Frame already-encoded ``headers`` and ``payload`` as one message."""
    headers_length = len(headers)
    total = headers_length + len(payload) + _MIN_MESSAGE_LENGTH
    if headers_length > MAX_HEADERS_LENGTH:
        raise ValueError("headers exceed the event-stream limit")
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise ValueError("payload exceeds the event-stream limit")
    prelude = _PRELUDE.pack(total, headers_length)
    prelude_crc = crc32(prelude)
    # One join builds the message; the final CRC continues from the prelude's.
    body = b"".join((prelude, _U32.pack(prelude_crc), headers, payload))
    return body + _U32.pack(crc32(body))


# ------------------------------------------------------------------------- decoding

# Value sizes for the fixed-width header types; -1 marks length-prefixed ones.
_FIXED = {2: (1, ">b", Int8), 3: (2, ">h", Int16), 4: (4, ">i", Int32), 5: (8, ">q", Int64), 8: (8, ">q", Timestamp)}


def decode_headers(data: bytes) -> dict[str, HeaderValue]:
    """Decode a headers block. Raises ``EventStreamError`` on any inconsistency."""
    headers: dict[str, HeaderValue] = {}
    pos = 0
    end = len(data)
    try:
        while pos < end:
            name_length = data[pos]
            name_end = pos + 1 + name_length
            if name_length == 0 or name_end >= end:
                raise EventStreamError("Invalid header name length")
            name = data[pos + 1 : name_end].decode("ascii")
            kind = data[name_end]
            pos = name_end + 1
            value: HeaderValue
            if kind == 0:
                value = True
            elif kind == 1:
                value = False
            elif kind in (6, 7):
                if pos + 2 > end:
                    raise EventStreamError("Truncated header value length")
                (length,) = _U16.unpack_from(data, pos)
                if length > MAX_HEADER_VALUE_LENGTH:
                    raise EventStreamError("Invalid header value length")
                pos += 2
                if pos + length > end:
                    raise EventStreamError("Truncated header value")
                raw = data[pos : pos + length]
                value = raw.decode("utf-8") if kind == 7 else raw
                pos += length
            elif kind == 9:
                if pos + 16 > end:
                    raise EventStreamError("Truncated UUID header value")
                value = UUIDValue(data[pos : pos + 16])
                pos += 16
            elif kind in _FIXED:
                size, fmt, marker = _FIXED[kind]
                if pos + size > end:
                    raise EventStreamError("Truncated header value")
                value = marker(struct.unpack_from(fmt, data, pos)[0])
                pos += size
            else:
                raise EventStreamError(f"Unknown header value type {kind}")
            if name in headers:
                raise EventStreamError(f"Duplicate header {name!r}")
            headers[name] = value
    except UnicodeDecodeError as exc:
        raise EventStreamError("Header is not valid text") from exc
    return headers


# Streams repeat a handful of header blocks (every AudioEvent of every stream
# has the same three headers): decoding each distinct block once keeps the hot
# path to a dict lookup. Shared by all decoders, and bounded so that a hostile
# peer cannot grow it (blocks beyond the bound are simply decoded each time).
_HEADER_CACHE: dict[bytes, dict[str, HeaderValue]] = {}
_HEADER_CACHE_SIZE = 256


class EventStreamDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get whole messages back.

    Once it has raised, the stream is unusable (framing is lost) and further
    feeds raise again.
    """

    __slots__ = ("_buffer", "_error", "_max_message_length")

    def __init__(self, max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_message_length = max_message_length
        self._error: EventStreamError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buffer)

    def finish(self) -> None:
        """The input ended: raise if it ended inside a message."""
        if self._error is not None:
            raise self._error
        if self._buffer:
            raise EventStreamError(f"Input ended inside a message ({len(self._buffer)} bytes pending)")

    def feed(self, data: bytes) -> list[Message]:
        """Add ``data`` and return every message it completes, in order."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray = buffer
        else:
            source = data
        size = len(source)
        if size < _PRELUDE_LENGTH:
            if source is data:
                buffer += data
            return []
        try:
            messages, pos = self._parse(source, size)
        except EventStreamError as exc:
            self._error = exc
            buffer.clear()
            raise
        if source is data:
            if pos < size:
                buffer += memoryview(data)[pos:]
        elif pos:
            del buffer[:pos]
        return messages

    def _parse(self, source: bytes | bytearray, size: int) -> tuple[list[Message], int]:
        messages: list[Message] = []
        view = memoryview(source)
        cache = _HEADER_CACHE
        pos = 0
        try:
            while size - pos >= _PRELUDE_LENGTH:
                total, headers_length, prelude_crc = _PRELUDE_WITH_CRC.unpack_from(source, pos)
                if crc32(view[pos : pos + 8]) != prelude_crc:
                    raise EventStreamError("Prelude checksum mismatch")
                if total < _MIN_MESSAGE_LENGTH or headers_length > total - _MIN_MESSAGE_LENGTH:
                    raise EventStreamError("Invalid message length")
                if headers_length > MAX_HEADERS_LENGTH:
                    raise EventStreamError("Invalid headers length")
                if total - headers_length - _MIN_MESSAGE_LENGTH > MAX_PAYLOAD_LENGTH:
                    raise EventStreamError("Invalid payload length")
                if total > self._max_message_length:
                    raise EventStreamError(
                        f"Message of {total} bytes exceeds the {self._max_message_length} byte limit"
                    )
                end = pos + total
                if end > size:
                    break
                (message_crc,) = _U32.unpack_from(source, end - 4)
                if crc32(view[pos + 8 : end - 4], prelude_crc) != message_crc:
                    raise EventStreamError("Message checksum mismatch")
                headers_end = pos + _PRELUDE_LENGTH + headers_length
                raw_headers = bytes(view[pos + _PRELUDE_LENGTH : headers_end])
                headers = cache.get(raw_headers)
                if headers is None:
                    headers = decode_headers(raw_headers)
                    if len(cache) < _HEADER_CACHE_SIZE:
                        cache[raw_headers] = headers
                # Each message gets its own dict: callers may keep or mutate it.
                messages.append(Message(headers.copy(), bytes(view[headers_end : end - 4])))
                pos = end
        finally:
            view.release()
        return messages, pos
