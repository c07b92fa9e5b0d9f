"""One synthesis stream's life: lease, request, sending text, keep-alive, the read loop, release.

``SpeechStream`` keeps these promises: the request leaves the moment the
stream opens and the keep-alive runs from then on; every wait is bounded;
the stream ends only on ``StreamClosedEvent`` (anything else raises); audio
that arrived before an error is delivered before the error is raised; and
leaving early resets the HTTP/2 stream and returns the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from hpack import NeverIndexedHeaderTuple

from ._admission import NEUTRAL, SUCCESS, THROTTLED
from ._runtime import USER_AGENT, Runtime, StreamOwner
from ._transport.header_block import UnindexedHeaderTuple
from ._wire.event_signer import amz_date
from ._wire.request import CLOSE_STREAM_EVENT, SignedRequest, SynthesisParams, text_event, text_events
from ._wire.response import ResponseItem, ResponseParser
from .events import AudioEvent, Event
from .exceptions import (
    PollyStreamingError,
    ProtocolError,
    ReadTimeoutError,
    StreamResetError,
    ThrottlingException,
    TransportError,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._admission import Permit
    from ._transport.connection import Connection
    from ._transport.stream import Stream
    from ._wire.event_signer import EventSigner

__all__ = ["SpeechStream", "StreamMetrics", "open_session", "wall_clock"]

logger = logging.getLogger("amazon_polly_streaming")
#: The wall clock that dates requests and events (seconds since the epoch).
#: The asyncio layer owns time; tests replace this to cross 00:00 UTC.
wall_clock: Callable[[], float] = time.time
#: How long an error response may take to deliver its body after its headers.
_ERROR_BODY_GRACE = 2.0
#: After StreamClosedEvent the server should end the stream at once; a server
#: that does not gets this long before the stream completes anyway (and is reset).
_CLOSE_GRACE = 1.0
_KEEPALIVE_EVENT = text_event(" ")  # Polly's documented keep-alive: white space
_SENSITIVE = frozenset({"authorization", "x-amz-security-token"})
#: Envelopes signed together go in DATA frames of at most this size (h2's
#: default largest frame), joined without copying more than that at once.
_BATCH_BYTES = 16384


def _always() -> bool:
    return True


class _Http2Headers:
    """A signed request's headers as HTTP/2 sends them, made as h2 sends them.

    Not a sequence, and its ``repr`` shows nothing: no error reporter that
    walks the locals of a traceback prints the signature or a session token.
    Credentials are sent "never indexed" (RFC 7541 7.1.3): kept out of the
    HPACK tables of every hop, and redacted by hpack's debug logging. The
    date, new every second, is sent without indexing: it would only churn
    the connection's table (``_transport.header_block``).
    """

    __slots__ = ("_items",)

    def __init__(self, request: SignedRequest) -> None:
        self._items = tuple(_header(name, value) for name, value in request)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"<{len(self._items)} HTTP/2 request headers, redacted>"


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    if name in _SENSITIVE:
        return NeverIndexedHeaderTuple(name.encode(), value.encode())
    if name == "x-amz-date":
        return UnindexedHeaderTuple(name.encode(), value.encode())
    return name.encode(), value.encode()


def _http2_headers(runtime: Runtime, request: SignedRequest) -> _Http2Headers:
    """``request``'s headers for HTTP/2, made once for all the streams that share them (``runtime`` keeps them)."""
    last: tuple[SignedRequest, _Http2Headers] | None = runtime.http2_headers
    if last is not None and request.same_headers(last[0]):
        return last[1]
    headers = _Http2Headers(request)
    runtime.http2_headers = (request, headers)
    return headers


class StreamMetrics:
    """Timings (seconds, loop clock) and counts of one stream."""

    __slots__ = (
        "admission_wait",
        "audio_bytes",
        "cache_hit",
        "connection_reused",
        "connection_wait",
        "started",
        "time_to_first_audio",
        "total_time",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        #: Seconds waiting for the limiter's permit (None without a limiter).
        self.admission_wait: float | None = None
        self.connection_wait: float | None = None
        self.connection_reused: bool | None = None
        self.time_to_first_audio: float | None = None
        self.total_time: float | None = None
        self.audio_bytes = 0
        #: The audio was replayed from the phrase cache: no stream, nothing billed.
        self.cache_hit = False

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name != "started")
        return f"StreamMetrics({fields})"


class SpeechStream(StreamOwner):
    """One bidirectional synthesis stream.

    Send text with :meth:`send`, :meth:`flush` and :meth:`close_input`;
    iterate the instance for audio bytes, or :meth:`events` for events.
    ``request_id``, ``request_characters`` (billed) and ``metrics`` report
    what the service said and how long things took. Concurrent ``send``
    calls are serialized: each text goes whole, once, in call order.
    """

    def __init__(self, runtime: Runtime, params: SynthesisParams, *, use_pool: bool, text_type: str | None) -> None:
        self._runtime = runtime
        self._loop = runtime.loop
        config = runtime.config
        self.params = params
        self._use_pool = use_pool
        self._text_type = text_type
        self.metrics = StreamMetrics(self._loop.time())
        self._read_timeout = config.read_timeout
        self._keepalive_interval = config.keepalive_interval
        self._parser = ResponseParser()
        self._conn: Connection | None = None
        self._stream: Stream | None = None
        self._signer: EventSigner | None = None
        self._send_lock: asyncio.Lock | None = None
        self._input_closed = False
        self._done = False  # StreamClosedEvent and the end of the stream were read
        self._released = False
        self._closed_reason = "the stream is closed"
        self._pending_error: BaseException | None = None
        self._failure: BaseException | None = None  # the error the reader raised
        self._audio_delivered = False
        self._keepalive: asyncio.TimerHandle | None = None
        self._last_send = 0.0
        self._permit: Permit | None = None
        self._outcome = NEUTRAL  # what the limiter learns at release

    def __repr__(self) -> str:
        state = "done" if self._done else "released" if self._released else "open"
        return f"<SpeechStream voice={self.params.voice_id} {state} request_id={self.request_id!r}>"

    # ------------------------------------------------------------------ info

    @property
    def request_id(self) -> str | None:
        """Polly's ``x-amzn-RequestId`` once the response headers arrived."""
        return self._parser.request_id

    @property
    def request_characters(self) -> int | None:
        """The billed characters from ``StreamClosedEvent``."""
        return self._parser.request_characters

    billed_characters = request_characters

    @property
    def input_closed(self) -> bool:
        return self._input_closed

    # ------------------------------------------------------------------ opening

    async def open(self, *, keepalive: bool = True) -> None:
        """Lease a connection and queue the signed request headers (``send_request`` sends them).

        ``keepalive=False``: the caller closes the input before it next
        awaits (a whole text), so the keep-alive timer would only be cancelled.
        """
        runtime = self._runtime
        metrics = self.metrics
        limiter = runtime.config.limiter
        if limiter is not None:
            # The one place a stream enters admission; _release is the one it leaves.
            self._permit = await limiter.acquire()
            metrics.admission_wait = self._permit.wait
        try:
            leasing = self._loop.time()
            creds = await runtime.credentials.get(runtime.config.connect_timeout)
            conn, reused = await runtime.lease(self._use_pool)
            self._conn = conn
            metrics.connection_wait = self._loop.time() - leasing
            metrics.connection_reused = reused
            request = runtime.signer.sign(
                self.params,
                authority=runtime.endpoint.authority,
                credentials=creds,
                amz_date=amz_date(int(wall_clock())),
                user_agent=USER_AGENT,
            )
            self._signer = request.event_signer
            self._stream = conn.open_stream(_http2_headers(runtime, request))
        except BaseException:
            self._release()
            raise
        runtime.streams.add(self)
        self._last_send = self._loop.time()
        if keepalive:
            self._arm_keepalive()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "stream %d on %s: voice=%s format=%s rate=%s (connection %s)",
                self._stream.id,
                runtime.endpoint.authority,
                self.params.voice_id,
                self.params.output_format,
                self.params.sample_rate,
                "reused" if reused else "new",
            )

    def send_request(self) -> None:
        """Send what is queued -- the request headers at least -- now."""
        assert self._conn is not None
        self._conn.flush()

    # ------------------------------------------------------------------ sending

    def _queue(self, inner_events: Iterable[bytes], *, end: bool = False) -> None:
        """Sign and queue events (sync, so envelopes can never interleave).

        Envelopes signed together leave together, in DATA frames of up to
        ``_BATCH_BYTES``: h2's cost is per frame more than per byte.
        """
        stream = self._stream
        signer = self._signer
        assert stream is not None
        assert signer is not None
        now_ms = int(wall_clock() * 1000)
        envelopes = [signer.sign(event, now_ms) for event in inner_events]
        if end:
            envelopes.append(signer.sign(CLOSE_STREAM_EVENT, now_ms))
            # The final empty envelope closes the signature chain.
            envelopes.append(signer.sign(b"", now_ms))
        batch: list[bytes] = []
        size = 0
        for envelope in envelopes:
            if batch and size + len(envelope) > _BATCH_BYTES:
                stream.send(b"".join(batch))
                batch.clear()
                size = 0
            batch.append(envelope)
            size += len(envelope)
        if batch or end:
            stream.send(b"".join(batch), end_stream=end)
        self._last_send = self._loop.time()

    async def send(self, text: str, *, flush: bool = False, text_type: str | None = None) -> None:
        """Send ``text`` as TextEvents now (plain text is split at 3,000 characters).

        Waits only while the server's flow-control window is full, so a fast
        producer cannot queue without bound.
        """
        await self.send_events(text_events(text, text_type=text_type or self._text_type, flush=flush))

    async def flush(self) -> None:
        """Ask Polly to synthesize everything buffered so far, now."""
        await self.send("", flush=True)

    async def close_input(self) -> None:
        """Send CloseStreamEvent and end the request body: no more text."""
        await self.send_events((), close=True)

    async def send_events(self, events: Iterable[bytes], *, close: bool = False, drain: bool = True) -> None:
        """Sign, queue and send encoded TextEvents (and, with ``close``, the end of input).

        With ``drain`` (the default) it returns once the events were handed
        to the connection, waiting while the server's window is full.
        Without, what does not fit yet leaves as the window opens, while the
        caller reads: a whole text larger than the window must not wait for
        a server that waits for us to read its audio first.
        """
        lock = self._send_lock
        if lock is None:
            if not drain:
                # No sender ever took the lock, and this one never awaits (a
                # whole text's one send): none can come between, none waits.
                self._send_now(events, close, drain)
                return
            lock = self._send_lock = asyncio.Lock()
        async with lock:
            self._send_now(events, close, drain)
            if drain:
                await self._drain()

    def _send_now(self, events: Iterable[bytes], close: bool, drain: bool) -> None:
        self._check_writable()
        try:
            self._queue(events, end=close)
            if close:
                self._input_closed = True
                self._cancel_keepalive()
                assert self._stream is not None
                self._stream.nudge()  # from now on the server owes us the rest
            assert self._conn is not None
            self._conn.flush()
        except PollyStreamingError as exc:
            exc.audio_delivered = self._audio_delivered
            raise
        if not drain:
            self._arm_keepalive()

    async def _drain(self) -> None:
        """Wait while the server's window holds back what was queued."""
        conn, stream = self._conn, self._stream
        assert conn is not None
        assert stream is not None
        try:
            if stream.output_queued:
                await stream.drain(self._read_timeout)
                conn.flush()
        except PollyStreamingError as exc:
            exc.audio_delivered = self._audio_delivered
            raise
        self._arm_keepalive()

    def _check_writable(self) -> None:
        if self._failure is not None:
            raise self._failure  # what ended the stream, not a vaguer "closed"
        if self._released or self._stream is None:
            raise TransportError(self._closed_reason)
        if self._input_closed:
            raise ValueError("input is already closed")

    def _owed_data(self) -> bool:
        # With the input closed, the server owes us the rest of the audio;
        # before, silence may just mean it waits for more text.
        return self._input_closed

    # ------------------------------------------------------------------ keep-alive

    def _arm_keepalive(self) -> None:
        if self._keepalive is None and self._keepalive_interval is not None and not self._input_closed:
            self._keepalive = self._loop.call_at(self._last_send + self._keepalive_interval, self._on_keepalive)

    def _cancel_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    def _on_keepalive(self) -> None:
        self._keepalive = None
        if self._input_closed or self._released or self._keepalive_interval is None:
            return
        stream = self._stream
        if stream is None or stream.closed:
            return  # failed: nothing more goes up
        busy = self._send_lock is not None and self._send_lock.locked()
        due = self._last_send + self._keepalive_interval
        if self._loop.time() >= due and not busy and not stream.output_queued:
            try:
                self._queue((_KEEPALIVE_EVENT,))
            except PollyStreamingError:
                return
            assert self._conn is not None
            self._conn.flush()
            logger.debug("stream %d: keep-alive sent", stream.id)
        elif busy or stream.output_queued:
            self._last_send = self._loop.time()  # a send in progress counts as activity
        self._arm_keepalive()

    # ------------------------------------------------------------------ receiving

    async def read_items(self) -> list[ResponseItem] | None:
        """The next items from the server in order, or None at the clean end: the one read loop.

        Audio comes as ``bytes``, other events as their types. Raises on
        failure, but only after the audio that arrived before it was returned.
        """
        error = self._pending_error
        if error is not None:
            self._pending_error = None
            self._fail_read(error)
            raise error
        if self._done:
            return None
        stream = self._stream
        if self._released or stream is None:
            raise TransportError(self._closed_reason)
        parser = self._parser
        try:
            if parser.status is None:
                parser.receive_headers(await stream.response_headers(self._read_timeout))
                if parser.is_error:
                    await self._read_error_body(stream, parser)
                    raise parser.error()
            while True:
                if parser.closed:
                    chunks = await self._read_after_close(stream)
                else:
                    chunks = await stream.read(self._read_timeout, strict=self._owed_data)
                if chunks is None:
                    end_error = parser.end_error()
                    if end_error is not None:
                        raise end_error
                    self._finish()
                    return None
                # Everything that arrived since the last read, in one pass.
                items = parser.receive_data(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                if items:
                    last = items[-1]
                    if type(last) is not bytes and isinstance(last, BaseException):
                        items.pop()
                        if not items:
                            raise last
                        self._pending_error = last  # raised at the next read, after this audio
                    return self._deliver(items)
        except BaseException as exc:
            self._fail_read(exc)
            raise

    def _deliver(self, items: list[ResponseItem]) -> list[ResponseItem]:
        size = 0
        for item in items:
            if type(item) is bytes:
                size += len(item)
        if size:
            metrics = self.metrics
            if metrics.time_to_first_audio is None:
                metrics.time_to_first_audio = self._loop.time() - metrics.started
            metrics.audio_bytes += size
            self._audio_delivered = True
        return items

    def _fail_read(self, exc: BaseException) -> None:
        if isinstance(exc, ThrottlingException):
            self._outcome = THROTTLED  # the limiter admitted more than Polly takes
        if isinstance(exc, PollyStreamingError):
            exc.audio_delivered = self._audio_delivered
            if not self._released:
                self._failure = exc
            if isinstance(exc, ReadTimeoutError | ProtocolError) and self._conn is not None:
                # A silent or garbled connection may be dead (a NAT that
                # forgot it, a network switch): never lend it again.
                self._conn.retire()
        self._release(f"the stream already failed ({type(exc).__name__})")

    async def _read_after_close(self, stream: Stream) -> list[bytes] | None:
        # StreamClosedEvent was the last event; the end of the stream should
        # follow at once. A server that leaves it open does not hold the
        # caller for read_timeout: the stream is complete (and gets reset).
        try:
            return await stream.read(min(self._read_timeout, _CLOSE_GRACE), strict=_always)
        except ReadTimeoutError:
            return None
        except StreamResetError as exc:
            # RST_STREAM(NO_ERROR) instead of END_STREAM: the response was
            # complete, the server only says it needs nothing more of the
            # stream (RFC 9113 §8.1). Other codes are failures still.
            if exc.error_code == 0:
                return None
            raise

    async def _read_error_body(self, stream: Stream, parser: ResponseParser) -> None:
        # The body names the error; it should follow the headers at once, but
        # a server that never ends the stream must not hold us past a grace.
        grace = min(self._read_timeout, _ERROR_BODY_GRACE)
        while not parser.error_body_complete:
            try:
                chunks = await stream.read(grace, strict=_always)
            except ReadTimeoutError:
                return
            if chunks is None:
                return
            for data in chunks:
                parser.receive_data(data)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.audio()

    async def audio(self) -> AsyncIterator[bytes]:
        """Audio bytes in order until Polly closes the stream."""
        while (items := await self.read_items()) is not None:
            for item in items:
                if type(item) is bytes:
                    yield item

    async def events(self) -> AsyncIterator[Event]:
        """Every event in order: ``AudioEvent``, ``StreamClosedEvent``, ``UnknownEvent``."""
        while (items := await self.read_items()) is not None:
            for item in items:
                yield AudioEvent(item) if type(item) is bytes else item  # type: ignore[misc]

    # ------------------------------------------------------------------ ending

    def _finish(self) -> None:
        self._done = True
        self._outcome = SUCCESS
        metrics = self.metrics
        metrics.total_time = self._loop.time() - metrics.started
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "stream done: request id %s, %s characters, %d audio bytes, first audio %.1f ms, total %.1f ms",
                self.request_id,
                self.request_characters,
                metrics.audio_bytes,
                (metrics.time_to_first_audio or 0) * 1000,
                metrics.total_time * 1000,
            )
        self._release()

    def _release(self, reason: str | None = None) -> None:
        """Reset the stream unless it completed, and return the connection."""
        if self._released:
            return
        self._released = True
        if reason is not None:
            self._closed_reason = reason
        self._cancel_keepalive()
        self._runtime.streams.discard(self)
        stream, conn = self._stream, self._conn
        if stream is not None:
            if not self._done:
                # A reader blocked in another task wakes with the reason.
                stream.fail(TransportError(self._closed_reason))
            stream.reset()  # RST_STREAM unless HTTP/2 closed it both ways
        if conn is not None:
            self._runtime.give_back(conn, self._use_pool)
        permit = self._permit
        if permit is not None:
            self._permit = None
            permit.release(self._outcome)  # never blocks: a Redis release runs in a task of its own

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error`` (a failed text source) now: the server is told, the reader raises it."""
        stream = self._stream
        if stream is not None and not self._released:
            self._cancel_keepalive()
            stream.fail(error, reset=True)

    async def abort(self) -> None:
        """Stop both directions now (barge-in): RST_STREAM and free the connection."""
        self._release("the stream was aborted")

    def abandon(self, error: TransportError) -> None:
        """The client closed: fail the reader with ``error``, and release."""
        self.fail(error)
        self._release("the client was closed")

    def close(self, reason: str) -> None:
        """Release now if the stream is still open (the caller is done with it)."""
        self._release(reason)

    async def aclose(self) -> None:
        self._release("the stream was closed")


@asynccontextmanager
async def open_session(
    get_runtime: Callable[[], Runtime],
    params: SynthesisParams,
    *,
    use_pool: bool,
    text_type: str | None,
) -> AsyncIterator[SpeechStream]:
    session = SpeechStream(get_runtime(), params, use_pool=use_pool, text_type=text_type)
    try:
        await session.open()
        session.send_request()  # the request leaves now; the keep-alive runs from here
        yield session
    finally:
        session.close("the stream's async with block was left")
