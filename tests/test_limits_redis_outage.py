"""``RedisLimiter`` across a Redis outage: the fleet never goes over its limit, and comes back at full speed.

The figures that these tests pin came from ``benchmarks/fleet.py``'s outage
run (Redis stopped 5 s and restarted empty): without them the fleet opened
more streams than the quota, Polly throttled them, and the fleet's shared
limit shrank for the limiter's own overshoot.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from amazon_polly_streaming._limit_scripts import keys
from limiter_support import close_all, limiter_on, settle
from redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)


async def test_the_fallback_share_counts_the_permits_already_held(redis_server: RedisServer) -> None:
    limiter = limiter_on(redis_server, limit=8, fallback_limit=2, redis_timeout=0.2)
    shared = [await limiter.acquire() for _ in range(2)]
    assert all(permit.local is None for permit in shared)
    redis_server.kill()
    # This process already runs its whole share: Redis down adds no stream.
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(1.0)
    assert limiter._fallback_active
    assert not third.done()
    shared[0].release()
    permit = await asyncio.wait_for(third, 2)
    assert permit.local is not None
    for held in (permit, shared[1]):
        held.release()
    await close_all(limiter)


async def test_after_a_restart_held_permits_are_registered_before_any_new_grant(redis_server: RedisServer) -> None:
    # A long lease: the heartbeat stays asleep, so only the probe can re-register.
    limiter = limiter_on(redis_server, limit=3, fallback_limit=4, lease_seconds=30, redis_timeout=0.2)
    held = [await limiter.acquire() for _ in range(2)]
    redis_server.kill()
    held.append(await asyncio.wait_for(limiter.acquire(), 2))
    assert held[-1].local is not None
    await asyncio.to_thread(redis_server.restart)  # empty
    await asyncio.sleep(1.1)  # the next probe is due
    fourth = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.5)
    # Three streams are open: Redis knows them, and grants no fourth.
    assert not fourth.done()
    monitor = redis.asyncio.Redis.from_url(redis_server.url)
    assert await monitor.zcard(keys("test")[0]) == 3
    held[0].release()
    held.append(await asyncio.wait_for(fourth, 3))
    assert held[-1].local is None
    for permit in held[1:]:
        permit.release()
    await settle(limiter)
    assert await monitor.zcard(keys("test")[0]) == 0
    await monitor.aclose()
    await close_all(limiter)


async def test_throttles_of_streams_admitted_around_an_outage_do_not_shrink_the_shared_limit(
    redis_server: RedisServer,
) -> None:
    limiter = limiter_on(redis_server, limit=4, fallback_limit=4, redis_timeout=0.2)
    (await limiter.acquire()).release()
    await settle(limiter)
    redis_server.kill()
    on_fallback = await asyncio.wait_for(limiter.acquire(), 2)
    assert on_fallback.local is not None
    await asyncio.to_thread(redis_server.restart)
    await asyncio.sleep(1.1)
    in_recovery = await asyncio.wait_for(limiter.acquire(), 2)
    assert in_recovery.local is None
    assert not limiter._fallback_active
    for permit in (on_fallback, in_recovery):
        permit.release("throttled")
    await settle(limiter)
    stats = await limiter.stats()
    assert stats.effective_limit == 4  # the limiter's own overshoot, not the quota's
    assert limiter.throttles_seen == 2
    await asyncio.sleep(2.0)  # past the recovery window: a throttle means the quota again
    (await limiter.acquire()).release("throttled")
    await settle(limiter)
    assert (await limiter.stats()).effective_limit == 3
    await close_all(limiter)
