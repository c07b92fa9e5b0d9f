"""A worker process of the fleet tests: a RedisLimiter shared through Redis, run in a subprocess.

python fleet_worker.py streams REDIS_URL NAME LIMIT ENDPOINT CA COUNT CONCURRENCY
    runs COUNT streams (CONCURRENCY at once) against the emulator, each held
    open ~0.2 s, and prints a JSON summary.
python fleet_worker.py hold REDIS_URL NAME LIMIT LEASE N
    takes N permits, prints "held", and sleeps (to be SIGKILLed).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.limits import RedisLimiter
from support import KEY, SECRET


async def _slow_text() -> AsyncIterator[str]:
    yield "Hello there."
    await asyncio.sleep(0.2)


async def streams(url: str, name: str, limit: int, endpoint: str, ca: str, count: int, concurrency: int) -> None:
    limiter = RedisLimiter(url, limit=limit, name=name, wait_timeout=60)
    client = PollyStreamingClient(
        region="us-east-1",
        endpoint_url=endpoint,
        verify=ca,
        credentials=(KEY, SECRET),
        limiter=limiter,
        pool_size=concurrency,
    )
    waits: list[float] = []
    failures: list[str] = []
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            try:
                async with client.open_stream(voice_id="Matthew", output_format="pcm") as stream:
                    async for text in _slow_text():
                        await stream.send(text)
                    await stream.close_input()
                    async for _ in stream:
                        pass
                waits.append(stream.metrics.admission_wait or 0.0)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    stats = await limiter.stats()
    await client.close()
    await limiter.aclose()
    print(json.dumps({"waits": waits, "failures": failures, "fallbacks": stats.fallbacks}))


async def hold(url: str, name: str, limit: int, lease: float, count: int) -> None:
    limiter = RedisLimiter(url, limit=limit, name=name, lease_seconds=lease)
    permits = [await limiter.acquire() for _ in range(count)]
    print("held", len(permits), flush=True)
    await asyncio.sleep(3600)


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "streams":
        url, name, limit, endpoint, ca, count, concurrency = args
        asyncio.run(streams(url, name, int(limit), endpoint, ca, int(count), int(concurrency)))
    else:
        url, name, limit, lease, count = args
        asyncio.run(hold(url, name, int(limit), float(lease), int(count)))


if __name__ == "__main__":
    main()
