"""Workload 9: the phrase cache (run by ``run.py`` in fresh processes; or alone, see below).

* ``--mode rows``: time to first audio (median, p99) and client CPU per call
  of the short utterance, side by side: no cache; a miss (RedisCache: a GET
  that misses, the Polly stream, the SET); a Redis hit (a RedisCache whose
  local LRU holds nothing, so every call reads Redis over loopback); a memory
  hit (MemoryCache). Time to first audio runs from the call to its first
  chunk in the caller's hands. The Redis rows need ``redis-server`` on PATH
  (a private one is started on a free port) and the ``redis`` package.
* ``--mode rss``: RSS growth (after collecting garbage and trimming the
  heap) of a process that spoke ``--phrases`` distinct phrases through a
  ``MemoryCache(max_bytes=--max-bytes)``, against the same process before.

    python benchmarks/cache_speed.py              # both, against an emulator of its own

The result is one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parent / "src"), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from workloads import DEFAULT_KEY, DEFAULT_SECRET, SHORT_TEXT, rss_bytes  # noqa: E402

#: Audio per phrase of the RSS workload: 8 KiB of PCM, so that thousands of
#: entries (and their per-entry overhead) compete for the bound.
RSS_PHRASE_BYTES = 8192
#: Untimed calls before each row: the first calls of a process pay for its
#: connection and for code run the first time.
WARM = 10


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A private ``redis-server`` on a free loopback port (nothing written to disk), or None without one."""
    binary = shutil.which("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        binary = None
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(10)


def _client(args: argparse.Namespace, cache: Any) -> Any:
    from amazon_polly_streaming import PollyStreamingClient

    return PollyStreamingClient(
        args.region,
        endpoint_url=args.endpoint,
        verify=args.ca,
        credentials=(DEFAULT_KEY, DEFAULT_SECRET),
        cache=cache,
    )


async def _row(client: Any, texts: list[str], warm: list[str]) -> dict[str, Any]:
    """Speak ``warm`` (untimed), then each of ``texts``: TTFA per call and CPU per call."""

    async def one(text: str) -> float:
        started = time.perf_counter()
        ttfa = 0.0
        async for _ in client.start_speech_synthesis_stream(
            text=text, voice_id="Matthew", output_format="pcm", sample_rate="16000"
        ):
            if not ttfa:
                ttfa = time.perf_counter() - started
        return ttfa

    for text in warm:
        await one(text)
    cpu = time.process_time()
    samples = [await one(text) for text in texts]
    cpu = time.process_time() - cpu
    samples.sort()
    return {
        "calls": len(samples),
        "ttfa_median_ms": statistics.median(samples) * 1000,
        "ttfa_p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
        "cpu_us_per_call": cpu / len(samples) * 1e6,
    }


async def rows(args: argparse.Namespace) -> dict[str, Any]:
    from amazon_polly_streaming.cache import MemoryCache, RedisCache

    calls, hits = args.calls, args.calls * 4
    distinct = [f"{SHORT_TEXT} ({n})" for n in range(calls + WARM)]
    out: dict[str, Any] = {}
    plain = _client(args, None)
    try:
        out["no cache"] = await _row(plain, distinct[WARM:], distinct[:WARM])
    finally:
        await plain.close()
    memory = _client(args, MemoryCache())
    try:
        out["memory hit"] = await _row(memory, [SHORT_TEXT] * hits, [SHORT_TEXT] * WARM)
    finally:
        await memory.close()
    with redis_server() as url:
        if url is None:
            out["redis"] = "skipped: no redis-server on PATH or no redis package"
            return out
        # local_bytes=1: nothing fits the local LRU, so every hit is read from Redis.
        remote = RedisCache(url, local_bytes=1, timeout=1.0)
        client = _client(args, remote)
        try:
            out["miss (Redis)"] = await _row(
                client, [f"{t}!" for t in distinct[WARM:]], [f"{t}!" for t in distinct[:WARM]]
            )
            out["Redis hit"] = await _row(client, [SHORT_TEXT] * hits, [SHORT_TEXT] * WARM)
            out["redis_errors"] = remote.stats().errors
        finally:
            await client.close()
            await remote.aclose()
    return out


async def rss(args: argparse.Namespace) -> dict[str, Any]:
    from amazon_polly_streaming.cache import MemoryCache

    cache = MemoryCache(max_bytes=args.max_bytes)
    client = _client(args, cache)
    try:

        async def speak(text: str, **options: Any) -> None:
            async for _ in client.start_speech_synthesis_stream(
                text=text, voice_id="Matthew", output_format="pcm", sample_rate="16000", **options
            ):
                pass

        for n in range(5):  # the connection, the code paths and their caches, outside the cache
            await speak(f"{{{{audio_bytes:{RSS_PHRASE_BYTES}}}}} warm-up {n}", cache=False)
        before = rss_bytes()
        for n in range(args.phrases):
            await speak(f"{{{{audio_bytes:{RSS_PHRASE_BYTES}}}}} Phrase number {n}.")
        after = rss_bytes()
    finally:
        await client.close()
    stats = cache.stats()
    growth = None if before is None or after is None else after - before
    return {
        "phrases": args.phrases,
        "phrase_audio_bytes": RSS_PHRASE_BYTES,
        "max_bytes": args.max_bytes,
        "rss_growth_bytes": growth,
        "cache_bytes": stats.bytes,
        "entries": stats.entries,
        "evictions": stats.evictions,
    }


def _standalone(args: argparse.Namespace) -> dict[str, Any]:
    """Both modes, each in a fresh process, against an emulator of their own."""
    from harness import Emulator

    emulator = Emulator(1, "asyncio")
    try:
        result = {}
        for mode in ("rows", "rss"):
            command = [sys.executable, __file__, "--mode", mode, "--endpoint", emulator.endpoint_url]
            command += ["--ca", emulator.ca_file, "--calls", str(args.calls), "--phrases", str(args.phrases)]
            command += ["--max-bytes", str(args.max_bytes)]
            out = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
            result[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        emulator.close()


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--mode", choices=("rows", "rss"))
    options.add_argument("--endpoint", help="https://host:port of the emulator (with --mode)")
    options.add_argument("--ca", help="its CA bundle")
    options.add_argument("--region", default="us-east-1")
    options.add_argument("--calls", type=int, default=500, help="calls per row (hits: 4 times as many)")
    options.add_argument("--phrases", type=int, default=10_000, help="distinct phrases of the RSS workload")
    options.add_argument("--max-bytes", type=int, default=16 * 2**20, help="the RSS workload's MemoryCache bound")
    args = options.parse_args()
    if args.mode is None:
        result = _standalone(args)  # both modes, in processes of their own
    elif args.mode == "rows":
        result = asyncio.run(rows(args))
    else:
        result = asyncio.run(rss(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
