"""The workloads every client driver runs, so that all clients are measured alike.

Standard library only: drivers run under each client's own interpreter and
virtualenv (the peers on Python 3.12+). A driver defines an ``Adapter`` and
calls :func:`main`; the result is one JSON object on the last line of stdout.

Modes (``--mode``):

* ``synth``: one synthesis of ``--text``; ``{"bytes": N, "error": null}`` or
  ``{"bytes": null, "error": {...}}`` (used by the interop tests).
* ``cold``: the wall-clock time (``time.time()``) of the first audio byte of
  one call in a fresh process; the harness started the clock before spawning.
* ``ttfa``: warm time to first audio, ``--n`` sequential calls on a pooled
  connection after ``--warmup`` calls.
* ``cpu``: process CPU time over ``--n`` sequential calls after warm-up.
* ``throughput``: ``--streams`` concurrent streams of ``--bytes`` audio each,
  ``--rounds`` times, on connections warmed beforehand.
* ``scan``: ``--streams`` conversations at once, each repeating the short
  utterance ``--n`` times after ``--warmup`` calls (which open its
  connection): client CPU per stream, time to first audio of every call, and
  streams per second; with ``--server-pids``, the servers' CPU time over the
  same window, read from ``/proc``, and what else kept the machine busy.
* ``memory``: RSS growth per idle pooled connection, freshly opened, then
  per stream held open on those warm connections, then per idle connection
  again after each carried ``--bytes`` of audio; ``memory-fresh``: RSS growth per stream held
  open in a fresh process, its connection included.

``--loop uvloop`` runs any mode on uvloop instead of asyncio's default loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

#: The short utterance of the TTFA and CPU workloads (about 73 KB of 16 kHz PCM in tone mode).
SHORT_TEXT = "Hello there, how can I help you today?"
#: The emulator's default key pair (the AWS documentation's example).
DEFAULT_KEY = "AKIDEXAMPLE"
DEFAULT_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#: A response of exactly one small AudioEvent, for streams held open in the memory workload.
HOLD_TEXT = "{{audio_bytes:3200}} Hi."


def bulk_text(size: int) -> str:
    """Text whose tone-mode response is exactly ``size`` bytes of audio."""
    return f"{{{{audio_bytes:{size}}}}} {SHORT_TEXT}"


class Adapter(Protocol):
    async def start(self, args: argparse.Namespace) -> None:
        """Create the client (import it here, so that cold start includes the import)."""

    def stream(self, text: str, args: argparse.Namespace) -> AsyncIterator[bytes]:
        """One synthesis: the audio chunks."""

    async def close(self) -> None: ...


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark / interop driver for one client.")
    modes = ("synth", "cold", "ttfa", "cpu", "throughput", "scan", "memory", "memory-fresh")
    p.add_argument("--mode", required=True, choices=modes)
    p.add_argument("--endpoint", required=True, help="https://host:port of the emulator")
    p.add_argument("--ca", required=True, help="CA bundle that signed the emulator's certificate")
    p.add_argument("--key", default=DEFAULT_KEY, help="access key id (exported as AWS_ACCESS_KEY_ID)")
    p.add_argument("--secret", default=DEFAULT_SECRET, help="secret key (exported as AWS_SECRET_ACCESS_KEY)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--voice", default="Matthew")
    p.add_argument("--format", default="pcm")
    p.add_argument("--rate", default="16000")
    p.add_argument("--text", default=SHORT_TEXT)
    p.add_argument("--n", type=int, default=100, help="calls (ttfa, cpu)")
    p.add_argument("--warmup", type=int, default=20, help="calls before measuring (ttfa, cpu)")
    p.add_argument("--streams", type=int, default=64, help="concurrent streams (throughput, memory)")
    p.add_argument("--bytes", type=int, default=1024 * 1024, help="audio bytes per stream (throughput)")
    p.add_argument("--rounds", type=int, default=1, help="measured rounds (throughput)")
    p.add_argument("--pool-size", type=int, default=8)
    p.add_argument("--presigned", help="the floor only: the requests the harness signed for it")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole run")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the event loop to run on")
    p.add_argument("--server-pids", default="", help="scan: comma-separated server processes whose CPU to read")
    p.add_argument(
        "--fixed-clock",
        type=int,
        default=0,
        help="1: the wall clock that dates requests stands still (instruction counts; clients that sign only)",
    )
    return p


def export_credentials(args: argparse.Namespace) -> None:
    """Every client reads its credentials from the environment, as in production."""
    os.environ["AWS_ACCESS_KEY_ID"] = args.key
    os.environ["AWS_SECRET_ACCESS_KEY"] = args.secret
    os.environ.pop("AWS_SESSION_TOKEN", None)


def rss_bytes() -> int | None:
    """Resident set size now (Linux), or None where /proc is missing.

    Garbage is collected and free heap memory handed back to the system
    first (glibc's ``malloc_trim``), so that the figure is what live objects
    hold, not what the allocator kept from earlier work: without it, the
    figure after bulk audio varies by a third from run to run.
    """
    gc.collect()
    _trim_heap()
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU time the whole machine has spent busy so far, all CPUs together (Linux), or None."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait is busy.
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def open_sockets() -> int | None:
    """How many sockets this process holds (Linux), or None."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    count = 0
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def count_mark() -> None:
    """Mark the start and the end of a measured window for an instruction count.

    Under ``valgrind --tool=callgrind --dump-before=getppid`` every call
    writes the counts so far and zeroes them, so the window's instructions
    are the second dump's alone: start-up, imports, TLS handshakes, warm-up
    and shut-down fall in the others. ``getppid`` because nothing on an
    event loop's path calls it, and libc exports it under that name, so the
    mark works whatever the interpreter's build; outside valgrind it costs a
    system call.
    """
    os.getppid()


async def _drain(adapter: Adapter, text: str, args: argparse.Namespace) -> int:
    size = 0
    async for chunk in adapter.stream(text, args):
        size += len(chunk)
    return size


async def _timed(adapter: Adapter, text: str, args: argparse.Namespace) -> float:
    """Seconds from the call to its first audio byte (the stream is then read to its end)."""
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


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _run(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    await adapter.start(args)
    try:
        return await _measure(adapter, args)
    finally:
        await adapter.close()


async def _measure(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    mode = args.mode
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
        for _ in range(args.warmup):
            await _drain(adapter, args.text, args)
        samples = [await _timed(adapter, args.text, args) for _ in range(args.n)]
        return {
            "samples": len(samples),
            "median_ms": statistics.median(samples) * 1000,
            "p99_ms": _p99(samples) * 1000,
            "min_ms": min(samples) * 1000,
        }
    if mode == "cpu":
        for _ in range(args.warmup):
            await _drain(adapter, args.text, args)
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.n):
            await _drain(adapter, args.text, args)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {"calls": args.n, "cpu_us_per_call": cpu / args.n * 1e6, "wall_us_per_call": wall / args.n * 1e6}
    if mode == "throughput":
        return await _throughput(adapter, args)
    if mode == "scan":
        return await _scan(adapter, args)
    if mode == "memory":
        return await _memory(adapter, args)
    if mode == "memory-fresh":
        return await _memory_fresh(adapter, args)
    raise ValueError(mode)


async def _throughput(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    # Open (and warm) every connection first: this measures streaming, not handshakes.
    await asyncio.gather(*(_drain(adapter, SHORT_TEXT, args) for _ in range(args.streams)))
    text = bulk_text(args.bytes)
    rounds = []
    for _ in range(args.rounds):
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        sizes = await asyncio.gather(*(_drain(adapter, text, args) for _ in range(args.streams)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        megabytes = sum(sizes) / 1e6
        if sum(sizes) != args.streams * args.bytes:
            raise RuntimeError(f"expected {args.streams * args.bytes} audio bytes, got {sum(sizes)}")
        rounds.append({"cpu_s": cpu, "wall_s": wall, "cpu_s_per_mb": cpu / megabytes})
    return {
        "streams": args.streams,
        "mb": args.streams * args.bytes / 1e6,
        "rounds": rounds,
        "cpu_s_per_mb": statistics.median(r["cpu_s_per_mb"] for r in rounds),
        "wall_s": statistics.median(r["wall_s"] for r in rounds),
    }


async def _scan(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    """``--streams`` conversations at once, each repeating the short utterance."""

    async def conversation(calls: int, samples: list[float]) -> None:
        for _ in range(calls):
            samples.append(await _timed(adapter, args.text, args))

    warm: list[float] = []
    await asyncio.gather(*(conversation(max(1, args.warmup), warm) for _ in range(args.streams)))
    pids = [int(pid) for pid in args.server_pids.split(",") if pid]
    gc.collect()
    servers = [cpu_seconds_of(pid) for pid in pids]
    machine = machine_busy_seconds()
    samples: list[float] = []
    count_mark()
    gc_before = [stat["collections"] for stat in gc.get_stats()]
    gc_spent = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_spent[1] = time.process_time()
        else:
            gc_spent[0] += time.process_time() - gc_spent[1]

    gc.callbacks.append(on_gc)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    times, cpu, wall = os.times(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(conversation(args.n, samples) for _ in range(args.streams)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    times_after = os.times()
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    gc.callbacks.remove(on_gc)
    gc_after = [stat["collections"] for stat in gc.get_stats()]
    count_mark()
    machine_after = machine_busy_seconds()
    after = [cpu_seconds_of(pid) for pid in pids]
    server_cpu = [b - a if a is not None and b is not None else None for a, b in zip(servers, after, strict=True)]
    others = None
    if machine is not None and machine_after is not None and None not in server_cpu:
        # Whatever else ran on the machine meanwhile, in CPUs: the noise in these figures.
        others = max(0.0, machine_after - machine - cpu - sum(server_cpu)) / wall  # type: ignore[arg-type]
    calls = len(samples)
    return {
        "conversations": args.streams,
        "calls": calls,
        "cpu_us_per_stream": cpu / calls * 1e6,
        # The split between the process's own code and the kernel's work for it (system calls, TLS sockets).
        "user_us_per_stream": (times_after.user - times.user) / calls * 1e6,
        "system_us_per_stream": (times_after.system - times.system) / calls * 1e6,
        "ttfa_median_ms": statistics.median(samples) * 1000,
        "ttfa_p99_ms": _p99(samples) * 1000,
        # Garbage collections by generation over the window, and the CPU they took per stream.
        "gc_collections": [b - a for a, b in zip(gc_before, gc_after, strict=True)],
        "gc_us_per_stream": gc_spent[0] / calls * 1e6,
        # How often the process slept (waiting for the server) and was preempted, per stream.
        "sleeps_per_stream": (usage_after.ru_nvcsw - usage.ru_nvcsw) / calls,
        "preempted_per_stream": (usage_after.ru_nivcsw - usage.ru_nivcsw) / calls,
        "streams_per_s": calls / wall,
        "wall_s": wall,
        "client_cpu_share": cpu / wall,
        # Each server's CPU time over the window, as a share of the wall time: near 1.0 it was saturated.
        "server_cpu_shares": [None if s is None else s / wall for s in server_cpu],
        "server_cpu_us_per_stream": None if None in server_cpu else sum(server_cpu) / calls * 1e6,  # type: ignore[arg-type]
        "other_load_cpus": others,
    }


async def _hold(adapter: Adapter, args: argparse.Namespace) -> int | None:
    """Open ``--streams`` streams at once, each held after its first audio chunk; the RSS then."""
    release = asyncio.Event()
    opened = 0

    async def hold() -> None:
        nonlocal opened
        iterator = adapter.stream(HOLD_TEXT, args).__aiter__()
        await iterator.__anext__()
        opened += 1
        await release.wait()
        async for _ in iterator:
            pass

    tasks = [asyncio.create_task(hold()) for _ in range(args.streams)]
    try:
        while opened < args.streams:
            await asyncio.sleep(0.005)
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        gc.collect()
        return rss_bytes()
    finally:
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _memory_fresh(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    """RSS growth per concurrently open stream in a fresh process, its connection included.

    After one call (one connection, everything imported), ``--streams``
    streams are opened at once and held: a pooled client opens a connection
    for each but the first, a multiplexing one shares.
    """
    await _drain(adapter, SHORT_TEXT, args)
    gc.collect()
    rss_one = rss_bytes()
    rss_held = await _hold(adapter, args)
    per_stream = None
    if rss_held is not None and rss_one is not None:
        per_stream = (rss_held - rss_one) / args.streams / 1024
    return {"streams": args.streams, "rss_per_stream_fresh_kb": per_stream}


async def _memory(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    """RSS growth per idle pooled connection, fresh and after bulk audio, and per stream held open.

    Fresh idle connections: ``--streams`` concurrent calls of a one-event
    response (3.2 KB of audio) leave that many idle connections in a pooled
    client (a client that multiplexes streams on one connection opens fewer;
    the sockets are counted). Open streams: as many calls again, each holding
    its stream after the first audio chunk. Then each of those connections
    carries ``--bytes`` of audio, all at once, and goes idle again: a bulk
    read fills the whole of a TLS transport's read buffer (asyncio's is
    256 KiB per connection), which small reads leave mostly untouched, so
    an idle connection that once streamed costs more than a fresh one.
    Memory that earlier calls freed is reused, so the open-stream figure is
    the steady-state cost of a stream in a busy process; ``memory-fresh``
    gives the first-time cost.
    """
    sockets_before = open_sockets()
    await _drain(adapter, HOLD_TEXT, args)
    gc.collect()
    rss_one = rss_bytes()
    sockets_one = open_sockets()
    await asyncio.gather(*(_drain(adapter, HOLD_TEXT, args) for _ in range(args.streams)))
    gc.collect()
    rss_idle = rss_bytes()
    sockets_idle = open_sockets()

    rss_held = await _hold(adapter, args)
    text = bulk_text(args.bytes)
    await asyncio.gather(*(_drain(adapter, text, args) for _ in range(args.streams)))
    gc.collect()
    rss_bulk = rss_bytes()
    sockets_bulk = open_sockets()

    connections = None
    if sockets_idle is not None and sockets_before is not None:
        connections = sockets_idle - sockets_before

    def per_connection(rss: int | None, sockets: int | None) -> float | None:
        if rss is None or rss_one is None or sockets is None or sockets_one is None or sockets <= sockets_one:
            return None
        return (rss - rss_one) / (sockets - sockets_one) / 1024

    per_stream = None
    if rss_held is not None and rss_idle is not None:
        per_stream = (rss_held - rss_idle) / args.streams / 1024
    return {
        "streams": args.streams,
        "connections_opened": connections,
        "rss_per_idle_connection_kb": per_connection(rss_idle, sockets_idle),
        "rss_per_idle_connection_after_bulk_kb": per_connection(rss_bulk, sockets_bulk),
        "rss_per_open_stream_kb": per_stream,
    }


def main(adapter: Adapter) -> None:
    args = parser().parse_args()
    export_credentials(args)
    loop_factory = None
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(asyncio.wait_for(_run(adapter, args), args.timeout))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
