"""The phrase cache in memory, against the emulator over real HTTP/2 + TLS.

What is stored (only whole speech), what is not (failed, cut short,
abandoned, cancelled, oversized, iterables), the key, the byte bound, and
one synthesis per phrase however many calls ask for it at once.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

import pytest

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming._cache_entry import Entry, phrase_key
from amazon_polly_streaming._cached_synthesis import REPLAY_CHUNK_BYTES, CachedSpeech
from amazon_polly_streaming._lru import ENTRY_OVERHEAD, ByteLRU
from amazon_polly_streaming._wire.request import synthesis_params
from amazon_polly_streaming.cache import MemoryCache
from amazon_polly_streaming.emulator import Emulator
from amazon_polly_streaming.exceptions import (
    IncompleteStreamError,
    PollyStreamingError,
    ServiceFailureException,
)
from support import SENTENCE, collect, make_client, serve

pytestmark = pytest.mark.timeout(60)


def _stream(client: PollyStreamingClient, text: str = SENTENCE, **options: Any) -> Any:
    options.setdefault("voice_id", "Matthew")
    options.setdefault("output_format", "pcm")
    options.setdefault("sample_rate", "16000")
    return client.start_speech_synthesis_stream(text=text, **options)


async def _speak(client: PollyStreamingClient, text: str = SENTENCE, **options: Any) -> tuple[bytes, CachedSpeech]:
    call = _stream(client, text, **options)
    assert isinstance(call, CachedSpeech)
    out = bytearray()
    async for chunk in call:
        out += chunk
    return bytes(out), call


def _ok_requests(emulator: Emulator) -> int:
    return sum(1 for record in emulator.requests if record.outcome == "ok")


# ------------------------------------------------------------------ hits


@pytest.mark.all_loops
async def test_a_phrase_spoken_once_is_replayed_from_memory() -> None:
    cache = MemoryCache(max_bytes=8 * 2**20)
    async with serve({"cache": cache}, record_audio=True) as (emulator, client):
        first, live = await _speak(client)
        second, hit = await _speak(client)
        assert len(emulator.requests) == 1  # the second call never reached Polly
        assert second == first == bytes(emulator.requests[0].audio or b"")
        assert not live.cache_hit
        assert live.request_characters == len(SENTENCE)
        assert live.request_id == emulator.requests[0].request_id
        assert hit.cache_hit
        assert hit.request_characters == 0
        assert hit.request_id is None
        metrics = hit.metrics
        assert metrics is not None
        assert metrics.cache_hit
        assert metrics.audio_bytes == len(first)
        assert metrics.time_to_first_audio is not None
        assert metrics.time_to_first_audio < 0.05
        assert metrics.connection_wait is None
        stats = cache.stats()
        assert (stats.hits, stats.misses, stats.shared, stats.entries) == (1, 1, 0, 1)
        assert stats.bytes == len(first) + ENTRY_OVERHEAD


async def test_a_hit_is_replayed_in_chunks_like_a_live_stream() -> None:
    cache = MemoryCache()
    async with serve({"cache": cache}) as (_, client):
        audio, _ = await _speak(client, SENTENCE * 3)
        assert len(audio) > 2 * REPLAY_CHUNK_BYTES
        chunks = [chunk async for chunk in _stream(client, SENTENCE * 3)]
        assert all(type(chunk) is bytes for chunk in chunks)
        assert max(len(chunk) for chunk in chunks) == REPLAY_CHUNK_BYTES
        assert b"".join(chunks) == audio


async def test_cache_false_and_iterables_go_to_polly() -> None:
    cache = MemoryCache()
    async with serve({"cache": cache}) as (emulator, client):
        await _speak(client)
        assert not isinstance(_stream(client, cache=False), CachedSpeech)
        await collect(client, cache=False)
        await collect(client, [SENTENCE])
        await collect(client, [SENTENCE])
        assert len(emulator.requests) == 4
        assert cache.stats().hits == 0
        assert cache.stats().misses == 1


async def test_the_client_checks_the_cache_type() -> None:
    with pytest.raises(TypeError, match="MemoryCache"):
        PollyStreamingClient(region="us-east-1", cache={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryCache(max_bytes=0)
    with pytest.raises(ValueError, match="flight_timeout"):
        MemoryCache(flight_timeout=float("nan"))


# ------------------------------------------------------------------ the key


def _key(**changes: Any) -> str:
    params: dict[str, Any] = {
        "voice_id": "Matthew",
        "engine": "generative",
        "language_code": None,
        "output_format": "pcm",
        "sample_rate": "16000",
        "lexicon_names": None,
    }
    call: dict[str, Any] = {"text": SENTENCE, "text_type": None, "flush": False, "region": "us-east-1", "namespace": ""}
    for name, value in changes.items():
        (params if name in params else call)[name] = value
    return phrase_key(synthesis_params(**params), call.pop("text"), **call)


def test_every_parameter_that_changes_the_audio_changes_the_key() -> None:
    base = _key()
    variants = {
        "text": _key(text=SENTENCE + " "),
        "text_type": _key(text_type="ssml"),
        "voice": _key(voice_id="Joanna"),
        "engine": _key(engine="neural"),
        "language": _key(language_code="en-US"),
        "format": _key(output_format="mp3", sample_rate="16000"),
        "rate": _key(sample_rate="8000"),
        "lexicons": _key(lexicon_names=["a"]),
        "lexicon order": _key(lexicon_names=["b", "a"]),
        "region": _key(region="eu-central-1"),
        "namespace": _key(namespace="lexicons-v2"),
        "flush": _key(flush=True),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)
    assert _key(lexicon_names=["a", "b"]) != _key(lexicon_names=["b", "a"])
    # Fields cannot run into each other: the length of each is in the hash.
    assert _key(voice_id="Ab", engine="c") != _key(voice_id="A", engine="bc")
    # The default rate and the same rate given are one request, one key.
    assert _key(output_format="pcm", sample_rate=None) == base
    assert SENTENCE not in base
    assert len(base) == 40


async def test_a_different_voice_or_region_is_a_miss() -> None:
    cache = MemoryCache()
    async with serve({"cache": cache}) as (emulator, client):
        await _speak(client)
        await _speak(client, voice_id="Joanna")
        await _speak(client, sample_rate="8000")
        other = make_client(emulator, region="eu-central-1", cache=cache)
        try:
            await _speak(other)
        finally:
            await other.close()
        assert len(emulator.requests) == 4
        assert cache.stats().hits == 0


# ------------------------------------------------------------------ only whole speech


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("service_failure@after_first_audio", ServiceFailureException),
        ("no_stream_closed", IncompleteStreamError),
        ("truncate", PollyStreamingError),
        ("drop", PollyStreamingError),
        ("rst_stream", PollyStreamingError),
    ],
)
async def test_a_failed_or_cut_short_stream_is_never_stored(fault: str, error: type[Exception]) -> None:
    cache = MemoryCache()
    async with serve({"cache": cache}) as (emulator, client):
        emulator.inject(fault)
        with pytest.raises(error):
            await _speak(client)
        assert cache.stats().entries == 0
        await _speak(client)  # to Polly again, whole this time
        _, hit = await _speak(client)
        assert hit.cache_hit
        assert len(emulator.requests) == 2


async def test_a_caller_who_stops_early_stores_nothing_and_frees_the_stream() -> None:
    cache = MemoryCache()
    async with serve({"cache": cache}) as (emulator, client):
        async with aclosing(_stream(client)) as call:
            async for _ in call:
                break
        await emulator.wait_for(lambda: emulator.active_streams == 0, 5.0)  # reset at once
        assert cache.stats().entries == 0
        _, call = await _speak(client)
        assert not call.cache_hit


async def test_a_cancelled_call_stores_nothing() -> None:
    cache = MemoryCache()
    async with serve({"cache": cache}, first_audio_delay=0.5) as (emulator, client):
        task = asyncio.ensure_future(_speak(client))
        await emulator.wait_for(lambda: emulator.active_streams == 1, 5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cache.stats().entries == 0
        assert not cache.flights


async def test_speech_over_max_entry_bytes_is_spoken_not_kept() -> None:
    cache = MemoryCache(max_entry_bytes=1000)
    async with serve({"cache": cache}) as (emulator, client):
        first, _ = await _speak(client)
        assert len(first) > 1000
        second, call = await _speak(client)
        assert second  # spoken again (the emulator's speech differs a little from call to call)
        assert not call.cache_hit
        assert cache.stats().entries == 0
        assert len(emulator.requests) == 2


# ------------------------------------------------------------------ the byte bound


def test_the_lru_evicts_the_least_recently_used_to_stay_within_its_bytes() -> None:
    size = 1000
    lru = ByteLRU(3 * (size + ENTRY_OVERHEAD))
    for name in "abc":
        assert lru.put(name, Entry(bytes(size), "pcm", "16000"))
    assert lru.get("a") is not None  # a is now the most recent: b goes first
    lru.put("d", Entry(bytes(size), "pcm", "16000"))
    assert lru.get("b") is None
    assert [lru.get(name) is not None for name in "acd"] == [True, True, True]
    assert lru.evictions == 1
    assert lru.bytes == 3 * (size + ENTRY_OVERHEAD) <= lru.max_bytes
    assert not lru.put("huge", Entry(bytes(lru.max_bytes), "pcm", "16000"))
    lru.put("a", Entry(bytes(10), "pcm", "16000"))  # replacing frees the old size
    assert lru.bytes == 2 * (size + ENTRY_OVERHEAD) + 10 + ENTRY_OVERHEAD


async def test_eviction_keeps_the_cache_within_max_bytes() -> None:
    async with serve() as (emulator, plain):
        sizes = [len(await collect(plain, f"Phrase number {n}.")) for n in range(3)]
    bound = sizes[0] + sizes[1] + 2 * ENTRY_OVERHEAD + 10  # room for two, not three
    cache = MemoryCache(max_bytes=bound)
    async with serve({"cache": cache}) as (emulator, client):
        for n in range(3):
            await _speak(client, f"Phrase number {n}.")
        stats = cache.stats()
        assert stats.evictions >= 1
        assert stats.bytes <= bound
        _, call = await _speak(client, "Phrase number 2.")  # the newest stayed
        assert call.cache_hit
        _, call = await _speak(client, "Phrase number 0.")  # the oldest went
        assert not call.cache_hit
        assert len(emulator.requests) == 4


# ------------------------------------------------------------------ one synthesis per phrase


@pytest.mark.all_loops
async def test_fifty_concurrent_misses_make_one_polly_stream() -> None:
    cache = MemoryCache()
    async with serve({"cache": cache, "pool_size": 4}, first_audio_delay=0.1) as (emulator, client):
        results = await asyncio.gather(*(_speak(client) for _ in range(50)))
        assert len(emulator.requests) == 1
        audio = {result[0] for result in results}
        assert len(audio) == 1
        assert sum(1 for _, call in results if call.cache_hit) == 49
        stats = cache.stats()
        assert (stats.misses, stats.shared, stats.hits) == (1, 49, 0)
        assert not cache.flights


async def test_when_the_leader_fails_each_waiter_makes_its_own_call() -> None:
    cache = MemoryCache()
    async with serve({"cache": cache}, first_audio_delay=0.1) as (emulator, client):
        emulator.inject("service_failure@after_first_audio", count=1)
        results = await asyncio.gather(*(_speak(client) for _ in range(5)), return_exceptions=True)
        failed = [result for result in results if isinstance(result, BaseException)]
        assert len(failed) == 1  # the leader's own error, shared with nobody
        assert isinstance(failed[0], ServiceFailureException)
        assert len(emulator.requests) == 5
        assert _ok_requests(emulator) == 4
        assert cache.stats().entries == 1


@pytest.mark.all_loops
async def test_cancelling_the_leader_does_not_fail_its_waiters() -> None:
    cache = MemoryCache(flight_timeout=30)
    async with serve({"cache": cache}, first_audio_delay=0.3) as (emulator, client):
        leader = asyncio.ensure_future(_speak(client))
        await emulator.wait_for(lambda: emulator.active_streams == 1, 5.0)
        waiters = [asyncio.ensure_future(_speak(client)) for _ in range(3)]
        await asyncio.sleep(0.05)  # the waiters joined the leader's flight
        leader.cancel()
        loop = asyncio.get_running_loop()
        cancelled = loop.time()
        results = await asyncio.gather(*waiters)
        assert loop.time() - cancelled < 5  # told at once, not after flight_timeout
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert all(audio for audio, _ in results)
        assert all(not call.cache_hit for _, call in results)  # each spoke for itself
        assert _ok_requests(emulator) == 3
        _, call = await _speak(client)
        assert call.cache_hit


async def test_a_waiter_that_is_cancelled_leaves_the_leader_alone() -> None:
    cache = MemoryCache()
    async with serve({"cache": cache}, first_audio_delay=0.3) as (emulator, client):
        leader = asyncio.ensure_future(_speak(client))
        await emulator.wait_for(lambda: emulator.active_streams == 1, 5.0)
        waiter = asyncio.ensure_future(_speak(client))
        other = asyncio.ensure_future(_speak(client))
        await asyncio.sleep(0.05)
        waiter.cancel()
        audio, call = await leader
        assert audio
        assert not call.cache_hit
        replayed, shared = await other  # the other waiter still gets the leader's audio
        assert replayed == audio
        assert shared.cache_hit
        assert cache.stats().entries == 1
        assert len(emulator.requests) == 1


async def test_a_waiter_waits_at_most_flight_timeout() -> None:
    cache = MemoryCache(flight_timeout=0.1)
    async with serve({"cache": cache}, first_audio_delay=1.0) as (emulator, client):
        leader = asyncio.ensure_future(_speak(client))
        await emulator.wait_for(lambda: emulator.active_streams == 1, 5.0)
        await _speak(client)
        assert len(emulator.requests) == 2  # it did not wait out the leader's second
        await leader


def test_the_sync_helper_replays_from_a_cache_passed_to_each_call() -> None:
    from amazon_polly_streaming.sync import iter_synthesize, synthesize
    from support import KEY, SECRET

    cache = MemoryCache()
    with Emulator.start_in_thread(strict=True) as emulator:
        options: dict[str, Any] = {
            "region": "us-east-1",
            "endpoint_url": emulator.endpoint_url,
            "verify": emulator.ca_file,
            "credentials": (KEY, SECRET),
            "output_format": "pcm",
            "sample_rate": "16000",
            "cache": cache,
        }
        first = synthesize(SENTENCE, "Matthew", **options)
        second = b"".join(iter_synthesize(SENTENCE, "Matthew", **options))
        third = synthesize(SENTENCE, "Matthew", **{**options, "cache": False})
        assert second == first
        assert third
        assert len(emulator.emulator.requests) == 2
        assert cache.stats().hits == 1


async def test_a_hit_takes_no_admission_permit() -> None:
    from amazon_polly_streaming.exceptions import AdmissionTimeoutError
    from amazon_polly_streaming.limits import LocalLimiter

    cache = MemoryCache()
    limiter = LocalLimiter(1, wait_timeout=0.2)
    async with serve({"cache": cache, "limiter": limiter}) as (_, client):
        await _speak(client)
        async with client.open_stream(voice_id="Matthew", output_format="pcm"):  # holds the only permit
            _, call = await _speak(client)
            assert call.cache_hit
            with pytest.raises(AdmissionTimeoutError):
                await _speak(client, "A phrase nobody said yet.")
