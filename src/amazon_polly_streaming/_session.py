"""Streams on the wire: leasing a connection, sending text, yielding audio.

``SpeechStream`` is the full-duplex session; ``synthesize`` is the one-call
generator built on it. Both keep these promises: every wait is bounded, the
stream ends only on ``StreamClosedEvent`` (anything else raises), and leaving
early resets the HTTP/2 stream and returns the connection to the pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from hpack import NeverIndexedHeaderTuple

from . import __version__
from ._connection import Connection, Stream, open_connection
from ._pool import Pool
from ._protocol import (
    CLOSE_STREAM_EVENT,
    MAX_TEXT_EVENT_CHARS,
    RequestSigner,
    ResponseParser,
    SynthesisParams,
    split_text,
    text_event,
)
from .credentials import CredentialResolver
from .events import AudioEvent, Event, StreamClosedEvent, UnknownEvent
from .exceptions import PollyStreamingError, ReadTimeoutError, TransportError

if TYPE_CHECKING:
    from ._event_signer import EventSigner
    from .client import PollyStreamingClient
    from .credentials import CredentialsSource

__all__ = ["Runtime", "SpeechStream", "StreamMetrics", "open_session", "synthesize"]

logger = logging.getLogger("amazon_polly_streaming")
USER_AGENT = f"amazon-polly-streaming/{__version__} python/{sys.version_info[0]}.{sys.version_info[1]}"
#: How long an error response may take to deliver its body after its headers.
_ERROR_BODY_GRACE = 2.0

current_loop = asyncio.get_running_loop


@functools.lru_cache(maxsize=8)
def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """One TLS context per verification setting (loading CAs is slow)."""
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        logger.warning("TLS certificate verification is disabled (verify=False): the endpoint is not authenticated")
    else:
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    return context


def _proxy_for(host: str, explicit: str | None) -> tuple[str, int, bytes | None] | None:
    """The CONNECT proxy for ``host``: explicit, else HTTPS_PROXY unless NO_PROXY matches."""
    url = explicit
    if url is None:
        url = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
        if not url:
            return None
        no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
        for entry in (item.strip().lower() for item in no_proxy.split(",")):
            if entry == "*" or (entry and (host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")))):
                return None
    from base64 import b64encode
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("proxy must be an http://host:port URL (the tunnel to Polly is TLS inside CONNECT)")
    auth = None
    if parts.username is not None:
        auth = b"Basic " + b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode())
    return parts.hostname, parts.port or 8080, auth


_SENSITIVE = frozenset({"authorization", "x-amz-security-token"})


def _http2_header(name: str, value: str) -> tuple[bytes, bytes]:
    # Credentials are sent "never indexed" (RFC 7541 7.1.3): kept out of the
    # HPACK tables of every hop, and redacted by hpack's own debug logging.
    if name in _SENSITIVE:
        return NeverIndexedHeaderTuple(name.encode(), value.encode())
    return name.encode(), value.encode()


def _always() -> bool:
    return True


class Runtime:
    """Per-event-loop state of a client: its pool, TLS context and credentials."""

    def __init__(self, client: PollyStreamingClient, credentials: CredentialsSource | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.endpoint = client.endpoint
        self.ssl_context = ssl_context(client.verify)
        self.proxy = _proxy_for(self.endpoint.host, client.proxy)
        self.signer = RequestSigner(client.region)
        self.credentials = CredentialResolver(credentials)
        self.pool = Pool(
            self.connect,
            size=client.pool_size,
            idle_timeout=client.idle_timeout,
            pool_timeout=client.pool_timeout,
        )
        self.unpooled: set[Connection] = set()
        self.sessions: set[SpeechStream] = set()

    async def connect(self) -> Connection:
        endpoint = self.endpoint
        conn = await open_connection(
            host=endpoint.host,
            port=endpoint.port,
            authority=endpoint.authority,
            ssl_context=self.ssl_context,
            server_hostname=endpoint.host,
            connect_timeout=self.client.connect_timeout,
            proxy=self.proxy,
        )
        logger.debug("connected to %s", endpoint.authority)
        return conn

    async def lease(self, use_pool: bool) -> tuple[Connection, bool]:
        if use_pool:
            return await self.pool.acquire()
        conn = await self.connect()
        self.unpooled.add(conn)
        return conn, False

    def give_back(self, conn: Connection, use_pool: bool) -> None:
        if use_pool:
            self.pool.release(conn)
        else:
            self.unpooled.discard(conn)
            conn.close()

    async def close(self) -> None:
        for session in list(self.sessions):
            session._abandon(TransportError("the client was closed"))
        for conn in list(self.unpooled):
            conn.close()
        await self.pool.close()
        if self.unpooled:
            await asyncio.gather(*(conn.wait_closed() for conn in self.unpooled))
        self.unpooled.clear()

    def abandon(self) -> None:
        """Drop this runtime without its loop (the loop is gone or elsewhere)."""
        for conn in list(self.pool._all) + list(self.unpooled):
            if conn.transport is not None and not conn.loop.is_closed():
                conn.transport.abort()


class StreamMetrics:
    """Timings (seconds, loop clock) and counts of one stream."""

    __slots__ = (
        "audio_bytes",
        "connection_reused",
        "connection_wait",
        "started",
        "time_to_first_audio",
        "total_time",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        self.connection_wait: float | None = None
        self.connection_reused: bool | None = None
        self.time_to_first_audio: float | None = None
        self.total_time: float | None = None
        self.audio_bytes = 0

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name != "started")
        return f"StreamMetrics({fields})"


class SpeechStream:
    """One bidirectional synthesis stream.

    Send text with :meth:`send`, :meth:`flush` and :meth:`close_input`;
    iterate the instance for audio bytes, or :meth:`events` for events.
    ``request_id``, ``request_characters`` (billed) and ``metrics`` report
    what the service said and how long things took.
    """

    def __init__(
        self,
        runtime: Runtime,
        params: SynthesisParams,
        *,
        use_pool: bool,
        text_type: str | None,
        metrics: StreamMetrics,
    ) -> None:
        self._runtime = runtime
        self._loop = runtime.loop
        self.params = params
        self._use_pool = use_pool
        self._text_type = text_type
        self.metrics = metrics
        self._read_timeout = runtime.client.read_timeout
        self._keepalive_interval = runtime.client.keepalive_interval
        self._parser = ResponseParser()
        self._conn: Connection | None = None
        self._stream: Stream | None = None
        self._signer: EventSigner | None = None
        self._input_closed = False
        self._done = False  # StreamClosedEvent and the end of the stream were read
        self._released = False
        self._audio_delivered = False
        self._keepalive: asyncio.TimerHandle | None = None
        self._last_send = 0.0

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

    # ------------------------------------------------------------------ setup

    async def _start(self) -> None:
        runtime = self._runtime
        creds = await runtime.credentials.get()
        conn, reused = await runtime.lease(self._use_pool)
        self._conn = conn
        now = time.time()
        self.metrics.connection_wait = self._loop.time() - self.metrics.started
        self.metrics.connection_reused = reused
        headers, self._signer = runtime.signer.request_headers(
            self.params,
            authority=runtime.endpoint.authority,
            credentials=creds,
            amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)),
            user_agent=USER_AGENT,
        )
        try:
            self._stream = conn.open_stream([_http2_header(name, value) for name, value in headers])
        except BaseException:
            self._release()
            raise
        runtime.sessions.add(self)
        self._last_send = self._loop.time()
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

    # ------------------------------------------------------------------ sending

    def _queue(self, inner_event: bytes, *, end: bool = False) -> None:
        """Sign and queue one event (sync, so envelopes can never interleave)."""
        stream = self._stream
        signer = self._signer
        assert stream is not None
        assert signer is not None
        envelope = signer.sign(inner_event, time.time_ns() // 1_000_000)
        if end:
            # The final empty envelope closes the signature chain.
            envelope += signer.sign(b"", time.time_ns() // 1_000_000)
        stream.send(envelope, end_stream=end)
        self._last_send = self._loop.time()

    def _queue_text(self, text: str, *, flush: bool, text_type: str | None) -> None:
        if not isinstance(text, str):
            raise TypeError(f"text chunks must be str, not {type(text).__name__}")
        if self._input_closed:
            raise ValueError("input is already closed")
        text_type = text_type or self._text_type
        pieces = split_text(text, MAX_TEXT_EVENT_CHARS) if len(text) > MAX_TEXT_EVENT_CHARS else (text,)
        if text_type == "ssml" and len(pieces) > 1:
            raise ValueError(f"an SSML document must fit in one event ({MAX_TEXT_EVENT_CHARS} characters)")
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            self._queue(text_event(piece, text_type=text_type, flush=flush and index == last))

    def _queue_close(self) -> None:
        if not self._input_closed:
            self._input_closed = True
            self._cancel_keepalive()
            self._queue(CLOSE_STREAM_EVENT, end=True)
            assert self._stream is not None
            self._stream.nudge()  # from now on the server owes us the rest

    def _owed_data(self) -> bool:
        # With the input closed, the server owes us the rest of the audio;
        # before, silence may just mean it waits for more text.
        return self._input_closed

    async def send(self, text: str, *, flush: bool = False, text_type: str | None = None) -> None:
        """Send ``text`` as a TextEvent now (split at 6,000 characters).

        Waits only when the server's flow-control window is full, so a fast
        producer cannot queue without bound.
        """
        self._check_open()
        self._queue_text(text, flush=flush, text_type=text_type)
        await self._push()

    async def flush(self) -> None:
        """Ask Polly to synthesize everything buffered so far, now."""
        await self.send("", flush=True)

    async def close_input(self) -> None:
        """Send CloseStreamEvent and end the request body: no more text."""
        self._check_open()
        self._queue_close()
        await self._push()

    async def _push(self) -> None:
        conn, stream = self._conn, self._stream
        assert conn is not None
        assert stream is not None
        conn.flush()
        if stream.output_queued:
            await stream.drain(self._read_timeout)
            conn.flush()
        self._arm_keepalive()

    def _check_open(self) -> None:
        if self._released or self._stream is None:
            raise TransportError("the stream is closed")

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
        due = self._last_send + self._keepalive_interval
        if self._loop.time() >= due and stream is not None and not stream.closed and not stream.output_queued:
            # Polly's documented keep-alive: a TextEvent of white space.
            try:
                self._queue(text_event(" "))
            except PollyStreamingError:
                return
            assert self._conn is not None
            self._conn.flush()
            logger.debug("stream %d: keep-alive sent", stream.id)
        self._arm_keepalive()

    # ------------------------------------------------------------------ receiving

    async def _receive(self) -> list[bytes | StreamClosedEvent | UnknownEvent] | None:
        """The next batch of items, or None at the clean end. Raises on failure."""
        stream = self._stream
        parser = self._parser
        if stream is None or self._done:
            return None
        try:
            if parser.status is None:
                parser.receive_headers(await stream.response_headers(self._read_timeout))
                if parser.is_error:
                    await self._read_error_body(stream, parser)
                    raise parser.error()
            while True:
                data = await stream.read(self._read_timeout, strict=self._owed_data)
                if data is None:
                    parser.receive_end()
                    self._finish()
                    return None
                items = parser.receive_data(data)
                if items:
                    return items
        except BaseException as exc:
            if isinstance(exc, PollyStreamingError):
                exc.audio_delivered = self._audio_delivered
            self._release()
            raise

    async def _read_error_body(self, stream: Stream, parser: ResponseParser) -> None:
        # The body names the error; it should follow the headers at once, but
        # a server that never ends the stream must not hold us past a grace.
        grace = min(self._read_timeout, _ERROR_BODY_GRACE)
        while not parser.error_body_complete:
            try:
                data = await stream.read(grace, strict=_always)
            except ReadTimeoutError:
                return
            if data is None:
                return
            parser.receive_data(data)

    def _note_audio(self, size: int) -> None:
        metrics = self.metrics
        if metrics.time_to_first_audio is None:
            metrics.time_to_first_audio = self._loop.time() - metrics.started
        metrics.audio_bytes += size
        self._audio_delivered = True

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.audio()

    async def audio(self) -> AsyncIterator[bytes]:
        """Audio bytes in order until Polly closes the stream."""
        while True:
            items = await self._receive()
            if items is None:
                return
            for item in items:
                if type(item) is bytes:
                    self._note_audio(len(item))
                    yield item

    async def events(self) -> AsyncIterator[Event]:
        """Every event in order: ``AudioEvent``, ``StreamClosedEvent``, ``UnknownEvent``."""
        while True:
            items = await self._receive()
            if items is None:
                return
            for item in items:
                if type(item) is bytes:
                    self._note_audio(len(item))
                    yield AudioEvent(item)
                else:
                    yield item  # type: ignore[misc]

    # ------------------------------------------------------------------ ending

    def _finish(self) -> None:
        self._done = True
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

    def _release(self) -> None:
        """Reset the stream unless it completed, and return the connection."""
        if self._released:
            return
        self._released = True
        self._cancel_keepalive()
        self._runtime.sessions.discard(self)
        stream, conn = self._stream, self._conn
        if stream is not None:
            if self._done and stream.closed:
                stream.release()
            else:
                stream.reset()
        if conn is not None:
            self._runtime.give_back(conn, self._use_pool)

    async def abort(self) -> None:
        """Stop both directions now (barge-in): RST_STREAM and free the connection."""
        self._release()

    def _abandon(self, error: PollyStreamingError) -> None:
        stream = self._stream
        if stream is not None and not self._released:
            stream._fail(error)
        self._release()

    async def aclose(self) -> None:
        self._release()


@asynccontextmanager
async def open_session(
    client: PollyStreamingClient,
    params: SynthesisParams,
    *,
    use_pool: bool,
    text_type: str | None,
) -> AsyncIterator[SpeechStream]:
    runtime = client._get_runtime()
    session = SpeechStream(
        runtime, params, use_pool=use_pool, text_type=text_type, metrics=StreamMetrics(runtime.loop.time())
    )
    await session._start()
    try:
        yield session
    finally:
        session._release()


async def _pump_text(
    session: SpeechStream,
    source: Iterable[str] | AsyncIterable[str],
    *,
    text_type: str | None,
    flush: bool,
) -> None:
    """Forward each chunk of ``source`` the moment it is produced, then close input."""
    try:
        if isinstance(source, AsyncIterable):
            iterator = aiter(source)
            try:
                async for chunk in iterator:
                    await session.send(chunk, flush=flush, text_type=text_type)
            finally:
                closer = getattr(iterator, "aclose", None)
                if closer is not None:
                    await closer()
        else:
            sync_iterator = iter(source)
            try:
                for chunk in sync_iterator:
                    await session.send(chunk, flush=flush, text_type=text_type)
                    # Let the reader run between chunks of a fast iterable.
                    await asyncio.sleep(0)
            finally:
                closer = getattr(sync_iterator, "close", None)
                if closer is not None:
                    closer()
        await session.close_input()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        # The text source failed: end the stream and let the reader raise it.
        stream = session._stream
        if stream is not None and not session._released:
            stream._fail(exc)  # type: ignore[arg-type]
        raise


async def synthesize(
    client: PollyStreamingClient,
    params: SynthesisParams,
    text: str | Iterable[str] | AsyncIterable[str],
    *,
    use_pool: bool,
    text_type: str | None,
    flush: bool,
) -> AsyncIterator[bytes]:
    """The generator behind ``start_speech_synthesis_stream``."""
    policy = client._retry_policy()
    attempt = 0
    while True:
        attempt += 1
        runtime = client._get_runtime()
        session = SpeechStream(
            runtime, params, use_pool=use_pool, text_type=text_type, metrics=StreamMetrics(runtime.loop.time())
        )
        pump: asyncio.Task[None] | None = None
        try:
            await session._start()
            if isinstance(text, str):
                # The whole request -- headers, text, close, final envelope --
                # leaves in one write.
                session._queue_text(text, flush=flush, text_type=text_type)
                session._queue_close()
                await session._push()
            else:
                pump = runtime.loop.create_task(_pump_text(session, text, text_type=text_type, flush=flush))
                pump.add_done_callback(_consume_pump_result)
            while True:
                items = await session._receive()
                if items is None:
                    return
                for item in items:
                    if type(item) is bytes:
                        session._note_audio(len(item))
                        yield item
        except PollyStreamingError as exc:
            delay = policy.delay(exc, attempt) if policy is not None and isinstance(text, str) else None
            if delay is None:
                raise
            logger.debug("retrying after %s (attempt %d) in %.3f s", type(exc).__name__, attempt, delay)
        finally:
            session._release()
            if pump is not None and not pump.done():
                pump.cancel()
                # Give the text source its chance to close, bounded.
                await asyncio.wait((pump,), timeout=1.0)
        await asyncio.sleep(delay)


def _consume_pump_result(task: asyncio.Task[None]) -> None:
    # The reader reports the pump's failure; mark it retrieved so asyncio
    # does not log "exception was never retrieved".
    if not task.cancelled():
        task.exception()
