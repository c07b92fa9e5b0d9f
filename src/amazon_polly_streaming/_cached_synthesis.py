"""A whole-text call through the phrase cache: replay a hit, or speak once and store.

The order of a call: this process's LRU (no await at all); a call of the
same phrase already in flight on this loop (wait for its result, bounded);
the shared store (Redis, bounded); Polly. The leader of a flight speaks live
to its own caller while it keeps the audio, and stores it only once the
stream ended with ``StreamClosedEvent`` -- never a failed, cancelled,
abandoned or oversized one. Its waiters then replay the stored audio; if the
leader ends any other way they each make their own call, so no error is
shared by accident (where Go's ``singleflight`` would share it).

This hook runs before ``synthesize``: a hit takes no connection, no
credentials and no admission permit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from ._cache_entry import Entry
from ._session import SpeechStream, StreamMetrics

if TYPE_CHECKING:
    from ._wire.request import SynthesisParams
    from .cache import PhraseCache

__all__ = ["REPLAY_CHUNK_BYTES", "CachedSpeech", "cached_synthesize"]

#: A hit is replayed in chunks of this size, as a live stream's AudioEvents
#: come (the emulator's chunk size; a PCM consumer resamples chunk by chunk).
REPLAY_CHUNK_BYTES = 8192

#: Makes the live stream; it calls its argument with the stream's session.
StreamFactory = Callable[[Callable[[SpeechStream], None]], AsyncGenerator[bytes, None]]


class _CallInfo:
    __slots__ = ("metrics", "session")

    def __init__(self) -> None:
        self.session: SpeechStream | None = None
        self.metrics: StreamMetrics | None = None  # a replay's own

    def attach(self, session: SpeechStream) -> None:
        self.session = session


class CachedSpeech(AsyncGenerator[bytes, None]):
    """The async generator of a cacheable call, with what it did.

    ``cache_hit``: the audio came from the cache (or from a concurrent call
    of the same phrase). ``metrics``: a ``StreamMetrics`` (for a hit:
    ``cache_hit`` True, time to first audio and audio bytes; no connection).
    ``request_characters``: billed characters, 0 for a hit.
    ``request_id``: Polly's, None for a hit.
    """

    __slots__ = ("_agen", "_info")

    def __init__(self, agen: AsyncGenerator[bytes, None], info: _CallInfo) -> None:
        self._agen = agen
        self._info = info

    def __repr__(self) -> str:
        return f"<CachedSpeech cache_hit={self.cache_hit}>"

    def __anext__(self) -> Any:
        return self._agen.__anext__()

    def asend(self, value: None) -> Any:
        return self._agen.asend(value)

    def athrow(self, *args: Any) -> Any:
        return self._agen.athrow(*args)

    def aclose(self) -> Any:
        return self._agen.aclose()

    @property
    def cache_hit(self) -> bool:
        return self._info.metrics is not None

    @property
    def metrics(self) -> StreamMetrics | None:
        info = self._info
        if info.metrics is not None:
            return info.metrics
        return None if info.session is None else info.session.metrics

    @property
    def request_id(self) -> str | None:
        session = self._info.session
        return None if session is None or self.cache_hit else session.request_id

    @property
    def request_characters(self) -> int | None:
        if self.cache_hit:
            return 0
        session = self._info.session
        return None if session is None else session.request_characters


def cached_synthesize(cache: PhraseCache, key: str, params: SynthesisParams, speak: StreamFactory) -> CachedSpeech:
    info = _CallInfo()
    return CachedSpeech(_call(cache, key, params, speak, info), info)


async def _call(
    cache: PhraseCache, key: str, params: SynthesisParams, speak: StreamFactory, info: _CallInfo
) -> AsyncGenerator[bytes, None]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    entry = cache.get_local(key)
    if entry is not None:
        cache.hits += 1
        for chunk in _replay(entry, info, started, loop):
            yield chunk
        return
    flights = cache.flights
    flight_key = (loop, key)
    lead: asyncio.Future[Entry | None] | None = None
    flight = flights.get(flight_key)
    if flight is not None:
        # asyncio.wait neither cancels the flight on our timeout nor when we
        # are cancelled: the leader and the other waiters go on.
        await asyncio.wait((flight,), timeout=cache.flight_timeout)
        entry = flight.result() if flight.done() else None
        if entry is not None:
            cache.shared += 1
            for chunk in _replay(entry, info, started, loop):
                yield chunk
            return
        # The leader failed, was cancelled or abandoned, or is slow: our own
        # call, in no flight (no second leader to wait for).
    else:
        lead = flights[flight_key] = loop.create_future()
    try:
        if lead is not None and cache.remote:
            entry = await cache.get_remote(key, params)
            if entry is not None:
                cache.hits += 1
                cache.put_local(key, entry)
                _land(flights, flight_key, lead, entry)
                for chunk in _replay(entry, info, started, loop):
                    yield chunk
                return
        # Closed explicitly: a caller who stops early must reset the stream now, not at collection.
        async with aclosing(_speak_and_store(cache, key, params, speak, info, lead)) as live:
            async for chunk in live:
                yield chunk
    finally:
        if lead is not None:
            _land(flights, flight_key, lead, None)


def _land(
    flights: dict[Any, asyncio.Future[Entry | None]],
    flight_key: Any,
    flight: asyncio.Future[Entry | None],
    entry: Entry | None,
) -> None:
    """End a flight: its waiters get ``entry`` (None: make your own call); later calls start afresh."""
    if not flight.done():
        flight.set_result(entry)
    if flights.get(flight_key) is flight:
        del flights[flight_key]


async def _speak_and_store(
    cache: PhraseCache,
    key: str,
    params: SynthesisParams,
    speak: StreamFactory,
    info: _CallInfo,
    flight: asyncio.Future[Entry | None] | None,
) -> AsyncGenerator[bytes, None]:
    cache.misses += 1
    limit = cache.max_entry_bytes
    kept: list[bytes] | None = []
    size = 0
    stream = speak(info.attach)
    try:
        async for chunk in stream:
            if kept is not None:
                size += len(chunk)
                if size > limit:
                    kept = None  # spoken, not stored
                else:
                    kept.append(chunk)
            yield chunk
    finally:
        await stream.aclose()
    # Only here did the stream end with StreamClosedEvent: an error, a
    # cancellation or a caller who stopped early never gets this far.
    session = info.session
    if kept is None or not size or session is None or session.request_characters is None:
        return
    entry = Entry(b"".join(kept), params.output_format, params.sample_rate)
    cache.put_local(key, entry)
    if flight is not None:
        _land(cache.flights, (asyncio.get_running_loop(), key), flight, entry)
    if cache.remote:
        await cache.put_remote(key, entry)


def _replay(entry: Entry, info: _CallInfo, started: float, loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    # A plain generator: a hit awaits nothing, and holds nothing to release.
    metrics = info.metrics = StreamMetrics(started)
    metrics.cache_hit = True
    audio = entry.audio
    size = len(audio)
    metrics.audio_bytes = size
    metrics.time_to_first_audio = loop.time() - started
    if size <= REPLAY_CHUNK_BYTES:
        yield audio
    else:
        view = memoryview(audio)
        for start in range(0, size, REPLAY_CHUNK_BYTES):
            yield bytes(view[start : start + REPLAY_CHUNK_BYTES])
    metrics.total_time = loop.time() - started
