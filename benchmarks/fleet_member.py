"""One process of the fleet benchmark: ``--conversations`` conversations, each speaking turn after turn.

    python benchmarks/fleet_member.py --mode fleet --arm redis --redis URL --endpoint URL --ca CA \\
        --start-at T --stop-at T

Modes: ``fleet`` runs the conversations from ``--start-at`` to ``--stop-at``
(wall clock, so that every process of the fleet starts together) and reports
every turn (start, end, outcome) and every admission wait; ``overhead`` runs
``--turns`` short streams one after another, uncontended, each after one
Redis PING, and reports how long each admission and each PING took. Arms:
``none`` (no limiter), ``local`` (``LocalLimiter(--limit)``), ``redis``
(``RedisLimiter(--redis, limit=--limit, name=--name)``). The client retries
``--retries`` attempts in every arm. Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.exceptions import PollyStreamingError

#: One second of 16 kHz PCM (a tone) per turn; the emulator paces it (--real-time-factor 1).
TURN_TEXT = "{{audio_bytes:32000}} Hello there."
#: The overhead workload's turn: 10 ms of audio.
SHORT_TURN_TEXT = "{{audio_bytes:320}} Hi."


class TimedLimiter:
    """The arm's limiter, seen from the client: it records how long each admission waited."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        #: (when it was admitted, wall clock; seconds it waited)
        self.waits: list[tuple[float, float]] = []

    async def acquire(self) -> Any:
        began = time.perf_counter()
        permit = await self.inner.acquire()
        self.waits.append((time.time(), time.perf_counter() - began))
        return permit


def make_limiter(args: argparse.Namespace) -> Any:
    if args.arm == "none":
        return None
    from amazon_polly_streaming.limits import LocalLimiter, RedisLimiter

    if args.arm == "local":
        return LocalLimiter(args.limit)
    return RedisLimiter(args.redis, limit=args.limit, name=args.name)


async def _turn(client: PollyStreamingClient, text: str) -> str | None:
    """One turn: None when it was heard to the end, else the error's type."""
    try:
        async for _chunk in client.start_speech_synthesis_stream(
            text=text, voice_id="Matthew", output_format="pcm", sample_rate="16000"
        ):
            pass
    except PollyStreamingError as exc:
        return type(exc).__name__
    return None


async def _conversation(client: PollyStreamingClient, stop_at: float, turns: list[list[Any]]) -> None:
    while time.time() < stop_at:
        began = time.time()
        error = await _turn(client, TURN_TEXT)
        turns.append([began, time.time(), error])


async def fleet(args: argparse.Namespace, client: PollyStreamingClient) -> dict[str, Any]:
    turns: list[list[Any]] = []
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    tasks = [asyncio.create_task(_conversation(client, args.stop_at, turns)) for _ in range(args.conversations)]
    # Turns under way at the stop are cut short (cancelled): only whole turns are reported.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), max(0.1, args.stop_at - time.time()))
    return {"turns": turns}


async def overhead(args: argparse.Namespace, client: PollyStreamingClient) -> dict[str, Any]:
    import redis.asyncio

    pings: list[float] = []
    errors = 0
    async with redis.asyncio.Redis.from_url(args.redis) as connection:
        for _ in range(args.turns):
            began = time.perf_counter()
            await connection.ping()
            pings.append(time.perf_counter() - began)
            errors += await _turn(client, SHORT_TURN_TEXT) is not None
    return {"pings": pings, "errors": errors}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    inner = make_limiter(args)
    limiter = None if inner is None else TimedLimiter(inner)
    options: dict[str, Any] = {} if limiter is None else {"limiter": limiter}
    client = PollyStreamingClient(
        "us-east-1",
        pool_size=args.conversations,
        endpoint_url=args.endpoint,
        verify=args.ca,
        retries=args.retries,
        **options,
    )
    try:
        result = await (fleet if args.mode == "fleet" else overhead)(args, client)
        if limiter is not None:
            result["waits"] = limiter.waits
            with contextlib.suppress(Exception):  # the stats are extra; Redis may be down
                stats = await asyncio.wait_for(inner.stats(), 5)
                result["limiter"] = {k: v for k, v in vars(stats).items() if k != "holders_by_process"}
            result["lease_seconds"] = getattr(inner, "lease_seconds", None)
    finally:
        await client.close()
        if hasattr(inner, "aclose"):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(inner.aclose(), 5)
    result["pid"] = os.getpid()
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("fleet", "overhead"), default="fleet")
    p.add_argument("--arm", choices=("none", "local", "redis"), required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--redis", default="", help="redis://host:port/0 (arm redis, mode overhead)")
    p.add_argument("--name", default="fleetbench", help="the RedisLimiter's name")
    p.add_argument("--limit", type=int, default=26)
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--conversations", type=int, default=12)
    p.add_argument("--turns", type=int, default=200, help="overhead: streams one after another")
    p.add_argument("--start-at", type=float, default=0.0, help="fleet: wall-clock time to start")
    p.add_argument("--stop-at", type=float, default=0.0, help="fleet: wall-clock time to stop")
    return p


if __name__ == "__main__":
    arguments = parser().parse_args()
    deadline = max(60.0, arguments.stop_at - time.time() + 60)
    output = asyncio.run(asyncio.wait_for(main(arguments), deadline))
    sys.stdout.write(json.dumps(output) + "\n")
