"""``RedisLimiter`` when Redis misbehaves: down, killed and restarted, frozen, refusing us, holding garbage.

Redis trouble never fails a stream (the limiter falls back to a per-process
share, says so once, and comes back); a Redis that answers "no" is a clear
``LimiterError``; other data in the limiter's keys is cleared.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest
import redis.asyncio

from amazon_polly_streaming import AdmissionTimeoutError, LimiterError
from amazon_polly_streaming._limit_scripts import keys
from amazon_polly_streaming.limits import RedisLimiter
from limiter_support import close_all, limiter_on, settle
from redis_server import RedisServer, free_port
from support import collect, serve

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------ Redis trouble


async def test_redis_down_from_the_start_falls_back_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", limit=8, name="x", fallback_limit=2)
    with caplog.at_level(logging.WARNING, logger="amazon_polly_streaming"):
        permits = [await asyncio.wait_for(limiter.acquire(), 2) for _ in range(2)]
        third = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.1)
        assert not third.done()  # the per-process share is 2
        permits[0].release()
        permits.append(await asyncio.wait_for(third, 2))
    assert caplog.text.count("does not answer") == 1
    stats = await limiter.stats()
    assert stats.fallback_active
    assert stats.fallbacks == 1
    for permit in permits:
        permit.release()
    await close_all(limiter)


async def test_redis_killed_and_restarted_mid_run_fails_no_stream(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = limiter_on(redis_server, limit=3, lease_seconds=1.5, fallback_limit=2, redis_timeout=0.2)
    failures: list[BaseException] = []
    done = 0
    stop = asyncio.Event()
    async with serve({"limiter": limiter}) as (_, client):

        async def worker() -> None:
            nonlocal done
            while not stop.is_set():
                try:
                    await collect(client)
                    done += 1
                except Exception as exc:
                    failures.append(exc)

        with caplog.at_level(logging.WARNING, logger="amazon_polly_streaming"):
            workers = [asyncio.create_task(worker()) for _ in range(4)]
            await asyncio.sleep(0.5)
            redis_server.kill()
            await asyncio.sleep(1.5)
            assert (await limiter.stats()).fallback_active
            await asyncio.to_thread(redis_server.restart)
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.gather(*workers)
        assert not failures, failures
        assert done > 10
        stats = await limiter.stats()
        assert not stats.fallback_active
        assert stats.fallbacks == 1
        assert caplog.text.count("does not answer") == 1
        assert "answers again" in caplog.text
    await settle(limiter)
    assert (await limiter.stats()).holders == 0
    await close_all(limiter)


async def test_a_frozen_redis_is_a_short_timeout_then_the_fallback(redis_server: RedisServer) -> None:
    limiter = limiter_on(redis_server, redis_timeout=0.2)
    (await limiter.acquire()).release()
    await settle(limiter)
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        permit = await asyncio.wait_for(limiter.acquire(), 5)
        assert time.monotonic() - started < 1.0
        assert (await limiter.stats()).fallback_active
        permit.release()
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    await asyncio.sleep(1.1)  # the next probe is due
    permit = await limiter.acquire()
    assert permit.local is None  # shared again
    permit.release()
    await close_all(limiter)


async def test_a_release_redis_missed_while_frozen_is_sent_again(redis_server: RedisServer) -> None:
    # The stream ended while Redis was frozen: its release timed out. Without
    # a second try its permit kept a place in the fleet's count until the
    # lease ran out (10 s here), so no stream could start after Redis was back.
    limiter = limiter_on(redis_server, limit=1, redis_timeout=0.2, lease_seconds=10)
    permit = await limiter.acquire()
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        permit.release()
        await asyncio.sleep(0.6)  # the release timed out
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    started = time.monotonic()
    again = await asyncio.wait_for(limiter.acquire(), 4)
    assert time.monotonic() - started < 3
    assert again.local is None  # from the shared count, not the fallback
    again.release()
    await settle(limiter)
    assert (await limiter.stats()).holders == 0
    await close_all(limiter)


async def test_a_sweep_of_all_other_tasks_does_not_stop_the_heartbeat(redis_server: RedisServer) -> None:
    # An application that cancels every task but its own (a shutdown sweep,
    # a test harness) also cancelled the heartbeat: the leases of streams
    # still running then lapsed and another process took their places.
    limiter = limiter_on(redis_server, limit=1, lease_seconds=1.5)
    other = limiter_on(redis_server, limit=1, wait_timeout=0.5)
    permit = await limiter.acquire()
    me = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not me:
            task.cancel()
    await asyncio.sleep(2.5)  # past the lease: only a heartbeat keeps it
    with pytest.raises(AdmissionTimeoutError):
        await other.acquire()
    assert (await limiter.stats()).holders == 1
    permit.release()
    await settle(limiter)
    assert (await limiter.stats()).holders == 0
    await close_all(limiter, other)


async def test_a_refused_password_is_a_clear_error_not_a_fallback(redis_server: RedisServer, tmp_path: Path) -> None:
    # redis_server: only for its check that the binary is there (skip, or fail under CI).
    server = RedisServer(tmp_path, password="s3cret-pw")
    server.start()
    try:
        for url in (server.url.replace("s3cret-pw", "wrong-pw"), server.url.replace(":s3cret-pw@", "")):
            limiter = RedisLimiter(url, limit=2, name="x")
            started = time.monotonic()
            with pytest.raises(LimiterError, match="refused") as caught:
                await limiter.acquire()
            assert time.monotonic() - started < 2
            assert "pw" not in str(caught.value)
            assert not caught.value.retryable
            await close_all(limiter)
        good = RedisLimiter(server.url, limit=2, name="x")
        (await good.acquire()).release()
        await close_all(good)
    finally:
        server.kill()


async def test_garbage_in_the_limiters_keys_is_cleared(redis_server: RedisServer) -> None:
    holders, queue, waiting, state = keys("test")
    monitor = redis.asyncio.Redis.from_url(redis_server.url)
    await monitor.set(holders, "not a sorted set")
    await monitor.hset(queue, "x", "y")
    await monitor.zadd(waiting, {"ghost": 1e300})
    await monitor.rpush(state, "a list")
    limiter = limiter_on(redis_server)
    permits = [await asyncio.wait_for(limiter.acquire(), 2) for _ in range(2)]
    await monitor.hset(state, mapping={"effective": "banana", "seq": "NaN", "throttles": "-4"})
    await monitor.zadd(queue, {"stranger": 0})  # queued without a waiter: must not block anyone
    await monitor.zadd(holders, {"far-future": 1e15})  # a lease nobody could have written
    permits[0].release()
    permits.append(await asyncio.wait_for(limiter.acquire(), 3))
    stats = await limiter.stats()
    assert (stats.holders, stats.effective_limit, stats.throttles) == (2, 2, 0)
    for permit in permits[1:]:
        permit.release("throttled")
    await settle(limiter)
    assert (await limiter.stats()).throttles == 2
    await monitor.aclose()
    await close_all(limiter)


async def test_redis_lost_while_waiting_keeps_one_bound_on_the_wait(redis_server: RedisServer) -> None:
    limiter = limiter_on(redis_server, limit=1, fallback_limit=1, wait_timeout=1.0, redis_timeout=0.2)
    other = limiter_on(redis_server, limit=1)
    held = await other.acquire()  # the fleet is full: the limiter's caller queues in Redis
    local = await limiter._fallback.acquire()  # and its own fallback share is full too
    started = time.monotonic()
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.5)
    redis_server.kill()
    with pytest.raises(AdmissionTimeoutError, match="fallback share of 1 was full"):
        await waiting
    assert time.monotonic() - started < 1.6  # not 0.5 s on Redis plus a whole wait_timeout on the share
    local.release()
    held.release()
    await close_all(limiter, other)
