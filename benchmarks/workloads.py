"""The workloads every client driver runs, so that all clients are measured alike.

Standard library only: drivers run under each client's own interpreter and
virtualenv (the peers on Python 3.13). A driver defines an ``Adapter`` and
calls :func:`main`; the result is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

SHORT_TEXT = "Hello there, how can I help you today?"


class Adapter(Protocol):
    async def start(self, args: argparse.Namespace) -> None:
        """Create the client (import it here, so cold start includes the import)."""

    def stream(self, text: str, args: argparse.Namespace) -> AsyncIterator[bytes]:
        """One synthesis: the audio chunks."""

    async def close(self) -> None: ...


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True, choices=("synth", "cold", "ttfa", "cpu", "throughput", "memory"))
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--key", default="AKIDEXAMPLE")
    p.add_argument("--secret", default="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--voice", default="Matthew")
    p.add_argument("--format", default="pcm")
    p.add_argument("--rate", default="16000")
    p.add_argument("--text", default=SHORT_TEXT)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--bytes", type=int, default=1024 * 1024)
    p.add_argument("--pool-size", type=int, default=8)
    p.add_argument("--presigned", help="floor only: the pre-signed requests")
    p.add_argument("--timeout", type=float, default=60.0)
    return p


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def _drain(adapter: Adapter, text: str, args: argparse.Namespace) -> int:
    size = 0
    async for chunk in adapter.stream(text, args):
        size += len(chunk)
    return size


async def _timed(adapter: Adapter, text: str, args: argparse.Namespace) -> float:
    started = time.perf_counter()
    first = 0.0
    async for _ in adapter.stream(text, args):
        if not first:
            first = time.perf_counter() - started
    return first


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "bases": [cls.__name__ for cls in type(exc).__mro__],
        "message": str(exc)[:300],
    }


async def _run(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    mode = args.mode
    await adapter.start(args)
    try:
        if mode == "synth":
            try:
                return {"bytes": await _drain(adapter, args.text, args), "error": None}
            except Exception as exc:
                return {"bytes": None, "error": _error(exc)}
        if mode == "cold":
            async for _ in adapter.stream(args.text, args):
                return {"first_byte_wall": time.time()}
            return {"first_byte_wall": None}
        if mode == "ttfa":
            for _ in range(min(20, args.n)):
                await _drain(adapter, args.text, args)
            samples = [await _timed(adapter, args.text, args) for _ in range(args.n)]
            median, p99 = _ms(statistics.median(samples)), _ms(_p99(samples))
            return {"samples": len(samples), "median_ms": median, "p99_ms": p99}
        if mode == "cpu":
            for _ in range(min(20, args.n)):
                await _drain(adapter, args.text, args)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.n):
                await _drain(adapter, args.text, args)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            return {"calls": args.n, "cpu_us_per_call": cpu / args.n * 1e6, "wall_us_per_call": wall / args.n * 1e6}
        if mode == "throughput":
            # Warm every pooled connection first: this measures streaming, not handshakes.
            await asyncio.gather(*(_drain(adapter, SHORT_TEXT, args) for _ in range(args.streams)))
            text = f"{{{{audio_bytes:{args.bytes}}}}} {SHORT_TEXT}"
            cpu, wall = time.process_time(), time.perf_counter()
            sizes = await asyncio.gather(*(_drain(adapter, text, args) for _ in range(args.streams)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            megabytes = sum(sizes) / 1e6
            return {
                "streams": args.streams,
                "mb": megabytes,
                "cpu_s": cpu,
                "wall_s": wall,
                "cpu_s_per_mb": cpu / megabytes,
            }
        if mode == "memory":
            return await _memory(adapter, args)
        raise ValueError(mode)
    finally:
        await adapter.close()


async def _memory(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    """RSS growth per idle pooled connection, then per stream held open on those connections."""
    await _drain(adapter, SHORT_TEXT, args)
    gc.collect()
    one_connection = rss_bytes()
    # N concurrent calls leave N idle connections in a pooled client.
    await asyncio.gather(*(_drain(adapter, SHORT_TEXT, args) for _ in range(args.streams)))
    gc.collect()
    idle = rss_bytes()
    release = asyncio.Event()
    opened = 0

    async def hold() -> None:
        nonlocal opened
        iterator = adapter.stream(SHORT_TEXT, args).__aiter__()
        await iterator.__anext__()
        opened += 1
        await release.wait()
        async for _ in iterator:
            pass

    tasks = [asyncio.create_task(hold()) for _ in range(args.streams)]
    while opened < args.streams:
        await asyncio.sleep(0.01)
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    gc.collect()
    held = rss_bytes()
    release.set()
    await asyncio.gather(*tasks)
    return {
        "streams": args.streams,
        "rss_per_open_stream_kb": (held - idle) / args.streams / 1024,
        "rss_per_idle_connection_kb": (idle - one_connection) / max(1, args.streams - 1) / 1024,
    }


def _ms(seconds: float) -> float:
    return seconds * 1000


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(adapter: Adapter) -> None:
    args = parser().parse_args()
    result = asyncio.run(asyncio.wait_for(_run(adapter, args), args.timeout))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
