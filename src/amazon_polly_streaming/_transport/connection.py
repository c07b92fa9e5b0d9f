"""One HTTP/2 connection over TLS: the thin asyncio layer around ``h2``.

The protocol object feeds received bytes to ``h2`` and routes the resulting
events to per-stream channels; writers enqueue bytes that leave as the peer's
flow-control window and the socket allow. It owns every wait: each one has a
deadline, and a stream waiting on a silent connection probes it with PING so
that a dead network fails within the read timeout instead of hanging.

A hostile or broken server cannot make it grow without bound: received data
is bounded by the windows we advertise (empty DATA frames are never queued),
and when the server stops reading while we must still answer it (PING
acknowledgements), the write buffer is capped and the connection fails.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import hyperframe.frame

from ..exceptions import (
    ConnectionLostError,
    ConnectTimeoutError,
    PollyStreamingError,
    ProtocolError,
    StreamResetError,
    TransportError,
)
from .header_block import HeaderBlockEncoder
from .stream import Stream

__all__ = ["Connection"]

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
#: Bytes we let wait in the socket's write buffer. Beyond it the server is
#: not reading what it asked for (PING acknowledgements, say): fail rather
#: than buffer without bound.
WRITE_BUFFER_LIMIT = 1024 * 1024
_CANCEL = h2.errors.ErrorCodes.CANCEL

_DataReceived = h2.events.DataReceived
_ResponseReceived = h2.events.ResponseReceived
_StreamEnded = h2.events.StreamEnded
_StreamReset = h2.events.StreamReset
_WindowUpdated = h2.events.WindowUpdated
_ConnectionTerminated = h2.events.ConnectionTerminated
_RemoteSettingsChanged = h2.events.RemoteSettingsChanged


class _DataFrame(hyperframe.frame.DataFrame):
    """A received DATA frame whose ``repr`` leaves its payload out.

    h2 formats every frame it receives for its trace log, whether or not
    anything logs (``H2Connection._receive_frame`` calls ``repr(frame)``),
    and a DATA frame's generic repr copies and hex-encodes the whole payload
    to show its first ten bytes: a tenth of the client's CPU per stream of
    audio. This class differs from hyperframe's in that alone.
    """

    def __repr__(self) -> str:
        return f"DataFrame(stream_id={self.stream_id}, {len(self.data)} bytes)"


_PLAIN_DATA_FRAME = hyperframe.frame.DataFrame


class _FrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame parser, handing out received DATA frames as :class:`_DataFrame`."""

    def __next__(self) -> hyperframe.frame.Frame:
        frame = super().__next__()
        if frame.__class__ is _PLAIN_DATA_FRAME:
            frame.__class__ = _DataFrame
        return frame


class _H2Connection(h2.connection.H2Connection):
    """h2, except that a received GOAWAY does not end the streams it spares, and cheaper DATA frames.

    h2 treats GOAWAY as the end of the connection and rejects any frame after
    it, but a server's graceful GOAWAY promises to finish the streams up to
    ``last_stream_id``, whose frames may follow in the same read. Our own
    ``Connection.goaway`` flag keeps new streams off the connection instead.
    Received DATA frames come as :class:`_DataFrame`, handled as h2 handles
    any DATA frame. Request headers are encoded by a :class:`HeaderBlockEncoder`.
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.encoder = HeaderBlockEncoder()
        self.incoming_buffer = _FrameBuffer(server=False)
        self._frame_dispatch_table[_DataFrame] = self._frame_dispatch_table[_PLAIN_DATA_FRAME]

    def _receive_goaway_frame(self, frame: Any) -> Any:
        was_open = self.state_machine.state is not h2.connection.ConnectionState.CLOSED
        result = super()._receive_goaway_frame(frame)
        if was_open:
            self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return result


class Connection(asyncio.Protocol):
    """An HTTP/2 client connection; ``_dial.open_connection`` makes them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, authority: str, preface_deadline: float | None = None) -> None:
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
        # Any transport with write/close/abort: asyncio's, uvloop's (whose
        # SSL transport is not an asyncio.Transport subclass), a proxy's.
        self.transport: Any = None
        self.is_open = False
        self.goaway = False
        self.retired = False  # lend no more streams (it failed one: maybe dead)
        self.write_paused = False
        self.frames_received = 0
        self._closed_waiter: asyncio.Future[None] = loop.create_future()
        self._error: PollyStreamingError | None = None
        #: Called once the socket is gone (the pool forgets the connection).
        self.on_close: Callable[[Connection], None] | None = None
        #: When (loop time) the server's preface must have come: the end of
        #: ``connect_timeout``, which bounds all of the set-up.
        self._preface_deadline = preface_deadline
        self._preface_timer: asyncio.TimerHandle | None = None
        self._preface_waiter: asyncio.Future[None] | None = None
        # The one timer that enforces the read deadlines of this connection's
        # streams (see watch), and the time it was set for.
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_timer_due = 0.0
        self.preface_received = False

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Connection {self.authority} {state} streams={len(self.streams)} goaway={self.goaway}>"

    @property
    def reusable(self) -> bool:
        """Open, not going away, no stream open (h2 agreeing), and allowed a stream by the server."""
        return self.idle and self.h2.open_outbound_streams == 0

    @property
    def idle(self) -> bool:
        """``reusable`` for a connection that was, and has opened no stream since (a pooled idle one).

        h2's count of open streams walks its table of streams: with no
        stream opened it cannot have grown from 0, so it is not taken again.
        """
        return (
            self.is_open
            and not self.goaway
            and not self.retired
            and not self.streams
            and self.h2.remote_settings.max_concurrent_streams > 0
        )

    # ---------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
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
        if self._preface_deadline is not None:
            # The server's preface is a SETTINGS frame, its first (RFC 9113
            # §3.4). Streams need not wait for it (no round trip is added),
            # but a server that never sends it is a set-up that did not
            # finish within connect_timeout, not a read timeout later.
            self._preface_timer = self.loop.call_at(self._preface_deadline, self._preface_overdue)

    async def wait_preface(self) -> None:
        """Wait for the server's preface (bounded by the preface deadline); raise if the connection failed."""
        if self.preface_received:
            return
        if not self.is_open:
            raise self._error or ConnectionLostError("the connection closed before the server's HTTP/2 preface")
        waiter = self._preface_waiter
        if waiter is None or waiter.done():  # (done: cancelled with its last waiting caller)
            waiter = self._preface_waiter = self.loop.create_future()
        await waiter

    def _preface_overdue(self) -> None:
        self._preface_timer = None
        self._abort(
            ConnectTimeoutError(
                f"{self.authority} completed TLS but sent no HTTP/2 preface (SETTINGS) within connect_timeout"
            )
        )

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
                if stream is not None and event.data:
                    stream.on_data(event.data, event.flow_controlled_length)
                elif event.flow_controlled_length:
                    # Empty (maybe padded) frames and frames of forgotten
                    # streams hold nothing to read: never queue them.
                    self.acknowledge(event.stream_id, event.flow_controlled_length)
            elif isinstance(event, _ResponseReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_headers(event.headers)
            elif isinstance(event, _StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_end()
            elif isinstance(event, _WindowUpdated):
                if event.stream_id:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream.pump()
                else:
                    self._pump_all()
            elif isinstance(event, _StreamReset):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    code = event.error_code
                    name = getattr(code, "name", str(code))
                    stream.fail(StreamResetError(f"the server reset the stream ({name})", error_code=int(code)))
            elif isinstance(event, _RemoteSettingsChanged):
                if not self.preface_received:
                    self._on_preface()
                self._pump_all()
            elif isinstance(event, _ConnectionTerminated):
                self._on_goaway(event)
        self.flush()

    def eof_received(self) -> bool | None:
        # Let asyncio close the transport; connection_lost does the rest.
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._pump_all()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        if self._preface_timer is not None:
            self._preface_timer.cancel()
            self._preface_timer = None
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        error = self._error or ConnectionLostError(
            "the connection closed" + (f": {exc}" if exc else "") + " while the stream was open"
        )
        waiter = self._preface_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        for stream in list(self.streams.values()):
            stream.fail(error)
        if not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close(self)

    def _on_preface(self) -> None:
        self.preface_received = True
        timer, self._preface_timer = self._preface_timer, None
        if timer is not None:
            timer.cancel()
        waiter = self._preface_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---------------------------------------------------------- read deadlines

    def watch(self, deadline: float) -> None:
        """Make sure the read timer fires by ``deadline`` (loop time), when a stream's wait expires.

        Its streams wait a few times per response, and one stream follows
        another on a pooled connection; a timer per wait, or per stream, is
        made, pushed on the loop's heap and cancelled for nothing nearly
        every time (on asyncio all of that is Python code, and the heap grows
        with the streams open). The connection keeps one: a later deadline
        leaves it as it is, and when it fires it expires the waits that are
        due and is set again for the earliest of the others.
        """
        timer = self._read_timer
        if timer is None or self._read_timer_due > deadline:
            if timer is not None:
                timer.cancel()
            self._set_read_timer(deadline)

    def _set_read_timer(self, due: float) -> None:
        # The due time is kept here: uvloop's TimerHandle.when() is rounded to milliseconds.
        self._read_timer_due = due
        self._read_timer = self.loop.call_at(due, self._on_read_timer)

    def _on_read_timer(self) -> None:
        self._read_timer = None
        due = self._read_timer_due
        earliest = math.inf
        for stream in list(self.streams.values()):
            pending = stream.expire_wait(due)
            if pending < earliest:
                earliest = pending
        if earliest != math.inf and self.is_open:
            self._set_read_timer(earliest)  # later than ``due``: waits that began after the timer was set

    # ---------------------------------------------------------- operations

    def flush(self) -> None:
        data = self.h2.data_to_send()
        transport = self.transport
        if data and transport is not None and self.is_open:
            transport.write(data)
            if self.write_paused and transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                self._abort(
                    ConnectionLostError(
                        f"the server stopped reading: more than {WRITE_BUFFER_LIMIT // 1024} KiB wait to be sent"
                    )
                )

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

    def retire(self) -> None:
        """Lend no more streams on this connection; it closes when given back."""
        self.retired = True

    def forget(self, stream_id: int) -> None:
        """A finished stream leaves the connection (which may then be reused)."""
        self.streams.pop(stream_id, None)
        self.flush()

    def ping(self) -> None:
        if self.is_open:
            try:
                self.h2.ping(b"polly-ka")
            except h2.exceptions.ProtocolError:
                return
            self.flush()

    def open_stream(self, headers: Iterable[tuple[bytes, bytes]]) -> Stream:
        """Queue the request headers (body to follow); ``flush`` sends them."""
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
            if stream.output_queued:
                stream.pump()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.goaway = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        code = getattr(event.error_code, "name", str(event.error_code))
        for stream_id, stream in list(self.streams.items()):
            if stream_id > last:
                stream.fail(ConnectionLostError(f"the server sent GOAWAY ({code}) before processing the stream"))
        if not any(stream_id <= last for stream_id in self.streams):
            self.close()
        logger.debug("GOAWAY from %s (%s, last stream %s)", self.authority, code, last)

    def _abort(self, error: PollyStreamingError) -> None:
        self._error = error
        for stream in list(self.streams.values()):
            stream.fail(error)
        self.abort()

    def abort(self) -> None:
        """Drop the socket now, without a goodbye."""
        self.is_open = False
        if self.transport is not None:
            self.transport.abort()

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
