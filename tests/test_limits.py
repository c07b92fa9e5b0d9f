"""Admission control in one process: the AIMD rule, ``LocalLimiter``, and how the client holds permits.

The client tests use the emulator over real HTTP/2+TLS; a permit must be
held from before the request until the stream ends, however it ends, and
never leak.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from amazon_polly_streaming import AdmissionTimeoutError, PollyStreamingClient, RetryPolicy, ThrottlingException
from amazon_polly_streaming._aimd import AIMDLimit, clamp, succeeded, throttled
from amazon_polly_streaming.limits import LocalLimiter
from support import SENTENCE, Peak, collect, serve

pytestmark = [pytest.mark.timeout(60), pytest.mark.all_loops]


# ------------------------------------------------------------------ AIMD (pure)


def test_aimd_shrinks_multiplicatively_and_never_below_one() -> None:
    limit = AIMDLimit(26)
    assert limit.effective == 26
    limit.on_throttle()
    assert limit.current == pytest.approx(23.4)
    assert limit.effective == 23
    for _ in range(100):
        limit.on_throttle()
    assert limit.effective == 1
    assert limit.current == 1.0


def test_aimd_grows_by_one_permit_per_window_of_successes_and_never_above_the_limit() -> None:
    limit = AIMDLimit(10)
    limit.current = 5.0
    for _ in range(5):
        limit.on_success()
    assert limit.effective == 5  # 5 successes at ~1/5 each: just under 6
    limit.on_success()
    assert limit.effective == 6
    for _ in range(1000):
        limit.on_success()
    assert limit.current == 10.0


def test_aimd_functions_clamp_garbage() -> None:
    assert clamp(float("nan"), 7) == 7.0
    assert clamp(float("inf"), 7) == 7.0
    assert clamp(-3, 7) == 1.0
    assert throttled(1.0, 7) == 1.0
    assert succeeded(0.0, 7) == 2.0  # clamped to 1 first, then +1/1
    with pytest.raises(ValueError, match="at least 1"):
        AIMDLimit(0)
    with pytest.raises(TypeError):
        AIMDLimit(True)


def test_arguments_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LocalLimiter(0)
    with pytest.raises(ValueError, match="finite"):
        LocalLimiter(3, wait_timeout=float("inf"))
    with pytest.raises(TypeError, match="limiter"):
        PollyStreamingClient(region="us-east-1", limiter="six")  # type: ignore[arg-type]
    client = PollyStreamingClient(region="us-east-1", limiter=6)
    assert isinstance(client.limiter, LocalLimiter)
    assert client.limiter.limit == 6


# ------------------------------------------------------------------ LocalLimiter


async def test_local_limiter_admits_up_to_the_limit_then_fifo() -> None:
    limiter = LocalLimiter(2)
    first, second = await limiter.acquire(), await limiter.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        permit = await limiter.acquire()
        order.append(n)
        await asyncio.sleep(0)
        permit.release()

    tasks = [asyncio.create_task(wait(n)) for n in range(5)]
    await asyncio.sleep(0.01)
    stats = await limiter.stats()
    assert (stats.holders, stats.waiters) == (2, 5)
    first.release()
    first.release()  # idempotent
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    second.release()
    assert (await limiter.stats()).holders == 0


async def test_local_limiter_wait_is_bounded() -> None:
    limiter = LocalLimiter(1, wait_timeout=0.1)
    held = await limiter.acquire()
    with pytest.raises(AdmissionTimeoutError, match=r"LocalLimiter\(1\) within 0\.1") as caught:
        await limiter.acquire()
    assert caught.value.retry_safe
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.waited >= 0.09  # the loop's clock; uvloop's steps in milliseconds
    assert (await limiter.stats()).waiters == 0
    held.release()


async def test_local_limiter_cancelled_waiter_leaves_at_once() -> None:
    limiter = LocalLimiter(1)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    behind = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.sleep(0)
    assert (await limiter.stats()).waiters == 1
    held.release()
    (await behind).release()
    assert (await limiter.stats()).holders == 0


async def test_local_limiter_cancelled_after_the_grant_passes_the_place_on() -> None:
    limiter = LocalLimiter(1)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    behind = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    held.release()  # grants the waiter, whose wake-up is still queued
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    (await asyncio.wait_for(behind, 1)).release()
    assert (await limiter.stats()).holders == 0


async def test_local_limiter_shared_by_threads_and_loops() -> None:
    limiter = LocalLimiter(3)
    peak = Peak()

    async def three() -> None:
        await asyncio.gather(*(peak.hold(limiter, 20, 0.001) for _ in range(3)))

    threads = [threading.Thread(target=asyncio.run, args=(three(),)) for _ in range(3)]
    for t in threads:
        t.start()
    await three()
    for t in threads:
        await asyncio.to_thread(t.join, 30)
    assert peak.peak == 3
    assert (await limiter.stats()).holders == 0


async def test_local_limiter_adapts_to_throttles() -> None:
    limiter = LocalLimiter(4)
    permit = await limiter.acquire()
    permit.release("throttled")
    stats = await limiter.stats()
    assert (stats.effective_limit, stats.throttles) == (3, 1)
    for _ in range(10):
        (await limiter.acquire()).release("success")
    assert limiter.effective_limit == 4


# ------------------------------------------------------------------ the client


async def _held_open(started: asyncio.Event, release: asyncio.Event) -> AsyncIterator[str]:
    started.set()
    yield "Hello."
    await release.wait()


async def test_stream_holds_a_permit_until_it_ends_and_metrics_say_how_long_it_waited() -> None:
    limiter = LocalLimiter(1)
    async with serve({"limiter": limiter}) as (_, client):
        started, release = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(collect(client, _held_open(started, release)))
        await started.wait()
        assert (await limiter.stats()).holders == 1

        async def second() -> float | None:
            async with client.open_stream(voice_id="Matthew", output_format="pcm") as stream:
                assert (await limiter.stats()).holders == 1
                await stream.send(SENTENCE)
                await stream.close_input()
                async for _ in stream:
                    pass
            return stream.metrics.admission_wait

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.1)
        assert (await limiter.stats()).waiters == 1
        release.set()
        await first
        waited = await waiting
        assert waited is not None
        assert waited >= 0.09  # the loop's clock; uvloop's has millisecond steps
        assert (await limiter.stats()).holders == 0


async def test_a_waiting_stream_sends_nothing_until_admitted() -> None:
    limiter = LocalLimiter(1, wait_timeout=0.2)
    async with serve({"limiter": limiter}) as (emulator, client):
        started, release = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(collect(client, _held_open(started, release)))
        await started.wait()
        with pytest.raises(AdmissionTimeoutError) as caught:
            await collect(client)
        assert not caught.value.audio_delivered
        assert len(emulator.requests) == 1
        release.set()
        await first


@pytest.mark.parametrize("ending", ["complete", "error", "cancel", "break", "abort", "aclose", "client_close"])
async def test_every_ending_gives_the_permit_back(ending: str) -> None:
    limiter = LocalLimiter(1)
    async with serve({"limiter": limiter}) as (_, client):
        if ending == "complete":
            await collect(client)
        elif ending == "error":
            with pytest.raises(ThrottlingException):
                await collect(client, "{{fault:throttling}} " + SENTENCE)
        elif ending == "cancel":
            started, release = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(collect(client, _held_open(started, release)))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        elif ending == "break":
            generator = client.start_speech_synthesis_stream(text=SENTENCE, voice_id="Matthew")
            async for _ in generator:
                break
            await generator.aclose()
        elif ending == "abort":
            async with client.open_stream(voice_id="Matthew") as stream:
                await stream.send(SENTENCE)
                await stream.abort()
                assert (await limiter.stats()).holders == 0
        elif ending == "aclose":
            async with client.open_stream(voice_id="Matthew") as stream:
                await stream.aclose()
        else:
            started, release = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(collect(client, _held_open(started, release)))
            await started.wait()
            await client.close()
            with pytest.raises(Exception, match="closed"):
                await task
        stats = await limiter.stats()
        assert (stats.holders, stats.waiters) == (0, 0)
        if ending == "error":
            assert stats.throttles == 1


async def test_a_retried_attempt_gives_its_permit_back_and_queues_again() -> None:
    limiter = LocalLimiter(1)
    async with serve({"limiter": limiter, "retries": RetryPolicy(3, base_delay=0.01)}) as (emulator, client):
        emulator.inject("throttling@before_headers", count=2)
        audio = await collect(client)
        assert audio
        stats = await limiter.stats()
        assert (stats.holders, stats.throttles) == (0, 2)
        assert len(emulator.requests) == 3


async def test_limiter_is_independent_of_the_pool() -> None:
    limiter = LocalLimiter(3)
    async with serve({"limiter": limiter, "pool_size": 1}) as (_, client):
        await asyncio.gather(*(collect(client) for _ in range(6)))
        assert (await limiter.stats()).holders == 0
