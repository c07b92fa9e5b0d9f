"""Where our client spends its CPU in the benchmark's CPU workloads, and A/B checks of changes.

    python benchmarks/profile_ours.py                     # py-spy profiles: workloads 4 and 5, the scan
    python benchmarks/profile_ours.py --compare /tmp/src  # CPU of this checkout vs another src/ tree
    python benchmarks/profile_ours.py --compare floor     # ... vs the raw h2 floor
    python benchmarks/profile_ours.py --compare floor --concurrency 64   # ... 64 conversations at once
    python benchmarks/profile_ours.py --floor --loop uvloop --workloads scan   # the floor, on uvloop

Profiles run our driver (``client_ours.py``) under py-spy (``pip install
py-spy``) against the emulator in its own process, exactly as ``run.py`` does,
and print the top functions by self and inclusive time. Only samples inside
the event loop count (start-up and imports are left out; the few warm-up calls
stay in), and time spent waiting in epoll is shown apart, as it is not CPU.

``--compare`` runs this checkout and the other tree (a copy of ``src/``
with a change applied, or ``floor``) in one process, taking turns in blocks
(``ab_driver.py``), and prints the median of the rounds' ratios: fresh
processes of the same code differ by 10-25 % on this kind of machine, the
rounds of one process by a few.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from clients import COUNTS, FLOOR, HERE, OURS, SRC, Client, client_env
from harness import Emulator, Runner, presign
from run import bootstrap
from workloads import DEFAULT_KEY, SHORT_TEXT, bulk_text

_IDLE = ("select (selectors.py", "poll (selectors.py")
#: In the loop: below ``asyncio.Runner.run``; uvloop's own frames are native, so with it the
#: callbacks sit right under that frame, and a sample whose leaf is that frame waits in epoll.
_IN_LOOP = "run (asyncio/runners.py"
_IMPORTING = "(<frozen importlib._bootstrap>"


#: Per workload: its title, the figure that ``--compare`` reads, the driver's options.
Workload = tuple[str, str, list[str]]


def _workloads(calls: int, streams: int, size: int) -> dict[str, Workload]:
    per_conversation = str(max(4, calls // streams))
    scan = ["--mode", "scan", "--streams", str(streams), "--n", per_conversation, "--pool-size", str(streams)]
    bulk = ["--mode", "throughput", "--streams", str(streams), "--bytes", str(size), "--pool-size", str(streams)]
    return {
        "cpu": ("CPU per short utterance (workload 4)", "cpu_us_per_call", ["--mode", "cpu", "--n", str(calls)]),
        "scan": (f"{streams} conversations at once, short utterances (the scan)", "cpu_us_per_stream", scan),
        "bulk": (
            f"{streams} concurrent streams x {size / 1e6:g} MB PCM (workload 5)",
            "cpu_s_per_mb",
            [*bulk, "--rounds", "3"],
        ),
    }


def _frame(raw: str) -> tuple[str, str]:
    """("function (file)", component) of a py-spy frame "function (package/file.py:line)"."""
    name, _, location = raw.partition(" (")
    parts = location.rstrip(")").rsplit(":", 1)[0].split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    component = parts[0].removesuffix(".py")
    if component == "amazon_polly_streaming":
        component = "ours"
    elif component.startswith("<frozen"):
        component = "import"
    return f"{name} ({parts[-1]})", component


def summarize(raw_file: Path, top: int) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    components: collections.Counter[str] = collections.Counter()
    busy = idle = 0
    for line in raw_file.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        # Inside the event loop (no start-up), not importing (lazy first-call imports).
        if not stack or _IN_LOOP not in stack or _IMPORTING in stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in (*_IDLE, _IN_LOOP)):
            idle += count
            continue
        busy += count
        leaf, component = _frame(frames[-1])
        self_time[leaf] += count
        components[component] += count
        for name in {_frame(frame)[0] for frame in frames}:
            inclusive[name] += count
    if not busy:
        return "  no samples in the event loop"
    lines = [f"  {busy} busy samples in the event loop; waiting in epoll: {idle} more (not CPU)"]
    lines.append("  by component (self time): " + ", ".join(f"{k} {v / busy:.0%}" for k, v in components.most_common()))
    lines.append("  top self time:")
    lines += [f"    {100 * v / busy:5.1f}%  {k}" for k, v in self_time.most_common(top)]
    lines.append("  top inclusive time (without the driver and the event loop):")
    skip = ("workloads.py", "events.py", "base_events.py", "runners.py", "client_ours.py", "tasks.py")
    shown = [(k, v) for k, v in inclusive.most_common() if not k.endswith(tuple(f"({s})" for s in skip))]
    lines += [f"    {100 * v / busy:5.1f}%  {k}" for k, v in shown[:top]]
    return "\n".join(lines)


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _driver(emulator: Emulator, src: Path, args: argparse.Namespace, scratch: Path) -> tuple[list[str], dict[str, str]]:
    if args.floor:
        client = Client(FLOOR, "floor", sys.executable, "client_floor.py", "", "")
    else:
        client = Client(OURS, "ours", sys.executable, "client_ours.py", "amazon_polly_streaming", "")
    env = client_env(client)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(src)])
    command = [sys.executable, str(HERE / client.driver), "--endpoint", emulator.endpoint_url, "--ca", emulator.ca_file]
    command += ["--key", DEFAULT_KEY, "--timeout", "600", "--loop", args.loop]
    if args.floor:
        presigned = scratch / "presigned.json"
        presign(emulator, [SHORT_TEXT, bulk_text(args.bytes)], presigned)
        command += ["--presigned", str(presigned)]
    return command, env


def _chosen(args: argparse.Namespace) -> list[Workload]:
    workloads = _workloads(args.calls, args.streams, args.bytes)
    return [workloads[name] for name in args.workloads.split(",")]


def profile(emulator: Emulator, args: argparse.Namespace, scratch: Path) -> int:
    py_spy = _py_spy()
    if py_spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    command, env = _driver(emulator, args.src, args, scratch)
    for title, _, options in _chosen(args):
        raw = scratch / "profile.txt"
        spy = [py_spy, "record", "--rate", "997", "--format", "raw", "--output", str(raw), "--"]
        out = subprocess.run([*spy, *command, *options], env=env, capture_output=True, text=True, check=False)
        print(f"\n{title}:")
        if out.returncode != 0 or not raw.exists():
            print(f"  py-spy failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        result = [line for line in out.stdout.splitlines() if line.startswith("{")]  # py-spy talks on stdout too
        print(f"  driver result: {result[-1][:300] if result else '?'}")
        print(summarize(raw, args.top))
    return 0


def compare(emulator: Emulator, args: argparse.Namespace, scratch: Path) -> int:
    """This checkout against ``--compare`` (a ``src/`` tree, or ``floor``), both in one process taking turns
    (``ab_driver.py``): the median over ``--reps`` rounds of each's CPU per short utterance, and their ratio."""
    other = "floor" if str(args.compare) == "floor" else str(args.compare.resolve())
    with Runner(emulator, COUNTS["full"]) as runner:
        result = runner.taking_turns(
            str(args.src.resolve()),
            other,
            loop=args.loop,
            conversations=args.concurrency,
            rounds=args.reps,
            block=args.block,
        )
    if result.get("error"):
        print(result["error"], file=sys.stderr)
        return 1
    shape = "in turn" if args.concurrency == 1 else f"{args.concurrency} at once"
    rounds = f"{args.reps} rounds of {args.block} calls each ({shape})"
    print(f"CPU per short utterance on {args.loop}, {rounds}, in one process:")
    print(f"  this checkout  {result['a_us_per_call']:8.1f} us (median)")
    change = f"{result['b_over_a'] - 1:+.1%}, median of the rounds' ratios"
    print(f"  {other[-40:]:14} {result['b_us_per_call']:8.1f} us ({change})")
    print(f"  rounds' ratios: {', '.join(f'{r:.3f}' for r in result['ratios'])}")
    return 0


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--calls", type=int, default=3000, help="sequential short utterances (default 3000)")
    options.add_argument("--streams", type=int, default=64)
    options.add_argument("--bytes", type=int, default=1024 * 1024, help="audio per bulk stream")
    options.add_argument("--top", type=int, default=20)
    options.add_argument("--src", type=Path, default=SRC, help="the src/ tree to profile (default this checkout)")
    options.add_argument(
        "--compare", type=Path, help="another src/ tree, or 'floor': A/B its CPU against this checkout's"
    )
    options.add_argument("--reps", type=int, default=10, help="A/B rounds (default 10)")
    options.add_argument("--block", type=int, default=200, help="A/B: calls per block (default 200)")
    options.add_argument(
        "--concurrency", type=int, default=1, help="A/B: conversations at once in each block (default 1: in turn)"
    )
    options.add_argument("--workloads", default="cpu,scan,bulk", help="which of cpu, scan, bulk (default all)")
    options.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the client's event loop")
    options.add_argument("--floor", action="store_true", help="profile the raw h2 floor instead of ours")
    args = options.parse_args()
    bootstrap()
    emulator = Emulator()
    try:
        # What the runs write (a signed request, py-spy's samples) is removed with this, whatever happens.
        with tempfile.TemporaryDirectory(prefix="polly-profile-") as scratch:
            run = compare if args.compare else profile
            return run(emulator, args, Path(scratch))
    finally:
        emulator.close()


if __name__ == "__main__":
    sys.exit(main())
