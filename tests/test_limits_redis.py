"""``RedisLimiter`` against a real ``redis-server``: fairness, leases, faults, processes.

Every test gets its own server (the ``redis_server`` fixture: loopback, free
port, no persistence). "Processes" are separate ``RedisLimiter`` instances
(each has its own connections) or real subprocesses where a crash matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import redis.asyncio

from amazon_polly_streaming import AdmissionTimeoutError, ThrottlingException
from amazon_polly_streaming._aimd import AIMDLimit
from amazon_polly_streaming._limit_scripts import keys
from amazon_polly_streaming.limits import LimiterStats, RedisLimiter
from limiter_support import close_all, limiter_on, settle
from redis_server import RedisServer
from support import SENTENCE, Peak, collect, serve

pytestmark = pytest.mark.timeout(60)

TESTS = Path(__file__).resolve().parent
WORKER = TESTS / "fleet_worker.py"


# ------------------------------------------------------------------ construction


def test_bad_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RedisLimiter("redis://127.0.0.1:1/0", limit=0, name="x")
    with pytest.raises(ValueError, match="name"):
        RedisLimiter("redis://127.0.0.1:1/0", limit=1, name="")
    for braced in ("}x", "a{b", "fleet}"):  # the name is the keys' Redis Cluster hash tag
        with pytest.raises(ValueError, match="must not contain"):
            RedisLimiter("redis://127.0.0.1:1/0", limit=1, name=braced)
    with pytest.raises(ValueError, match="redis://"):
        RedisLimiter("http://127.0.0.1:1/0", limit=1, name="x")
    with pytest.raises(ValueError, match="lease_seconds"):
        RedisLimiter("redis://127.0.0.1:1/0", limit=1, name="x", lease_seconds=3600)
    with pytest.raises(ValueError, match="finite"):
        RedisLimiter("redis://127.0.0.1:1/0", limit=1, name="x", wait_timeout=float("inf"))
    limiter = RedisLimiter("redis://:hunter2@127.0.0.1:1/0", limit=26, name="x")
    assert "hunter2" not in repr(limiter)
    assert limiter.fallback_limit == 6


# ------------------------------------------------------------------ the shared count


@pytest.mark.all_loops
async def test_admits_up_to_the_limit_across_processes_and_an_uncontended_stream_costs_one_round_trip(
    redis_server: RedisServer,
) -> None:
    first, second = limiter_on(redis_server), limiter_on(redis_server)
    a = await first.acquire()
    b = await second.acquire()
    assert a.wait < 0.5
    stats = await first.stats()
    assert (stats.holders, stats.waiters, stats.effective_limit) == (2, 0, 2)
    assert sum(stats.holders_by_process.values()) == 2
    blocked = asyncio.create_task(second.acquire())
    await asyncio.sleep(0.1)
    assert not blocked.done()
    assert (await first.stats()).waiters == 1
    a.release()
    c = await asyncio.wait_for(blocked, 2)
    for permit in (b, c):
        permit.release()
    await settle(first, second)
    assert (await first.stats()).holders == 0

    # One script call to enter, one (off the stream's path) to leave.
    monitor = redis.asyncio.Redis.from_url(redis_server.url)
    before = await monitor.info("commandstats")
    await settle(first)
    (await first.acquire()).release()
    await settle(first)
    after = await monitor.info("commandstats")
    calls = after["cmdstat_evalsha"]["calls"] - before.get("cmdstat_evalsha", {"calls": 0})["calls"]
    assert calls == 2
    await monitor.aclose()
    await close_all(first, second)


async def test_waiters_are_served_first_come_first_served_across_processes(redis_server: RedisServer) -> None:
    limiters = [limiter_on(redis_server, limit=1) for _ in range(3)]
    held = await limiters[0].acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        permit = await limiters[n % 3].acquire()
        order.append(n)
        await asyncio.sleep(0.02)
        permit.release()

    tasks = []
    for n in range(6):
        tasks.append(asyncio.create_task(wait(n)))
        # Arrival order is the order of the first script call: the next comes once this one queued.
        for _ in range(1000):
            if (await limiters[0].stats()).waiters > n:
                break
            await asyncio.sleep(0.005)
    assert (await limiters[0].stats()).waiters == 6
    held.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert order == list(range(6))
    await close_all(*limiters)


async def test_a_dead_waiters_ticket_does_not_keep_a_free_permit_idle(redis_server: RedisServer) -> None:
    holder, limiter = limiter_on(redis_server, limit=1), limiter_on(redis_server, limit=1)
    held = await holder.acquire()
    _, queue, waiting, _ = keys("test")
    monitor = redis.asyncio.Redis.from_url(redis_server.url)
    seconds, micros = await monitor.time()
    now_ms = seconds * 1000 + micros // 1000
    # A waiter at the head of the queue that has just polled and then was SIGKILLed.
    await monitor.zadd(queue, {"host:1:dead": 0})
    await monitor.zadd(waiting, {"host:1:dead": now_ms + 3000})
    started = time.monotonic()
    live = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.2)
    held.release()
    permit = await asyncio.wait_for(live, 5)
    # Passed over once it missed its polls (1.5 s), not after its whole WAITER_TTL (3 s).
    assert time.monotonic() - started < 2.6
    permit.release()
    await monitor.aclose()
    await close_all(holder, limiter)


async def test_wait_is_bounded_by_wait_timeout(redis_server: RedisServer) -> None:
    limiter = limiter_on(redis_server, limit=1, wait_timeout=0.3, name="fleet-a")
    held = await limiter.acquire()
    started = time.monotonic()
    expected = r"RedisLimiter 'fleet-a' within 0\.\d s \(limit 1, effective 1, 1 held, 0 ahead"
    with pytest.raises(AdmissionTimeoutError, match=expected) as caught:
        await limiter.acquire()
    assert 0.3 <= time.monotonic() - started < 1.5
    assert caught.value.retry_safe
    assert caught.value.limit == "RedisLimiter 'fleet-a'"
    await settle(limiter)
    assert (await limiter.stats()).waiters == 0  # it left the queue
    held.release()
    await close_all(limiter)


@pytest.mark.all_loops
async def test_cancellation_at_every_await_leaves_nothing_behind(redis_server: RedisServer) -> None:
    limiter, other = limiter_on(redis_server, limit=1), limiter_on(redis_server, limit=1)
    # Uncontended: cancelled before, during and after the script's round trip.
    for steps in range(60):
        task = asyncio.create_task(limiter.acquire())
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            (await task).release()
        await settle(limiter)
        stats = await other.stats()
        assert (stats.holders, stats.waiters) == (0, 0), steps
    # Contended: a cancelled waiter leaves the queue at once.
    held = await other.acquire()
    for steps in (0, 1, 3, 10, 30):
        task = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.05 if steps == 30 else 0)
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle(limiter)
        assert (await other.stats()).waiters == 0, steps
    held.release()
    await settle(other)
    (await asyncio.wait_for(limiter.acquire(), 2)).release()
    await close_all(limiter, other)


async def test_a_limiter_works_from_several_threads_and_loops(redis_server: RedisServer) -> None:
    limiter = limiter_on(redis_server, limit=2)
    peak = Peak()

    async def two() -> None:
        await asyncio.gather(peak.hold(limiter, 5, 0.01), peak.hold(limiter, 5, 0.01))
        await settle(limiter)
        await limiter.aclose()

    threads = [threading.Thread(target=asyncio.run, args=(two(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    await two()
    for thread in threads:
        await asyncio.to_thread(thread.join, 30)
    assert peak.peak == 2
    check = limiter_on(redis_server)
    assert (await check.stats()).holders == 0
    await close_all(check)


# ------------------------------------------------------------------ leases


async def test_a_killed_process_frees_its_permits_within_the_lease(redis_server: RedisServer) -> None:
    lease = 1.0
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "hold",
        redis_server.url,
        "test",
        "2",
        str(lease),
        "2",
        stdout=asyncio.subprocess.PIPE,
        cwd=TESTS,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.startswith(b"held 2")
        await asyncio.sleep(lease)  # a heartbeat or two has run
        limiter = limiter_on(redis_server, lease_seconds=lease)
        assert (await limiter.stats()).holders == 2
        os.kill(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        permit = await asyncio.wait_for(limiter.acquire(), 10)
        recovered = time.monotonic() - killed
        assert recovered <= lease + 1.5, recovered
        permit.release()
        await close_all(limiter)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_holder_whose_lease_vanished_registers_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = limiter_on(redis_server, lease_seconds=0.6)
    permit = await limiter.acquire()
    monitor = redis.asyncio.Redis.from_url(redis_server.url)
    await monitor.flushall()  # as a Redis restarted empty, or a lease lost in a long pause
    assert (await limiter.stats()).holders == 0
    with caplog.at_level(logging.INFO, logger="amazon_polly_streaming"):
        await asyncio.sleep(0.5)
    assert (await limiter.stats()).holders == 1
    assert "re-registered" in caplog.text
    permit.release()
    await settle(limiter)
    assert (await limiter.stats()).holders == 0
    await monitor.aclose()
    await close_all(limiter)


# ------------------------------------------------------------------ AIMD, shared


async def test_the_fleet_limit_follows_the_aimd_rule_on_the_server(redis_server: RedisServer) -> None:
    first, second = limiter_on(redis_server, limit=10), limiter_on(redis_server, limit=10)
    model = AIMDLimit(10)
    outcomes = ["throttled"] * 3 + ["success"] * 4 + ["throttled"] + ["success"] * 40
    for n, outcome in enumerate(outcomes):
        limiter = (first, second)[n % 2]
        (await limiter.acquire()).release(outcome)
        await settle(limiter)
        getattr(model, "on_throttle" if outcome == "throttled" else "on_success")()
        assert (await first.stats()).effective_limit == model.effective, n
    assert model.effective == 10
    await close_all(first, second)


async def test_a_throttled_stream_shrinks_the_fleets_limit(redis_server: RedisServer) -> None:
    limiter = limiter_on(redis_server, limit=5)
    async with serve({"limiter": limiter}) as (_, client):
        with pytest.raises(ThrottlingException):
            await collect(client, "{{fault:throttling}} " + SENTENCE)
        await settle(limiter)
        stats = await limiter.stats()
        assert (stats.effective_limit, stats.throttles, stats.holders) == (4, 1, 0)
    await close_all(limiter)


# ------------------------------------------------------------------ a fleet of processes


async def test_processes_sharing_one_redis_never_exceed_the_limit_at_the_emulator(redis_server: RedisServer) -> None:
    limit, processes, count, concurrency = 3, 3, 6, 3
    async with serve() as (emulator, _):
        commands = [
            asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                "streams",
                redis_server.url,
                "fleet",
                str(limit),
                emulator.endpoint_url,
                emulator.ca_file,
                str(count),
                str(concurrency),
                stdout=asyncio.subprocess.PIPE,
                cwd=TESTS,
            )
            for _ in range(processes)
        ]
        workers = [await command for command in commands]
        outputs = [await asyncio.wait_for(worker.communicate(), 50) for worker in workers]
        results = [json.loads(out.decode()) for out, _ in outputs]
        assert all(worker.returncode == 0 for worker in workers)
        assert [r["failures"] for r in results] == [[]] * processes
        records = list(emulator.requests)
    assert len(records) == processes * count
    edges = sorted([(r.started, 1) for r in records] + [(r.ended or r.started, -1) for r in records])
    open_now = peak = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    assert peak == limit
    assert max(w for r in results for w in r["waits"]) > 0.05  # some really waited


# ------------------------------------------------------------------ the command line


def test_the_limiter_command_shows_holders_by_process(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from amazon_polly_streaming.cli import main

    async def take_two() -> None:
        limiter = limiter_on(redis_server, name="cli", limit=5)
        await limiter.acquire()
        (await limiter.acquire()).release("throttled")
        await limiter.acquire()
        await settle(limiter)
        await limiter.aclose()  # the leases stay in Redis until they expire

    asyncio.run(take_two())
    assert main(["limiter", "--redis", redis_server.url, "--name", "cli", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "holders 2, waiting 0, effective limit 4, throttles 1" in out
    assert f":{os.getpid()}" in out
    assert main(["limiter", "--redis", redis_server.url, "--name", "cli", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["holders_by_process"] == {f"{os.uname().nodename}:{os.getpid()}": 2}
    redis_server.kill()
    assert main(["limiter", "--redis", redis_server.url, "--name", "cli"]) == 5
    assert "does not answer" in capsys.readouterr().err
    assert main(["limiter", "--redis", "http://x", "--name", "cli"]) == 2


def test_the_blocking_helper_closes_the_limiters_connections_with_its_loop(redis_server: RedisServer) -> None:
    from amazon_polly_streaming.emulator import Emulator
    from amazon_polly_streaming.sync import synthesize
    from support import KEY, SECRET, open_fds

    limiter = limiter_on(redis_server, limit=1)
    with Emulator.start_in_thread(strict=True) as emulator:
        fds = open_fds()
        for _ in range(6):
            audio = synthesize(
                SENTENCE,
                "Matthew",
                region="us-east-1",
                endpoint_url=emulator.endpoint_url,
                verify=emulator.ca_file,
                credentials=(KEY, SECRET),
                limiter=limiter,
            )
            assert audio
            # Released on Redis, not left to expire with the lease.
            assert asyncio.run(_stats_andclose_all(limiter)).holders == 0
        # Each loop's Redis connections were closed with it, not left to the garbage collector (the
        # slack is the emulator thread, which may not have closed its end of the last connection yet).
        assert open_fds() <= fds + 1


async def _stats_andclose_all(limiter: RedisLimiter) -> LimiterStats:
    try:
        return await limiter.stats()
    finally:
        await limiter.aclose()
