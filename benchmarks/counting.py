"""Instructions per stream under Valgrind's callgrind: a CPU figure that holds still on a busy machine.

CPU time per stream moves by 10-15 % between processes running the same code
on a shared machine (other work, frequency, caches); the number of
instructions a process executes for the same streams does not. Each count
runs one client process of the scan workload (``--mode scan``: N
conversations at once, each repeating the short utterance) under
``valgrind --tool=callgrind``, against the run's emulator, which runs
natively in its own process: only the client is counted.

What is counted is the scan's measured window alone, the same window whose
CPU time the timed scan reports: the driver marks its start and its end by
calling ``getppid`` (``workloads.count_mark``), and ``--dump-before=getppid``
makes callgrind write its counts and zero them at each mark. The second dump
holds the window: interpreter start-up, imports, TLS handshakes, warm-up
calls and shut-down fall in the first and the last. Dividing by the calls in
the window gives instructions per stream. (Counting a run of K streams and
one of 2K and subtracting would cancel the same fixed costs, at twice the
runs and with start-up's own variation in the difference.)

The wall clock that dates ours' requests stands still in the counted
process (``--fixed-clock``): under callgrind the second would turn over
about 50 times as often per stream as at full speed, and each new second
signs the request afresh (and puts a new date in HPACK's table), so the
count would depend on how fast valgrind ran, that is on the machine's load.
``PYTHONHASHSEED=0`` fixes the layout of every dict and set, so that the
same streams take the same instructions in every process. What still moves
is how the responses happen to be split into reads, so the counted client
runs at nice 10 and on one CPU with the emulator's processes (pinned there
while counting): it runs only when the emulator has nothing to do, so each
response is whole when it reads it, on a quiet machine as on a busy one.
Two runs agree within about 0.3 % (``--count-repeat 2`` shows the spread).

The client runs about 50 times slower under callgrind while the emulator
does not, so every response is waiting when the client reads: the count is
that of a client that is the bottleneck, which is the case a CPU figure is
about.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clients import FLOOR, OURS, Client
from report import fmt

#: callgrind's options: one dump at each mark, every file readable on its own.
_CALLGRIND = ["--tool=callgrind", "--dump-before=getppid", "--compress-strings=no", "--compress-pos=no"]
#: The counted client yields the CPU to the emulator: responses are then whole when it reads them, and the
#: number of reads per stream (each with its own cost) varies less with what else the machine runs.
_NICE = ["nice", "-n", "10"] if shutil.which("nice") else []


def _shared_cpu() -> int | None:
    """The CPU the counted client and the emulator share while counting, or None where that cannot be set."""
    if not hasattr(os, "sched_setaffinity") or shutil.which("taskset") is None:
        return None
    return max(os.sched_getaffinity(0))


@contextlib.contextmanager
def _emulator_on(cpu: int | None, pids: list[int]) -> Iterator[None]:
    """The emulator's processes on ``cpu`` alone while counting, so that the client (at nice 10, on the same
    CPU) runs only when the emulator has nothing to do, on a quiet machine as on a busy one: each response is
    whole when the client reads it. Without it, a client with a CPU of its own reads responses in more pieces
    on a quiet machine than on a busy one (at N = 1, about 2 % more instructions, the floor's too)."""
    saved = {}
    if cpu is not None:
        for pid in pids:
            try:
                saved[pid] = os.sched_getaffinity(pid)
                os.sched_setaffinity(pid, {cpu})
            except OSError:
                pass
    try:
        yield
    finally:
        for pid, cpus in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, cpus)


#: A directory to keep callgrind's files in (one folder per count), for ``callgrind_top.py``.
KEEP_ENV = "POLLY_BENCH_CALLGRIND_DIR"
#: Warm-up calls per conversation before the window (each conversation's first opens its connection).
_WARMUP = 2


def valgrind() -> str | None:
    return shutil.which("valgrind")


def _totals(path: Path) -> int | None:
    """The instruction count of a callgrind output file (its ``totals:`` or ``summary:`` line)."""
    found = None
    with path.open() as file:
        for line in file:
            if line.startswith(("totals:", "summary:")):
                found = int(line.split()[1])
    return found


def count_once(runner: Any, client: Client, loop: str, conversations: int, calls: int) -> dict[str, Any]:
    """One client process under callgrind: ``{"instructions_per_stream", "calls", ...}`` or ``{"error"}``."""
    tool = valgrind()
    if tool is None:
        return {"error": "valgrind is not installed"}
    per = max(1, calls // conversations)
    keep = os.environ.get(KEEP_ENV)
    scratch = Path(tempfile.mkdtemp(prefix=f"{client.kind}-{loop}-{conversations}-", dir=keep))
    try:
        cpu = _shared_cpu()
        pinned = [] if cpu is None else ["taskset", "-c", str(cpu)]
        wrapper = [*pinned, *_NICE, tool, *_CALLGRIND, f"--callgrind-out-file={scratch}/callgrind.%p"]
        result = runner.drive(
            client,
            "scan",
            600 + 0.5 * per * conversations,
            wrapper=wrapper,
            env={"PYTHONHASHSEED": "0"},
            streams=conversations,
            n=per,
            warmup=_WARMUP,
            pool_size=conversations,
            loop=loop,
            fixed_clock=1,
        )
        if result.get("error"):
            return {"error": result["error"]}
        parts = sorted(scratch.glob("callgrind.*.*"))
        if len(parts) != 2:
            return {"error": f"expected the window's two marks, callgrind dumped {len(parts)} times before the end"}
        window = _totals(next(path for path in parts if path.name.endswith(".2")))
        if not window:
            return {"error": "no instruction total in callgrind's output"}
        streams = int(result["calls"])
        return {"instructions": window, "calls": streams, "instructions_per_stream": window / streams}
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def count(runner: Any, pair: list[Client], repeat: int = 1) -> list[dict[str, Any]]:
    """Instructions per stream of ours and the floor at each of ``counts.count_levels``, on asyncio and uvloop.

    With ``repeat`` > 1 each figure is counted that many times (in fresh
    processes) and the spread between them is reported: it shows that the
    figure holds still.
    """
    counts = runner.counts
    loops = ["asyncio"] + ([] if runner.uvloop_error else ["uvloop"])
    levels = [(loop, n) for loop in loops for n in counts.count_levels]
    if not levels:
        return []
    runner.log(
        f"instruction counts under callgrind: N = {', '.join(str(n) for n in counts.count_levels)} on "
        f"{' and '.join(loops)}, {counts.count_calls} calls per process, ours and the floor"
    )
    out = []
    with _emulator_on(_shared_cpu(), [int(pid) for pid in runner.emulator.pids.split(",") if pid]):
        for loop, conversations in levels:
            out.append(_count_level(runner, pair, loop, conversations, repeat))
    return out


def _count_level(runner: Any, pair: list[Client], loop: str, conversations: int, repeat: int) -> dict[str, Any]:
    """Ours and the floor at one loop and N, each counted ``repeat`` times."""
    row: dict[str, Any] = {"loop": loop, "conversations": conversations}
    for client in pair:
        runs = [count_once(runner, client, loop, conversations, runner.counts.count_calls) for _ in range(repeat)]
        good = [run["instructions_per_stream"] for run in runs if not run.get("error")]
        side: dict[str, Any] = {"runs": runs}
        errors = [run["error"] for run in runs if run.get("error")]
        if errors:
            side["error"] = errors[0]
        if good:
            side["instructions_per_stream"] = sum(good) / len(good)
            side["spread"] = (max(good) - min(good)) / min(good)
        row[client.name] = side
    ours, floor = row.get(OURS, {}), row.get(FLOOR, {})
    a, b = ours.get("instructions_per_stream"), floor.get("instructions_per_stream")
    ratio = f"{a / b:.3f}x" if a and b else "-"
    runner.log(f"  {loop} N={conversations}: instructions/stream ours {fmt(a)}, floor {fmt(b)} ({ratio})")
    return row
