"""``polly-stream limiter``: what a fleet's RedisLimiter holds, for a person.

    polly-stream limiter --redis redis://127.0.0.1:6379/0 --name polly-us-east-1

prints the holders by process (``host:pid``), the queue's length and the
effective limit (after AIMD), or the same as JSON with ``--json``. Read-only
apart from the clean-up every limiter script does (expired leases leave).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]

#: Without --limit the stored effective limit is shown as it is (no ceiling of ours).
_NO_CEILING = 1_000_000


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "limiter",
        help="show a fleet's RedisLimiter: holders by process, queue, effective limit",
        description="Show the state of a RedisLimiter shared through Redis (needs the [redis] extra).",
    )
    parser.add_argument("--redis", required=True, metavar="URL", help="redis://[user:password@]host:port/db")
    parser.add_argument("--name", required=True, help="the limiter's name (RedisLimiter(name=...))")
    parser.add_argument(
        "--limit", type=int, metavar="N", help="the configured limit, to show the effective one under it"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Exit 0 with the state printed, 2 for a bad argument, 5 when Redis does not answer or refuses us."""
    import asyncio

    from ..exceptions import LimiterError

    try:
        from ..limits import RedisLimiter

        limiter = RedisLimiter(args.redis, limit=args.limit or _NO_CEILING, name=args.name)
    except (ValueError, TypeError, ImportError) as exc:
        print(f"polly-stream limiter: {exc}", file=sys.stderr)
        return 2

    async def read() -> object:
        try:
            return await limiter.stats()
        finally:
            await limiter.aclose()

    try:
        stats = asyncio.run(read())
    except LimiterError as exc:
        print(f"polly-stream limiter: {exc}", file=sys.stderr)
        return 5
    from ..limits import LimiterStats

    assert isinstance(stats, LimiterStats)
    if stats.fallback_active:
        print(f"polly-stream limiter: Redis at {limiter._where} does not answer", file=sys.stderr)
        return 5
    effective: int | None = stats.effective_limit
    if args.limit is None and effective == _NO_CEILING:
        effective = None  # never throttled: each process's own limit applies
    if args.json:
        import json

        row = {
            "name": args.name,
            "holders": stats.holders,
            "waiters": stats.waiters,
            "effective_limit": effective,
            "throttles": stats.throttles,
            "holders_by_process": stats.holders_by_process,
        }
        print(json.dumps(row, indent=2))
        return 0
    shown = "the configured limit (never throttled)" if effective is None else str(effective)
    print(f"limiter {args.name!r} at {limiter._where}")
    print(f"holders {stats.holders}, waiting {stats.waiters}, effective limit {shown}, throttles {stats.throttles}")
    for process, count in sorted(stats.holders_by_process.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {process:<40} {count}")
    return 0
