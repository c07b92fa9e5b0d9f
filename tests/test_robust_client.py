"""Issue 20, items 1 to 6: the client in real use, round 3.

Each test is named after its item (``test_itemN_...``) and runs over real
loopback HTTP/2+TLS: the emulator where it can play the part, the hostile
server of ``hostile_h2`` where a broken endpoint is needed. Every wait is
bounded. Async tests run on asyncio and on uvloop (``all_loops``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import h2.errors
import pytest

import amazon_polly_streaming._transport.loop_thread as loop_thread
import amazon_polly_streaming.credentials as credentials_module
import amazon_polly_streaming.sync as sync_module
from amazon_polly_streaming._wire.request import MAX_BILLED_CHARS, MAX_TEXT_CHARS, split_text, utf16_length
from amazon_polly_streaming.credentials import Credentials
from amazon_polly_streaming.emulator import Emulator, EmulatorThread
from amazon_polly_streaming.exceptions import (
    ConnectTimeoutError,
    CredentialsError,
    ServiceQuotaExceededException,
    StreamResetError,
)
from amazon_polly_streaming.sync import iter_synthesize
from hostile_h2 import H2Peer, audio_event, stream_closed_event
from support import KEY, SECRET, collect, hostile, make_client, serve, within

pytestmark = [pytest.mark.timeout(60), pytest.mark.all_loops]

PCM: dict[str, Any] = {"voice_id": "Matthew", "output_format": "pcm", "sample_rate": "16000"}


# ------------------------------------------------------------------ item 1


async def _sweep() -> None:
    """Cancel every task of the loop but this one, as a supervisor or a test helper does."""
    me = asyncio.current_task()
    swept = [task for task in asyncio.all_tasks() if task is not me]
    for task in swept:
        task.cancel()
    await asyncio.gather(*swept, return_exceptions=True)


async def test_item1_a_task_sweep_does_not_disable_the_client() -> None:
    # The emulator runs on a thread of its own: the sweep must not reach it.
    with Emulator.start_in_thread(audio="tone") as running:
        client = make_client(running.emulator, pool_size=2)
        try:
            assert await collect(client)  # a pooled connection now idles, watched by the pool's task
            await _sweep()
            assert await asyncio.wait_for(collect(client), 10.0), "no audio after the sweep"
            await _sweep()
            assert await asyncio.wait_for(client.prewarm(2), 10.0) >= 1, "prewarm added nothing after a sweep"
            await _sweep()
            assert await asyncio.wait_for(collect(client), 10.0), "no audio after the second sweep"
        finally:
            await client.close()


async def test_item1_idle_connections_still_time_out_after_a_sweep() -> None:
    with Emulator.start_in_thread(audio="tone") as running:
        client = make_client(running.emulator, idle_timeout=0.5)
        try:
            assert await collect(client)
            await _sweep()
            assert await within(5.0, lambda: running.emulator.open_connections == 0), (
                "the idle connection outlived its idle timeout after the sweep"
            )
        finally:
            await client.close()


async def test_item1_a_sweep_of_every_task_that_the_loop_survives() -> None:
    # A sweep from a callback cancels the main task too, which survives it:
    # the pool took it for the loop's end; the next stream finds out it was not.
    with Emulator.start_in_thread(audio="tone") as running:
        client = make_client(running.emulator)
        try:
            assert await collect(client)
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
            main = asyncio.current_task()
            assert main is not None
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1)
            main.uncancel()
            assert await asyncio.wait_for(collect(client), 10.0), "no audio after the loop survived the sweep"
        finally:
            await client.close()


# ------------------------------------------------------------------ item 5


async def test_item5_rst_stream_no_error_after_stream_closed_event_is_a_clean_end() -> None:
    audio = b"\x11\x22" * 400

    async def script(peer: H2Peer) -> None:
        for _ in range(2):
            stream_id = await peer.next_request()
            peer.respond(stream_id)
            peer.send_data(stream_id, audio_event(audio) + stream_closed_event(6))
            # The stream is complete; the server ends it with RST_STREAM(NO_ERROR), not END_STREAM.
            peer.h2.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
            peer.flush()
            await peer.drain(5.0)

    async with hostile(script) as (_, client):
        for _ in range(2):  # and the connection serves the next stream
            received = await asyncio.wait_for(collect(client, text="Hello."), 5.0)
            assert received == audio


async def test_item5_rst_stream_with_an_error_after_stream_closed_event_still_fails() -> None:
    async def script(peer: H2Peer) -> None:
        stream_id = await peer.next_request()
        peer.respond(stream_id)
        peer.send_data(stream_id, audio_event(b"\x11" * 64) + stream_closed_event(6))
        peer.h2.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        peer.flush()
        await peer.drain(5.0)

    async with hostile(script) as (_, client):
        with pytest.raises(StreamResetError):
            await asyncio.wait_for(collect(client, text="Hello."), 5.0)


# ------------------------------------------------------------------ item 6


async def test_item6_a_server_that_never_sends_its_preface_is_a_connect_timeout() -> None:
    async def script(peer: H2Peer) -> None:
        await peer.wait_until(lambda: False, timeout=30)  # reads the client's frames, answers nothing

    options = {"connect_timeout": 0.5, "read_timeout": 20.0}
    async with hostile(script, options, preface=False) as (_, client):
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError) as info:
            await asyncio.wait_for(collect(client, text="Hello."), 10.0)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"the preface wait took {elapsed:.1f} s, connect_timeout is 0.5 s"
        assert "SETTINGS" in str(info.value)
        assert info.value.retry_safe
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError):  # and prewarm too
            await asyncio.wait_for(client.prewarm(1), 10.0)
        assert time.monotonic() - started < 2.0


# ------------------------------------------------------------------ item 2


class BrokerProvider:
    """A credential broker: hands out credentials valid ``lifetimes[n]`` seconds, failing where told."""

    def __init__(self, lifetimes: list[float | None]) -> None:
        self.lifetimes = lifetimes  # None: the broker is unreachable for that call
        self.calls = 0

    def __call__(self) -> Credentials:
        lifetime = self.lifetimes[min(self.calls, len(self.lifetimes) - 1)]
        self.calls += 1
        if lifetime is None:
            raise ConnectionRefusedError("the credential broker is unreachable")
        return Credentials(KEY, SECRET, expiry=time.time() + lifetime)


async def test_item2_a_failed_refresh_in_the_advisory_window_keeps_the_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 10.5 minutes left: inside the 15 min advisory window, outside the 10 min mandatory one.
    broker = BrokerProvider([10.5 * 60, None, 3600])
    caplog.set_level(logging.WARNING, logger="amazon_polly_streaming")
    async with serve({"credentials": broker}, audio="tone") as (_, client):
        assert await collect(client)  # the first credentials: 10.5 minutes left
        assert await collect(client), "a failed refresh failed a stream whose credentials were still good"
        assert await within(2.0, lambda: broker.calls >= 2), "no refresh was tried in the advisory window"
        await asyncio.sleep(0.05)
        assert await collect(client)  # not retried at once: the broker is not asked by every stream
        assert broker.calls == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "refreshing AWS" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert SECRET not in caplog.text


async def test_item2_a_refresh_after_a_failure_is_tried_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials_module, "ADVISORY_RETRY_SECONDS", 0.2)
    broker = BrokerProvider([10.5 * 60, None, 3600])
    async with serve({"credentials": broker}, audio="tone") as (_, client):
        assert await collect(client)
        assert await collect(client)
        assert await within(2.0, lambda: broker.calls >= 2)
        await asyncio.sleep(0.3)
        assert await collect(client)
        assert await within(2.0, lambda: broker.calls >= 3), "the refresh was not tried again after the failure"
        assert await collect(client)
        assert broker.calls == 3  # the new credentials last an hour


async def test_item2_a_failed_refresh_in_the_mandatory_window_fails_the_stream() -> None:
    # 9 minutes left would not outlast a 10 minute stream: the refresh must succeed.
    broker = BrokerProvider([9 * 60, None, 3600])
    async with serve({"credentials": broker}, audio="tone") as (_, client):
        assert await collect(client)  # the very first resolution, 9 minutes left
        with pytest.raises(CredentialsError, match="unreachable"):
            await collect(client)
        assert await collect(client)  # the broker is back
        assert broker.calls == 3


# ------------------------------------------------------------------ item 4

#: 3 MB of UTF-8: a million CJK characters, with an emoji (two UTF-16 units) now and then.
_CJK_3MB = ("漢字かな交じり文の例です。" * 12 + "\U0001f600") * 6410


def test_item4_long_non_ascii_text_is_split_in_linear_time() -> None:
    assert len(_CJK_3MB.encode()) >= 3_000_000
    started = time.perf_counter()
    pieces = split_text(_CJK_3MB)
    elapsed = time.perf_counter() - started
    assert "".join(pieces) == _CJK_3MB
    assert all(utf16_length(piece) <= MAX_BILLED_CHARS for piece in pieces)
    assert sum(utf16_length(piece) > MAX_BILLED_CHARS - 2 for piece in pieces) >= len(pieces) - 1  # full pieces
    # Linear: tens of milliseconds here; the quadratic split took 15-25 s.
    assert elapsed < 0.5, f"splitting 3 MB of CJK text took {elapsed * 1000:.0f} ms"


async def test_item4_text_beyond_one_stream_is_refused_at_once() -> None:
    async with serve(audio="tone") as (emulator, client):
        await client.start_speech_synthesis_stream(text="Hi.", **PCM).aclose()  # imports done, nothing sent
        for text in (_CJK_3MB, "字" * (MAX_TEXT_CHARS + 1), "\U0001f600" * (MAX_TEXT_CHARS // 2 + 1)):
            started = time.perf_counter()
            with pytest.raises(ValueError, match="100,000") as info:
                client.start_speech_synthesis_stream(text=text, **PCM)
            assert time.perf_counter() - started < 0.05, "the refusal was not quick"
            assert "10 minutes" in str(info.value)
        async with client.open_stream(**PCM) as stream:
            with pytest.raises(ValueError, match="100,000"):
                await stream.send(_CJK_3MB)
            await stream.send("Still here.")
            await stream.close_input()
            assert b"".join([chunk async for chunk in stream])
        assert len(emulator.requests) == 1  # the open stream's; nothing was sent for the refused texts
        # Just within the limit is accepted.
        assert client.start_speech_synthesis_stream(text="字" * MAX_TEXT_CHARS, **PCM) is not None


async def test_item4_a_large_text_does_not_stall_other_streams() -> None:
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    # The emulator's input idle limit is 1 s here (Polly's is 5 s); keep-alive every 0.3 s.
    async with (
        serve({"keepalive_interval": 0.3}, audio="tone", idle_timeout=1.0) as (_, client),
        client.open_stream(**PCM) as stream,
    ):
        await stream.send("Waiting for the others. ")
        beat = asyncio.create_task(heartbeat())
        try:
            await asyncio.sleep(0.05)
            for text in ("漢字かな交じり文。" * 11000, _CJK_3MB):  # 99,000 characters, then 3 MB
                with contextlib.suppress(ValueError):
                    pending = client.start_speech_synthesis_stream(text=text, **PCM)
                    await pending.aclose()  # prepared (split and encoded), never sent
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)  # beyond the idle limit: only keep-alive holds the stream
        finally:
            beat.cancel()
        await stream.send("Still here.")
        await stream.close_input()
        assert b"".join([chunk async for chunk in stream])
    assert max(gaps) < 0.5, f"the loop stalled for {max(gaps) * 1000:.0f} ms"


# ------------------------------------------------------------------ item 3


@pytest.fixture(params=["asyncio", "uvloop"])
def sync_loop(request: pytest.FixtureRequest) -> Iterator[str]:
    """The sync helpers make their loop with the event loop policy: run them on each kind."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        previous = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        try:
            yield request.param
        finally:
            asyncio.set_event_loop_policy(previous)
    else:
        yield request.param


@pytest.fixture
def idle_emulator() -> Iterator[EmulatorThread]:
    """An emulator whose input idle limit is 1 s (Polly's is 5 s), on its own thread."""
    with Emulator.start_in_thread(audio="tone", idle_timeout=1.0) as running:
        yield running


def _sync_options(running: EmulatorThread) -> dict[str, Any]:
    return {
        "region": "us-east-1",
        "endpoint_url": running.endpoint_url,
        "verify": running.ca_file,
        "credentials": (KEY, SECRET),
        "read_timeout": 5.0,
        "keepalive_interval": 0.3,
        "output_format": "pcm",
        "sample_rate": "16000",
    }


def _slow_tokens(count: int = 8) -> Iterator[str]:
    yield "Hello there. "
    for index in range(count):
        time.sleep(0.1)
        yield f"Word {index}. "


def _stream_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "polly-sync-stream"]


def _settles(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_item3_a_caller_holding_a_chunk_does_not_lose_the_stream(sync_loop: str, idle_emulator: EmulatorThread) -> None:
    audio = bytearray()
    for chunk in iter_synthesize(_slow_tokens(), "Matthew", **_sync_options(idle_emulator)):
        if not audio:
            time.sleep(1.6)  # blocking playback of the first chunk, past the 1 s input idle limit
        audio += chunk
    assert audio
    (record,) = idle_emulator.emulator.requests
    assert record.outcome == "ok", record.outcome
    assert "".join(text["text"] for text in record.texts).count("Word") == 8, "text was lost"
    assert _settles(lambda: not _stream_threads(), 2.0), "the stream's thread outlived the stream"


def test_item3_audio_waiting_for_the_caller_is_bounded(
    sync_loop: str, idle_emulator: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    most: list[int] = [0]
    largest: list[int] = [0]

    class Recording(loop_thread.LoopThread):
        async def _put(self, chunk: bytes) -> None:
            await super()._put(chunk)
            most[0] = max(most[0], self._buffered)
            largest[0] = max(largest[0], len(chunk))

    monkeypatch.setattr(loop_thread, "LoopThread", Recording)
    monkeypatch.setattr(sync_module, "BUFFER_BYTES", 8192)
    text = "A sentence that makes a good deal of audio, more than the buffer holds. " * 20
    audio = bytearray()
    for chunk in iter_synthesize(text, "Matthew", **_sync_options(idle_emulator)):
        if not audio:
            time.sleep(1.0)  # the loop reads ahead meanwhile, up to the bound
        audio += chunk
    assert len(audio) > 8 * 8192
    assert most[0] < 8192 + largest[0], f"{most[0]} bytes waited for the caller (bound 8192)"
    assert idle_emulator.emulator.requests[0].outcome == "ok"


@pytest.mark.parametrize("how", ["break", "close", "collect"])
def test_item3_closing_early_ends_the_stream_and_its_thread(
    sync_loop: str, idle_emulator: EmulatorThread, how: str
) -> None:
    emulator = idle_emulator.emulator
    chunks = iter_synthesize(_slow_tokens(50), "Matthew", **_sync_options(idle_emulator))
    assert next(chunks)
    if how == "close":
        chunks.close()
    elif how == "collect":
        del chunks
        gc.collect()
    else:
        for _ in chunks:
            break
        chunks.close()
    assert _settles(lambda: not _stream_threads(), 3.0), "the stream's thread outlived close()"
    assert _settles(lambda: emulator.active_streams == 0, 3.0), "the stream outlived close()"
    assert _settles(lambda: emulator.open_connections == 0, 3.0), "the connection outlived close()"


def test_item3_errors_reach_the_caller(sync_loop: str, idle_emulator: EmulatorThread) -> None:
    def failing() -> Iterator[str]:
        yield "Hello there. "
        time.sleep(0.2)
        raise ValueError("the upstream model failed")

    with pytest.raises(ValueError, match="upstream model"):
        _drain(iter_synthesize(failing(), "Matthew", **_sync_options(idle_emulator)), 0.1)
    # A source that stalls past the idle limit, keep-alive off: Polly's error, in the caller's thread.
    options = {**_sync_options(idle_emulator), "keepalive_interval": None}
    with pytest.raises(ServiceQuotaExceededException):
        _drain(iter_synthesize(_slow_tokens_then_stall(), "Matthew", **options), 0.0)
    assert _settles(lambda: not _stream_threads(), 3.0)


def _drain(chunks: Iterable[bytes], pause: float) -> None:
    for _ in chunks:
        time.sleep(pause)


def _slow_tokens_then_stall() -> Iterator[str]:
    yield "Hello there. "
    time.sleep(2.0)
    yield "Too late."
