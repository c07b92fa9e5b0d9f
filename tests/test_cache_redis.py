"""The phrase cache in a real ``redis-server``, with the emulator: shared entries, TTLs,
damaged values, and a Redis that stops, never answers or was never there."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming._cache_entry import decode_entry, encode_entry, phrase_key
from amazon_polly_streaming._cached_synthesis import CachedSpeech
from amazon_polly_streaming._wire.request import synthesis_params
from amazon_polly_streaming.cache import RedisCache
from amazon_polly_streaming.emulator import Emulator
from redis_server import RedisServer
from support import SENTENCE, make_client, serve

pytestmark = pytest.mark.timeout(60)
LOGGER = "amazon_polly_streaming.cache"


async def _speak(client: Any, text: str = SENTENCE) -> tuple[bytes, CachedSpeech]:
    call = client.start_speech_synthesis_stream(text=text, voice_id="Matthew", output_format="pcm", sample_rate="16000")
    assert isinstance(call, CachedSpeech)
    out = bytearray()
    async for chunk in call:
        out += chunk
    return bytes(out), call


def _key(text: str = SENTENCE, namespace: str = "") -> str:
    params = synthesis_params(voice_id="Matthew", output_format="pcm", sample_rate="16000")
    return phrase_key(params, text, text_type=None, flush=False, region="us-east-1", namespace=namespace)


async def _raw(server: RedisServer) -> Any:
    raw = redis.Redis.from_url(server.url)
    await raw.ping()  # connected before the leak check counts sockets
    return raw


@asynccontextmanager
async def serve_cached(cache: RedisCache, **config: Any) -> AsyncIterator[tuple[Emulator, PollyStreamingClient]]:
    """``serve`` with ``cache``, whose Redis connections close before the leak check."""
    async with serve({"cache": cache}, **config) as (emulator, client):
        try:
            yield emulator, client
        finally:
            await cache.aclose()


@pytest.mark.all_loops
async def test_a_phrase_stored_by_one_process_is_a_hit_for_another(redis_server: RedisServer) -> None:
    writer = RedisCache(redis_server.url, ttl=60)
    reader = RedisCache(redis_server.url, ttl=60)  # another process: its own empty local LRU
    raw = await _raw(redis_server)
    try:
        async with serve_cached(writer) as (emulator, client):
            first, live = await _speak(client)
            assert not live.cache_hit
            other = make_client(emulator, cache=reader)
            try:
                second, hit = await _speak(other)
            finally:
                await other.close()
                await reader.aclose()
            assert len(emulator.requests) == 1
            assert second == first
            assert hit.cache_hit
            assert hit.request_characters == 0
            assert reader.stats().hits == 1
        keys = await raw.keys("*")
        assert keys == [f"polly:phrase:{_key()}".encode()]  # a hash, never the text
        ttl = await raw.pttl(keys[0])
        assert 0 < ttl <= 60_000
    finally:
        await writer.aclose()
        await reader.aclose()
        await raw.aclose()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "wrong key"])
async def test_a_damaged_entry_is_a_miss_deleted_and_logged_once(
    redis_server: RedisServer, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(redis_server.url)
    raw = await _raw(redis_server)
    name = cache.redis_key(_key())
    try:
        async with serve_cached(cache) as (emulator, client):
            await _speak(client)
            value: bytes = await raw.get(name)
            if damage == "truncated":
                value = value[:-100]
            elif damage == "flipped":
                value = value[:-1] + bytes([value[-1] ^ 1])
            elif damage == "garbage":
                value = b"not an entry"
            else:  # a whole entry, but another phrase's
                entry = decode_entry(_key(), value, synthesis_params(voice_id="Matthew", output_format="pcm"))
                value = encode_entry(_key("Another phrase."), entry)
            await raw.set(name, value)
            cache.clear()  # as a process that never held it
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                audio, call = await _speak(client)
            assert audio
            assert not call.cache_hit  # to Polly, not the damaged bytes
            assert len(emulator.requests) == 2
            warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
            assert len(warnings) == 1
            assert "damaged" in warnings[0].getMessage()
            assert SENTENCE not in warnings[0].getMessage()
            assert cache.stats().errors == 1
            # Deleted, and whole again from the call that went to Polly.
            cache.clear()
            _, call = await _speak(client)
            assert call.cache_hit
            assert len(emulator.requests) == 2
    finally:
        await cache.aclose()
        await raw.aclose()


@pytest.mark.all_loops
async def test_redis_stopped_mid_call_the_call_still_speaks(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(redis_server.url, timeout=0.2, retry_after=30)
    try:
        async with serve_cached(cache, first_audio_delay=0.3) as (emulator, client):
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                call = client.start_speech_synthesis_stream(
                    text=SENTENCE, voice_id="Matthew", output_format="pcm", sample_rate="16000"
                )
                chunks: list[bytes] = []
                async for chunk in call:
                    if not chunks:
                        redis_server.kill()  # after the GET, before the SET
                    chunks.append(chunk)
                assert b"".join(chunks)
                for n in range(3):  # Redis is still gone: straight to Polly, no more warnings
                    audio, _other = await _speak(client, f"Another phrase {n}.")
                    assert audio
            warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert "SET" in warnings[0].getMessage()
            assert cache.stats().errors == 1
            assert len(emulator.requests) == 4
            _, call2 = await _speak(client)  # the phrase itself is still in this process's LRU
            assert call2.cache_hit
    finally:
        await cache.aclose()


async def test_no_redis_at_all_costs_one_timeout_then_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        async with serve_cached(cache) as (emulator, client):
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                for n in range(3):
                    audio, call = await _speak(client, f"Phrase {n}.")
                    assert audio
                    assert not call.cache_hit
            assert len(emulator.requests) == 3
            warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
            assert len(warnings) == 1
            assert cache.stats().errors == 1  # then Redis was left alone for retry_after
    finally:
        await cache.aclose()


async def test_a_redis_that_never_answers_is_bounded_by_the_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        async with serve_cached(cache) as (_emulator, client):
            loop = asyncio.get_running_loop()
            started = loop.time()
            audio, _call = await _speak(client)
            assert audio
            assert loop.time() - started < 2.0
            assert cache.stats().errors >= 1
            for writer in accepted:
                writer.close()
    finally:
        await cache.aclose()
        server.close()
        await server.wait_closed()


async def test_redis_restarted_empty_is_used_again_after_retry_after(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, timeout=0.2, retry_after=0.2)
    try:
        async with serve_cached(cache) as (_emulator, client):
            redis_server.kill()
            await _speak(client, "Phrase one.")
            assert cache.stats().errors >= 1
            redis_server.start()
            await asyncio.sleep(0.3)
            await _speak(client, "Phrase two.")
            cache.clear()
            _, call = await _speak(client, "Phrase two.")
            assert call.cache_hit  # stored in the restarted Redis
    finally:
        await cache.aclose()


def test_the_url_password_is_never_shown() -> None:
    cache = RedisCache("redis://user:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in repr(cache)
    assert "hunter2" not in repr(RedisCache("redis://:hunter2@127.0.0.1:6379/0"))
    # redis-py also takes the password from the query string.
    for url in ("redis://127.0.0.1:6379/0?password=hunter2", "redis://127.0.0.1:6379/0?db=1&PASSWORD=hunter2#x"):
        assert "hunter2" not in repr(RedisCache(url))
    with pytest.raises(ValueError, match="redis://"):
        RedisCache("http://127.0.0.1:6379")


def test_polly_stream_say_with_cache_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    from cli_support import run

    with Emulator.start_in_thread(strict=True) as emulator:
        outputs = []
        for n in range(2):
            out = tmp_path / f"{n}.pcm"
            args = ["say", SENTENCE, "--format", "pcm", "-o", str(out), "--cache-redis", redis_server.url]
            result = run(args, emulator)
            assert result.returncode == 0, result.stderr
            outputs.append((out.read_bytes(), result.stderr.decode()))
        assert outputs[0][0] == outputs[1][0]
        assert "from the phrase cache" not in outputs[0][1]
        assert "from the phrase cache" in outputs[1][1]
        assert len(emulator.emulator.requests) == 1
