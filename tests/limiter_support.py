"""Helpers of the RedisLimiter tests: a limiter on the test's server, waiting for its background work."""

from __future__ import annotations

import asyncio

from amazon_polly_streaming.limits import RedisLimiter
from redis_server import RedisServer

__all__ = ["close_all", "limiter_on", "settle"]


def limiter_on(server: RedisServer, **options: object) -> RedisLimiter:
    options.setdefault("limit", 2)
    options.setdefault("name", "test")
    return RedisLimiter(server.url, **options)  # type: ignore[arg-type]


async def settle(*limiters: RedisLimiter) -> None:
    """Let background releases and leaves reach Redis."""
    for limiter in limiters:
        for link in list(limiter._links.values()):
            if link.tasks:
                await asyncio.wait(list(link.tasks), timeout=2)


async def close_all(*limiters: RedisLimiter) -> None:
    for limiter in limiters:
        await limiter.aclose()
