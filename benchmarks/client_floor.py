"""The floor: the least a correct Python client must do, with ``h2`` on asyncio + ssl.

It replays requests that the harness signed beforehand (headers and the
signed event envelopes, the same bytes on every call), so it pays for nothing
but TLS, HTTP/2 framing and finding the AudioEvents in the response with their
CRCs checked. Where ours avoids work that h2 does for nothing, the floor does
too, or it would be no floor: it skips the hex dump of every DATA frame that
h2 makes for a trace log nobody reads, hands h2 headers that need no
normalizing (the credentials already marked never-indexed), and encodes them
with ours' ``HeaderBlockEncoder``, which makes a request's HPACK block once
while the connection's table stays the same. One connection per concurrent
stream, reused, as a pooled client would, with the same 1 MiB stream receive
window as ours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.frame_buffer
import h2.settings
import hyperframe.frame
from hpack import NeverIndexedHeaderTuple
from workloads import main

from amazon_polly_streaming._transport.header_block import HeaderBlockEncoder

_PRELUDE = struct.Struct(">III")
_WINDOW = 1024 * 1024


class _QuietData(hyperframe.frame.DataFrame):
    """What h2's trace log formats of a DATA frame (it does so for every frame, logging or not): the length
    only, not a hex dump made from a copy of the payload. Pure waste that ours avoids, so the floor does too."""

    def __repr__(self) -> str:
        return f"DataFrame(stream_id={self.stream_id}, {len(self.data)} bytes)"


class _Frames(h2.frame_buffer.FrameBuffer):
    def __next__(self) -> hyperframe.frame.Frame:
        frame = super().__next__()
        if type(frame) is hyperframe.frame.DataFrame:
            frame.__class__ = _QuietData
        return frame


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config)
        self.h2.encoder = HeaderBlockEncoder()
        self.h2.incoming_buffer = _Frames(server=False)
        dispatch = self.h2._frame_dispatch_table
        dispatch[_QuietData] = dispatch[hyperframe.frame.DataFrame]
        # asyncio's transport or uvloop's (whose SSL transport is no asyncio.Transport subclass).
        self.transport: Any = None
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW}
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(2 * _WINDOW - 65535)
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self.queue.put_nowait(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                self.queue.put_nowait(None)
        out = self.h2.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def request(self, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers)
        self.h2.send_data(stream_id, body, end_stream=True)
        assert self.transport is not None
        self.transport.write(self.h2.data_to_send())


def _audio(buffer: bytearray) -> list[bytes]:
    """Whole messages off the front of ``buffer``: AudioEvent payloads, CRCs checked."""
    out = []
    pos = 0
    view = memoryview(buffer)
    try:
        while len(buffer) - pos >= 12:
            total, headers_length, prelude_crc = _PRELUDE.unpack_from(buffer, pos)
            if len(buffer) - pos < total:
                break
            end = pos + total
            if zlib.crc32(view[pos : pos + 8]) != prelude_crc:
                raise ValueError("prelude checksum mismatch")
            if zlib.crc32(view[pos : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
                raise ValueError("message checksum mismatch")
            if buffer.find(b"AudioEvent", pos + 12, pos + 12 + headers_length) >= 0:
                out.append(bytes(view[pos + 12 + headers_length : end - 4]))
            pos = end
    finally:
        view.release()
    del buffer[:pos]
    return out


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    """A header as h2 sends it without normalizing: the credentials kept out of HPACK's tables (as h2 would)."""
    if name == "authorization":
        return NeverIndexedHeaderTuple(name.encode(), value.encode())
    return name.encode(), value.encode()


def _load(path: str) -> dict[str, tuple[list[tuple[bytes, bytes]], bytes]]:
    with open(path) as file:
        return {
            text: ([_header(n, v) for n, v in request["headers"]], bytes.fromhex(request["body"]))
            for text, request in json.load(file).items()
        }


class Floor:
    def __init__(self) -> None:
        self.idle: list[_Conn] = []
        self.requests: dict[str, tuple[list[tuple[bytes, bytes]], bytes]] = {}
        self.address = ("", 0)
        self.context: ssl.SSLContext | None = None

    async def start(self, args: argparse.Namespace) -> None:
        if not args.presigned:
            raise SystemExit("the floor replays pre-signed requests: --presigned FILE")
        self.requests = _load(args.presigned)
        host, _, port = args.endpoint.removeprefix("https://").partition(":")
        self.address = (host, int(port or 443))
        self.context = ssl.create_default_context(cafile=args.ca)
        self.context.set_alpn_protocols(["h2"])

    async def _lease(self) -> _Conn:
        if self.idle:
            return self.idle.pop()
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, *self.address, ssl=self.context)
        return conn

    async def stream(self, text: str, args: argparse.Namespace) -> AsyncIterator[bytes]:
        conn = await self._lease()
        headers, body = self.requests[text]
        conn.request(headers, body)
        buffer = bytearray()
        while True:
            data = await conn.queue.get()
            if data is None:
                break
            buffer += data
            for chunk in _audio(buffer):
                yield chunk
        if buffer:
            raise ValueError("the stream ended inside an event-stream message")
        self.idle.append(conn)

    async def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()


if __name__ == "__main__":
    main(Floor())
