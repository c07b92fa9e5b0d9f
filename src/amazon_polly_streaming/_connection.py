"""One HTTP/2 connection over TLS: the thin asyncio layer around ``h2``.

The protocol object feeds received bytes to ``h2`` and routes the resulting
events to per-stream channels; writers enqueue bytes that leave as the peer's
flow-control window allows. It owns every wait: each one has a deadline, and a
stream waiting on a silent connection probes it with PING so that a dead
network fails within the read timeout instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from .exceptions import (
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    PollyStreamingError,
    ProtocolError,
    ReadTimeoutError,
    StreamResetError,
    TLSError,
    TransportError,
)

__all__ = ["Connection", "Stream", "open_connection"]

logger = logging.getLogger("amazon_polly_streaming")


def _no_header_block_dumps(record: logging.LogRecord) -> bool:
    # hpack logs every encoded header block at DEBUG; ours carry the request
    # signature and session token (Huffman-coded, not hidden). Drop just those.
    return not str(record.msg).startswith("Encoded header block")


logging.getLogger("hpack.hpack").addFilter(_no_header_block_dumps)

#: Receive window per stream. Audio beyond it waits in the server until the
#: consumer reads: a slow reader slows the stream instead of growing memory.
STREAM_WINDOW = 1024 * 1024
#: Receive window of the connection (one active stream per connection, plus
#: room for data still arriving on a stream that was just reset).
CONNECTION_WINDOW = 2 * STREAM_WINDOW
_CANCEL = h2.errors.ErrorCodes.CANCEL

_DataReceived = h2.events.DataReceived
_ResponseReceived = h2.events.ResponseReceived
_StreamEnded = h2.events.StreamEnded
_StreamReset = h2.events.StreamReset
_WindowUpdated = h2.events.WindowUpdated
_ConnectionTerminated = h2.events.ConnectionTerminated
_RemoteSettingsChanged = h2.events.RemoteSettingsChanged
_PingAckReceived = h2.events.PingAckReceived


class Stream:
    """One request/response exchange: a writer and a single reader."""

    __slots__ = (
        "_conn",
        "_drain_waiter",
        "_end_after_outbox",
        "_error",
        "_inbox",
        "_outbox",
        "_waiter",
        "headers",
        "id",
        "local_closed",
        "remote_ended",
    )

    def __init__(self, conn: Connection, stream_id: int) -> None:
        self._conn = conn
        self.id = stream_id
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.remote_ended = False
        self.local_closed = False
        self._inbox: deque[tuple[bytes, int]] = deque()
        self._error: PollyStreamingError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._outbox: deque[bytes] = deque()
        self._end_after_outbox = False
        self._drain_waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<Stream {self.id} remote_ended={self.remote_ended} local_closed={self.local_closed}>"

    @property
    def closed(self) -> bool:
        """Both directions are finished (or the stream failed)."""
        return (self.remote_ended and self.local_closed) or self._error is not None

    # ------------------------------------------------------------- reading

    async def response_headers(self, timeout: float) -> list[tuple[bytes, bytes]]:
        """Wait for the response headers; ``timeout`` is strict."""
        while self.headers is None:
            if self._error is not None:
                raise self._error
            if self.remote_ended:
                raise ProtocolError("stream ended before response headers")
            await self._wait(timeout, strict=True)
        return self.headers

    async def read(self, timeout: float, *, strict: Callable[[], bool]) -> bytes | None:
        """The next DATA payload, or None once the server ended the stream.

        While ``strict()`` the server owes us data and ``timeout`` of silence
        is a ``ReadTimeoutError``; otherwise silence is legitimate (the server
        is waiting for more text) and the connection is only probed with PING.
        The writer calls :meth:`nudge` when that changes, so a wait started
        in one mode does not outlive it.
        """
        inbox = self._inbox
        while not inbox:
            if self._error is not None:
                raise self._error
            if self.remote_ended:
                return None
            await self._wait(timeout, strict=strict())
        data, flow = inbox.popleft()
        if flow:
            self._conn.acknowledge(self.id, flow)
        return data

    async def _wait(self, timeout: float, *, strict: bool) -> None:
        conn = self._conn
        loop = conn.loop
        waiter = loop.create_future()
        self._waiter = waiter
        received = conn.frames_received
        pinged = False
        try:
            while True:
                timer = loop.call_later(timeout, _expire, waiter)
                try:
                    await waiter
                    return
                except _Expired:
                    if strict:
                        raise ReadTimeoutError(f"no response from the server within {timeout:g} s") from None
                    # Silence on an open stream is legitimate, but a dead
                    # network looks the same: ask the peer to answer a PING.
                    if pinged and conn.frames_received == received:
                        raise ReadTimeoutError(
                            f"connection unresponsive: no reply to PING within {timeout:g} s"
                        ) from None
                    received = conn.frames_received
                    pinged = True
                    conn.ping()
                    waiter = loop.create_future()
                    self._waiter = waiter
                finally:
                    timer.cancel()
        finally:
            self._waiter = None

    def nudge(self) -> None:
        """Make a waiting reader re-check its conditions (e.g. the input just closed)."""
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------- writing

    def send(self, data: bytes, *, end_stream: bool = False) -> None:
        """Queue ``data`` (and END_STREAM) for sending; call ``Connection.flush`` after."""
        if self._error is not None:
            raise self._error
        if self.local_closed or self._end_after_outbox:
            raise ProtocolError("the request body was already ended")
        if data:
            self._outbox.append(data)
        if end_stream:
            self._end_after_outbox = True
        self._pump()

    @property
    def output_queued(self) -> bool:
        return bool(self._outbox)

    async def drain(self, timeout: float) -> None:
        """Wait until everything queued has been handed to the connection."""
        while self._outbox:
            if self._error is not None:
                raise self._error
            loop = self._conn.loop
            waiter = loop.create_future()
            self._drain_waiter = waiter
            timer = loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            except _Expired:
                raise ReadTimeoutError(
                    f"the server did not accept more request data within {timeout:g} s (flow control)"
                ) from None
            finally:
                timer.cancel()
                self._drain_waiter = None

    def _pump(self) -> None:
        conn = self._conn
        h2conn = conn.h2
        outbox = self._outbox
        try:
            while outbox:
                window = h2conn.local_flow_control_window(self.id)
                if window <= 0:
                    break
                chunk = outbox[0]
                size = min(len(chunk), window, h2conn.max_outbound_frame_size)
                last = size == len(chunk)
                if last:
                    outbox.popleft()
                else:
                    outbox[0] = chunk[size:]
                    chunk = chunk[:size]
                end = last and not outbox and self._end_after_outbox
                h2conn.send_data(self.id, chunk, end_stream=end)
                if end:
                    self.local_closed = True
            if not outbox and self._end_after_outbox and not self.local_closed:
                h2conn.end_stream(self.id)
                self.local_closed = True
        except h2.exceptions.StreamClosedError:
            # The server already closed (or reset) this stream; what we still
            # wanted to send is moot and the reader learns why.
            outbox.clear()
            self.local_closed = True
        if not outbox:
            waiter = self._drain_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------- events

    def _fail(self, error: PollyStreamingError) -> None:
        # A stream the server already ended completed normally: its reader
        # still gets every byte and a clean end. Nothing more can be sent.
        if self._error is None and not self.remote_ended:
            self._error = error
        self._outbox.clear()
        self.local_closed = True
        self._wake()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def reset(self) -> None:
        """Abandon the stream: RST_STREAM(CANCEL) unless it is already closed."""
        conn = self._conn
        if not self.closed and conn.is_open:
            with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                conn.h2.reset_stream(self.id, _CANCEL)
        self.local_closed = True
        self.remote_ended = True
        self._outbox.clear()
        self.release()

    def release(self) -> None:
        """Forget the stream; hand unread data back to the connection window."""
        conn = self._conn
        unread = sum(flow for _, flow in self._inbox)
        self._inbox.clear()
        if unread and conn.is_open:
            conn.acknowledge(self.id, unread)
        conn.streams.pop(self.id, None)
        conn.flush()


class _Expired(Exception):
    """Internal: a wait's timer fired."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


class _H2Connection(h2.connection.H2Connection):
    """h2, except that a received GOAWAY does not end the streams it spares.

    h2 treats GOAWAY as the end of the connection and rejects any frame after
    it, but a server's graceful GOAWAY promises to finish the streams up to
    ``last_stream_id``, whose frames may follow in the same read. Our own
    ``Connection.goaway`` flag keeps new streams off the connection instead.
    """

    def _receive_goaway_frame(self, frame: Any) -> Any:
        was_open = self.state_machine.state is not h2.connection.ConnectionState.CLOSED
        result = super()._receive_goaway_frame(frame)
        if was_open:
            self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return result


class Connection(asyncio.Protocol):
    """An HTTP/2 client connection; create it with :func:`open_connection`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, authority: str) -> None:
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            # Our own headers are built valid and lower-case; checking them
            # again on every request is wasted work.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = _H2Connection(config=config)
        self.loop = loop
        self.authority = authority
        self.streams: dict[int, Stream] = {}
        self.transport: asyncio.Transport | None = None
        self.is_open = False
        self.goaway = False
        self.frames_received = 0
        self.idle_since = loop.time()
        self._closed_waiter: asyncio.Future[None] = loop.create_future()
        self._error: PollyStreamingError | None = None
        self._on_close: Callable[[Connection], None] | None = None

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Connection {self.authority} {state} streams={len(self.streams)} goaway={self.goaway}>"

    @property
    def reusable(self) -> bool:
        return self.is_open and not self.goaway and not self.streams

    # ---------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.is_open = True
        h2conn = self.h2
        h2conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            },
        )
        h2conn.initiate_connection()
        h2conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.frames_received += 1
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._abort(ProtocolError(f"HTTP/2 protocol error from the server: {exc}"))
            return
        streams = self.streams
        for event in events:
            # Most frequent first: this loop runs for every frame received.
            if isinstance(event, _DataReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._inbox.append((event.data, event.flow_controlled_length))
                    stream._wake()
                elif event.flow_controlled_length:
                    self.acknowledge(event.stream_id, event.flow_controlled_length)
            elif isinstance(event, _ResponseReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.headers = event.headers
                    stream._wake()
            elif isinstance(event, _StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.remote_ended = True
                    stream._wake()
            elif isinstance(event, _WindowUpdated):
                if event.stream_id:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream._pump()
                else:
                    self._pump_all()
            elif isinstance(event, _StreamReset):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    code = event.error_code
                    name = getattr(code, "name", str(code))
                    stream._fail(StreamResetError(f"the server reset the stream ({name})", error_code=int(code)))
            elif isinstance(event, _RemoteSettingsChanged):
                self._pump_all()
            elif isinstance(event, _ConnectionTerminated):
                self._on_goaway(event)
        self.flush()

    def eof_received(self) -> bool | None:
        # Let asyncio close the transport; connection_lost does the rest.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        error = self._error or ConnectionLostError(
            "the connection closed" + (f": {exc}" if exc else "") + " while the stream was open"
        )
        for stream in list(self.streams.values()):
            stream._fail(error)
        if not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        if self._on_close is not None:
            self._on_close(self)

    # ---------------------------------------------------------- operations

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and self.is_open:
            self.transport.write(data)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Hand ``size`` consumed bytes back to the peer's send window.

        h2 batches these into WINDOW_UPDATE frames (at half a window); when it
        emits one it must leave now, or a reader that drained a full window
        would wait forever for data the server cannot send.
        """
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except h2.exceptions.ProtocolError:
            return
        self.flush()

    def ping(self) -> None:
        if self.is_open:
            try:
                self.h2.ping(b"polly-ka")
            except h2.exceptions.ProtocolError:
                return
            self.flush()

    def open_stream(self, headers: Sequence[tuple[bytes, bytes]]) -> Stream:
        """Send request headers (body to follow) and return the new stream."""
        if not self.is_open:
            raise self._error or ConnectionLostError("the connection is closed")
        if self.goaway:
            raise ConnectionLostError("the server is closing this connection (GOAWAY)")
        h2conn = self.h2
        try:
            stream_id = h2conn.get_next_available_stream_id()
            h2conn.send_headers(stream_id, headers)
        except h2.exceptions.TooManyStreamsError as exc:
            raise TransportError("the server allows no more streams on this connection") from exc
        except h2.exceptions.ProtocolError as exc:
            raise ProtocolError(f"cannot open an HTTP/2 stream: {exc}") from exc
        stream = Stream(self, stream_id)
        self.streams[stream_id] = stream
        return stream

    def _pump_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream._outbox:
                stream._pump()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.goaway = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        code = getattr(event.error_code, "name", str(event.error_code))
        for stream_id, stream in list(self.streams.items()):
            if stream_id > last:
                stream._fail(ConnectionLostError(f"the server sent GOAWAY ({code}) before processing the stream"))
        if not any(stream_id <= last for stream_id in self.streams):
            self.close()
        logger.debug("GOAWAY from %s (%s, last stream %s)", self.authority, code, last)

    def _abort(self, error: PollyStreamingError) -> None:
        self._error = error
        for stream in list(self.streams.values()):
            stream._fail(error)
        if self.transport is not None:
            self.transport.abort()
        self.is_open = False

    def close(self) -> None:
        """Say GOAWAY and close; ``wait_closed`` waits for the socket to go."""
        if self.is_open:
            try:
                self.h2.close_connection()
                self.flush()
            except h2.exceptions.ProtocolError:
                pass
            self.is_open = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def wait_closed(self, timeout: float = 1.0) -> None:
        """Wait for the socket to close; abort it if the peer does not cooperate."""
        if self._closed_waiter.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._closed_waiter), timeout)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()
            await asyncio.sleep(0)


def _tls_error(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError | ssl.CertificateError)


async def open_connection(
    *,
    host: str,
    port: int,
    authority: str,
    ssl_context: ssl.SSLContext,
    server_hostname: str | None,
    connect_timeout: float,
    proxy: tuple[str, int, bytes | None] | None = None,
) -> Connection:
    """Connect, handshake TLS with ALPN ``h2`` and send the HTTP/2 preface."""
    loop = asyncio.get_running_loop()
    conn = Connection(loop, authority)
    target = f"{host}:{port}"
    try:
        async with asyncio.timeout(connect_timeout):
            if proxy is None:
                await loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=connect_timeout,
                )
            else:
                await _connect_through_proxy(
                    loop, conn, proxy, host, port, ssl_context, server_hostname, connect_timeout
                )
    except TimeoutError:
        conn.close()
        raise ConnectTimeoutError(f"connecting to {target} took longer than {connect_timeout:g} s") from None
    except PollyStreamingError:
        conn.close()
        raise
    except OSError as exc:
        conn.close()
        if _tls_error(exc):
            if isinstance(exc, ssl.SSLCertVerificationError):
                detail = f"certificate verify failed: {exc.verify_message}"
            else:
                detail = getattr(exc, "reason", None) or str(exc)
            raise TLSError(f"TLS handshake with {target} failed: {detail}") from exc
        raise ConnectError(f"cannot connect to {target}: {exc.strerror or exc}") from exc
    transport = conn.transport
    assert transport is not None
    ssl_object: Any = transport.get_extra_info("ssl_object")
    alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    if alpn != "h2":
        conn._abort(TLSError(f"{target} did not negotiate HTTP/2 (ALPN gave {alpn!r})"))
        raise TLSError(f"{target} did not negotiate HTTP/2 over TLS (ALPN gave {alpn!r}); Polly requires h2")
    return conn


class _TunnelSetup(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT; TLS then takes the transport over."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[bytes] = loop.create_future()
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\r\n\r\n" in self._buffer and not self.answer.done():
            self.answer.set_result(self._buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectError("the proxy closed the connection during CONNECT"))


async def _connect_through_proxy(
    loop: asyncio.AbstractEventLoop,
    conn: Connection,
    proxy: tuple[str, int, bytes | None],
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    server_hostname: str | None,
    connect_timeout: float,
) -> None:
    """Tunnel with HTTP CONNECT, then start TLS to the endpoint inside the tunnel."""
    proxy_host, proxy_port, authorization = proxy
    setup = _TunnelSetup(loop)
    try:
        transport, _ = await loop.create_connection(lambda: setup, proxy_host, proxy_port)
    except OSError as exc:
        raise ConnectError(f"cannot connect to proxy {proxy_host}:{proxy_port}: {exc.strerror or exc}") from exc
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n".encode("latin-1")
    if authorization:
        request += b"Proxy-Authorization: " + authorization + b"\r\n"
    transport.write(request + b"\r\n")
    try:
        answer = await setup.answer
    except BaseException:
        transport.close()
        raise
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[1] != "200":
        transport.close()
        raise ConnectError(f"proxy {proxy_host}:{proxy_port} refused the tunnel: {status_line}")
    tls_transport = await loop.start_tls(
        transport, setup, ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=connect_timeout
    )
    if tls_transport is None:
        raise ConnectError("the proxy tunnel closed during the TLS handshake")
    tls_transport.set_protocol(conn)
    conn.connection_made(tls_transport)
