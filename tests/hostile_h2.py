"""A small HTTP/2+TLS server that misbehaves on purpose, one script per test.

The emulator plays a correct Polly; this server plays the broken or hostile
one: odd ``:status`` values, audio and an exception in one DATA frame,
``StreamClosedEvent`` without END_STREAM, floods of empty DATA frames or of
PINGs while it never reads, and a TLS handshake that never completes.

``async with HostileServer(script) as server:`` calls ``await script(peer)``
for every accepted connection, with an :class:`H2Peer` that wraps the
server side of ``h2`` over asyncio streams (so a peer that stops reading
really stops: TCP back-pressure reaches the client). Point a client at
``server.endpoint_url`` with ``verify=server.ca_file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from amazon_polly_streaming._wire.eventstream import encode_headers, encode_message
from amazon_polly_streaming.emulator._certs import make_certificates

__all__ = [
    "EVENT_STREAM",
    "H2Peer",
    "HostileServer",
    "StallingServer",
    "audio_event",
    "empty_data_frames",
    "exception_event",
    "ping_frames",
    "stream_closed_event",
]

EVENT_STREAM = b"application/vnd.amazon.eventstream"
Script = Callable[["H2Peer"], Awaitable[None]]

# ------------------------------------------------------------------ messages


def audio_event(payload: bytes) -> bytes:
    headers = encode_headers(
        ((":message-type", "event"), (":event-type", "AudioEvent"), (":content-type", "application/octet-stream"))
    )
    return encode_message(headers, payload)


def stream_closed_event(characters: int) -> bytes:
    headers = encode_headers(
        ((":message-type", "event"), (":event-type", "StreamClosedEvent"), (":content-type", "application/json"))
    )
    return encode_message(headers, json.dumps({"RequestCharacters": characters}).encode())


def exception_event(error_type: str, message: str) -> bytes:
    headers = encode_headers(
        ((":message-type", "exception"), (":exception-type", error_type), (":content-type", "application/json"))
    )
    return encode_message(headers, json.dumps({"message": message}).encode())


# ------------------------------------------------------------------ raw frames


def empty_data_frames(stream_id: int, count: int) -> bytes:
    """``count`` DATA frames of length 0 without flags: they cost no flow-control window."""
    return _frame_header(0, 0x0, 0x0, stream_id) * count


def _frame_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    return struct.pack(">I", length)[1:] + bytes((frame_type, flags)) + struct.pack(">I", stream_id & 0x7FFFFFFF)


def ping_frames(count: int, opaque: bytes = b"hostile!") -> bytes:
    """``count`` PING frames (not ACKs): the client must answer every one."""
    assert len(opaque) == 8
    return (_frame_header(8, 0x6, 0x0, 0) + opaque) * count


# ------------------------------------------------------------------ the peer


class H2Peer:
    """The server side of one connection; the test's script drives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_outbound_headers=False,
                validate_inbound_headers=False,
            )
        )
        #: Request headers by stream id, in arrival order.
        self.requests: dict[int, list[tuple[bytes, bytes]]] = {}
        #: (stream id, error code) of every RST_STREAM the client sent.
        self.resets: list[tuple[int, int]] = []
        self.pings_acked: list[bytes] = []
        #: SETTINGS frames of ours the client acknowledged (the preface's included).
        self.settings_acked = 0
        self.eof = False
        self._reading: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    # -------------------------------------------------------------- writing

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def write_raw(self, data: bytes) -> None:
        """Bytes straight onto the TLS stream, past h2's state machine."""
        self.flush()
        if not self.writer.is_closing():
            self.writer.write(data)

    async def drain(self, timeout: float) -> bool:
        """Wait until the socket took our writes; False if it did not within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except TimeoutError:
            return False
        except (ConnectionError, RuntimeError):
            return False
        return True

    def respond(
        self, stream_id: int, status: bytes = b"200", *, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [(b":status", status), (b"content-type", EVENT_STREAM), (b"x-amzn-requestid", b"hostile-1")]
        self.h2.send_headers(stream_id, headers + (extra or []))
        self.flush()

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """One DATA frame (``data`` must fit the client's window and frame size)."""
        self.h2.send_data(stream_id, data, end_stream=end_stream)
        self.flush()

    async def allow_streams(self, count: int, timeout: float = 5.0) -> bool:
        """Change SETTINGS_MAX_CONCURRENT_STREAMS; True once the client acknowledged it."""
        acked = self.settings_acked
        self.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: count})
        self.flush()
        return await self.wait_until(lambda: self.settings_acked > acked, timeout)

    async def answer_in_bursts(self, stream_id: int, audio: bytes, bursts: int, pause: float) -> None:
        """A complete response spoken slowly: 200, ``bursts`` AudioEvents of ``audio`` ``pause`` seconds apart,
        then StreamClosedEvent and END_STREAM."""
        self.respond(stream_id)
        for _ in range(bursts):
            self.send_data(stream_id, audio_event(audio))
            await asyncio.sleep(pause)
        self.send_data(stream_id, stream_closed_event(6), end_stream=True)

    async def answer(self, stream_id: int, audio: bytes = b"\x01\x02" * 100) -> None:
        """A correct, complete response: 200, the audio, StreamClosedEvent, END_STREAM."""
        self.respond(stream_id)
        self.send_data(stream_id, audio_event(audio) + stream_closed_event(5), end_stream=True)
        await self.drain(5.0)

    # -------------------------------------------------------------- reading

    async def start(self) -> None:
        """Send the server preface."""
        self.h2.initiate_connection()
        self.flush()
        await self.drain(5.0)

    def _handle(self, events: list[h2.events.Event]) -> None:
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = list(event.headers or [])
            elif isinstance(event, h2.events.DataReceived):
                if event.flow_controlled_length:
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.resets.append((event.stream_id, int(event.error_code)))
            elif isinstance(event, h2.events.PingAckReceived):
                self.pings_acked.append(event.ping_data)
            elif isinstance(event, h2.events.SettingsAcknowledged):
                self.settings_acked += 1
        self.flush()
        self._changed.set()

    async def read_once(self) -> bool:
        """Read and handle one chunk; False at EOF."""
        try:
            data = await self.reader.read(65536)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            self._changed.set()
            return False
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.eof = True
            self._changed.set()
            return False
        self._handle(events)
        return True

    def start_reading(self) -> None:
        """Keep reading in the background (answering PINGs and SETTINGS, acking data)."""
        if self._reading is None:
            self._reading = asyncio.get_running_loop().create_task(self._read_forever())

    async def _read_forever(self) -> None:
        while await self.read_once():
            pass

    async def stop_reading(self) -> None:
        """Stop reading the socket for good: TCP back-pressure builds up at the client."""
        task, self._reading = self._reading, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Read (or, with a background reader, watch) until ``predicate()``; False on timeout or EOF."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self.eof:
                        return False
                    if self._reading is None:
                        await self.read_once()
                    else:
                        self._changed.clear()
                        await self._changed.wait()
        except TimeoutError:
            return False
        return True

    async def next_request(self, timeout: float = 5.0) -> int:
        """The id of the next request stream (headers received)."""
        seen = set(self.requests)
        if not await self.wait_until(lambda: bool(set(self.requests) - seen), timeout):
            if self.eof:
                raise ConnectionResetError("the client closed the connection")
            raise TimeoutError("no request arrived")
        return min(set(self.requests) - seen)


# ------------------------------------------------------------------ servers


class _Certificates:
    """The emulator's certificate helper, in a temporary directory."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="hostile-h2-")
        paths = make_certificates(Path(self._dir.name))
        self.ca_file = paths.ca_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(paths.cert_file, paths.key_file)
        self.context.set_alpn_protocols(["h2"])

    def cleanup(self) -> None:
        self._dir.cleanup()


def _listening_socket(rcvbuf: int | None, mss: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Set before listen(): accepted sockets inherit them. A small receive
    # buffer and MSS keep the kernel from absorbing megabytes on loopback,
    # so that a peer that stops reading is felt at once.
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if mss is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


class HostileServer:
    """Runs ``script(peer)`` for each connection; see the module docstring."""

    def __init__(
        self, script: Script, *, rcvbuf: int | None = None, mss: int | None = None, preface: bool = True
    ) -> None:
        self._script = script
        self._preface = preface  # False: TLS with ALPN h2, and never a SETTINGS frame
        self._rcvbuf = rcvbuf
        self._mss = mss
        self._certs: _Certificates | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.peers: list[H2Peer] = []
        self.failures: list[BaseException] = []
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        assert self._certs is not None
        return self._certs.ca_file

    @property
    def resets(self) -> list[tuple[int, int]]:
        return [reset for peer in self.peers for reset in peer.resets]

    async def __aenter__(self) -> HostileServer:
        self._certs = _Certificates()
        sock = _listening_socket(self._rcvbuf, self._mss)
        self._server = await asyncio.start_server(self._accept, sock=sock, ssl=self._certs.context)
        self.port = sock.getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = H2Peer(reader, writer)
        self.peers.append(peer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._preface:
                await peer.start()
            await self._script(peer)
            # The script is done; keep the connection until the client goes.
            await peer.wait_until(lambda: False, timeout=3600)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the server is closing; end quietly (asyncio logs a cancelled handler)
        except Exception as exc:  # a broken script must show in the test
            self.failures.append(exc)
        finally:
            await peer.stop_reading()
            writer.close()
            self._tasks.discard(task)

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for peer in self.peers:
            peer.writer.transport.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        await asyncio.sleep(0)
        if self._certs is not None:
            self._certs.cleanup()
        assert not self.failures, f"the hostile server's script failed: {self.failures!r}"


class StallingServer:
    """Accepts TCP connections and never says a word: a TLS handshake that stalls."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.accepted = asyncio.Event()
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.accepted.set()

    async def __aenter__(self) -> StallingServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        await asyncio.sleep(0)
