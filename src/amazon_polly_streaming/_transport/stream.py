"""One HTTP/2 stream of a connection: a single reader and a single writer, every wait bounded.

The reader waits with a deadline: strict while the server owes data, and
otherwise a PING probe of the connection, so that a dead network fails within
the read timeout instead of hanging. The writer queues bytes that leave as
the peer's flow-control window and the socket allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

import h2.connection
import h2.errors
import h2.exceptions

from ..exceptions import ProtocolError, ReadTimeoutError

__all__ = ["Stream", "StreamHost"]

_H2 = h2.connection.H2Connection


class StreamHost(Protocol):
    """What a stream needs of its connection (``_connection.Connection``)."""

    loop: asyncio.AbstractEventLoop
    frames_received: int
    is_open: bool
    write_paused: bool

    @property
    def h2(self) -> _H2: ...

    def ping(self) -> None: ...

    def watch(self, deadline: float) -> None: ...

    def flush(self) -> None: ...

    def acknowledge(self, stream_id: int, size: int) -> None: ...

    def forget(self, stream_id: int) -> None: ...


_CANCEL = h2.errors.ErrorCodes.CANCEL


class Stream:
    """One request/response exchange on a :class:`Connection`: a writer and a single reader."""

    __slots__ = (
        "_conn",
        "_deadline",
        "_drain_waiter",
        "_end_after_outbox",
        "_error",
        "_inbox",
        "_inbox_flow",
        "_outbox",
        "_taken",
        "_waiter",
        "headers",
        "id",
        "local_closed",
        "remote_ended",
    )

    def __init__(self, conn: StreamHost, stream_id: int) -> None:
        self._conn = conn
        self.id = stream_id
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.remote_ended = False
        self.local_closed = False
        self._inbox: deque[bytes] = deque()
        self._inbox_flow = 0  # the flow-controlled bytes of what waits in _inbox (padding included)
        self._taken = 0  # flow-controlled bytes the last read handed out, acknowledged at the next
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        # The current wait's deadline (loop time); the connection's read timer enforces it.
        self._deadline = 0.0
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

    async def read(self, timeout: float, *, strict: Callable[[], bool]) -> list[bytes] | None:
        """Every DATA payload received and not yet read (at least one), or None once the server ended the stream.

        All of them at once: a read's cost is per call more than per byte,
        and the server often sends a whole response between two reads. They
        go back to the flow-control window at the next read (or release),
        once the reader is done with them, so that what the server may send
        beyond what the caller took stays within one window.

        While ``strict()`` the server owes us data and ``timeout`` of silence
        is a ``ReadTimeoutError``; otherwise silence is legitimate (the server
        is waiting for more text) and the connection is only probed with PING.
        The writer calls :meth:`nudge` when that changes, so a wait started
        in one mode does not outlive it.
        """
        taken = self._taken
        if taken:
            # One acknowledgement for the last read's lot: h2 only counts the bytes.
            self._taken = 0
            self._conn.acknowledge(self.id, taken)
        inbox = self._inbox
        while not inbox:
            if self._error is not None:
                raise self._error
            if self.remote_ended:
                return None
            await self._wait(timeout, strict=strict())
        self._taken = self._inbox_flow
        self._inbox_flow = 0
        if len(inbox) == 1:
            return [inbox.popleft()]
        chunks = list(inbox)
        inbox.clear()
        return chunks

    async def _wait(self, timeout: float, *, strict: bool) -> None:
        conn = self._conn
        loop = conn.loop
        waiter = loop.create_future()
        self._waiter = waiter
        received = conn.frames_received
        pinged = False
        try:
            while True:
                self._arm(loop.time() + timeout)
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
            self._waiter = None

    def _arm(self, deadline: float) -> None:
        """Make the current wait fail at ``deadline`` unless woken before (the connection's timer does)."""
        self._deadline = deadline
        self._conn.watch(deadline)

    def expire_wait(self, due: float) -> float:
        """The read timer set for ``due`` fired: fail the wait in progress if it is due by then.

        Returns the deadline of a wait still to come due (one that began
        after the timer was set), or infinity.
        """
        waiter = self._waiter
        if waiter is None or waiter.done():
            return math.inf  # no wait in progress: the next one sets its own deadline
        if self._deadline > due:
            return self._deadline
        waiter.set_exception(_Expired())
        return math.inf

    def nudge(self) -> None:
        """Make a waiting reader re-check its conditions (e.g. the input just closed)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------- from the connection

    def on_data(self, data: bytes, flow: int) -> None:
        """A DATA payload arrived (never empty: the connection drops those)."""
        if self._error is not None:
            # The stream failed on our side: what still arrives is moot.
            self._conn.acknowledge(self.id, flow)
            return
        self._inbox.append(data)
        self._inbox_flow += flow
        self.nudge()

    def on_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        self.nudge()

    def on_end(self) -> None:
        self.remote_ended = True
        self.nudge()

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
        self.pump()

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
        if self._error is not None:
            raise self._error

    def pump(self) -> None:
        """Hand queued data to h2 as the window and the socket allow."""
        conn = self._conn
        h2conn = conn.h2
        outbox = self._outbox
        try:
            while outbox and not conn.write_paused:
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

    # ------------------------------------------------------------- ending

    def fail(self, error: BaseException, *, reset: bool = False) -> None:
        """End the stream with ``error``: its reader and writer raise it.

        A stream the server already ended completed normally: its reader
        still gets every byte and a clean end. Nothing more can be sent.
        With ``reset`` the server hears of it at once (RST_STREAM), so it
        stops synthesizing; data it still sends is dropped.
        """
        if self._error is None and not self.remote_ended:
            self._error = error
            if reset:
                self._send_reset()
        self._outbox.clear()
        self.local_closed = True
        self.nudge()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def reset(self) -> None:
        """Abandon the stream: RST_STREAM(CANCEL) unless HTTP/2 already closed it both ways.

        Whatever failed the stream on our side (a text source, a timeout),
        the server must hear of it, or the stream keeps counting against the
        connection's concurrency limit.
        """
        self._send_reset()
        self.local_closed = True
        self.remote_ended = True
        self._outbox.clear()
        self.release()

    def _send_reset(self) -> None:
        conn = self._conn
        h2_stream = conn.h2.streams.get(self.id)
        if conn.is_open and h2_stream is not None and not h2_stream.closed:
            with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                conn.h2.reset_stream(self.id, _CANCEL)
            conn.flush()

    def release(self) -> None:
        """Forget the stream; hand unread data back to the connection window."""
        conn = self._conn
        unread = self._taken
        self._taken = 0
        if self._inbox:
            unread += self._inbox_flow
            self._inbox_flow = 0
            self._inbox.clear()
        if unread and conn.is_open:
            conn.acknowledge(self.id, unread)
        conn.forget(self.id)


class _Expired(Exception):
    """Internal: a wait's timer fired."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())
