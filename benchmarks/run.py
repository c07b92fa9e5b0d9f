"""Benchmark this client against the raw h2 floor and the other Python clients for Polly streaming.

    python benchmarks/run.py              # everything, peers included (installed on the first run)
    python benchmarks/run.py --quick      # the same with small counts (a few minutes)
    python benchmarks/run.py --smoke      # seconds: ours and the floor, tiny counts (CI)
    python benchmarks/run.py --counts-only  # instructions per stream under callgrind only (minutes)

Any Python 3.11+ will do: when the interpreter lacks the emulator's and the
floor's packages, the script installs them into a cached virtualenv
(``.bench-venvs/``) and re-runs itself there. It measures the checkout's
``src/``, not an installed copy.

The emulator runs in its own process (``--emulator-processes N``: several
sharing one port) in as-fast-as-possible mode with pre-rendered tone audio
(speech synthesis is not measured). Every client runs every workload in fresh
processes of its own interpreter: ours and the floor under this Python, the
peers (amazon-polly-streaming 1.1.0 and aws-sdk-polly with awscrt, from PyPI)
in their own Python 3.12+ virtualenvs. CPU figures are the client process's
CPU time only. Bytecode is cached for every client alike
(``PYTHONPYCACHEPREFIX`` under ``.bench-venvs/``), as an installed package
would have it.

Workloads: (1) import time, ``-X importtime`` cumulative, median of 15 fresh
processes; (2) cold start: spawning a process to its first audio byte,
credentials from the environment, TLS included, median of 10; (3) warm time
to first audio of a short utterance on a pooled connection, median and p99 of
500; (4) client CPU per short utterance over 1,000 sequential calls; (3) and
(4) again on uvloop for ours and the floor; (5) 64 concurrent streams of
1 MiB of 16 kHz PCM: client CPU per MB and wall time, median of 3 rounds;
(6) RSS growth per idle pooled connection, freshly opened and again after it
carried 1 MiB of audio, per stream held open on a warm pool, and per stream
with its connection in a fresh process; (7) the concurrency scan, ours and
the floor only: N = 1, 16, 64 and 256 conversations at once (pool_size = N),
each repeating the short utterance, 2,048 calls per process, on asyncio, and
N = 1 and 64 on uvloop: client CPU per stream, time to first audio p50/p99
and streams per second, with each emulator process's CPU time over the same
window (it shows whether the emulator kept up) and what else kept the
machine busy meanwhile; then, at each level of the scan, ours and the floor
in the same processes, taking turns in blocks (``ab_driver.py``, rounds in ABBA
order spread over 4 processes: 96 rounds of 160 calls at N=1, fewer of 8 calls
per conversation above, at least 16; the median of all the rounds' ratios): a
fresh process lands in a faster or slower mode and stays there, so only rounds
that share a process hold still enough to judge a timed CPU target on, short
rounds let the median shed a burst of the host's noise, and a few processes
keep one process's mode from deciding it; then ours at N = 64 against 1 and 2
emulator processes; (8) the sans-IO codec alone; (9) instructions per stream under
Valgrind's callgrind, ours and the floor at N = 1 and 64 on both loops, the
scan's measured window only (``counting.py`` says how): CPU time moves by
10-15 % between processes of the same code, the counts by well under 1 %,
so the CPU-per-stream targets are judged on them; (10) the phrase cache: time
to first audio and CPU per call of a memory hit, a Redis hit (a private
``redis-server`` on loopback, when one is on PATH) and a miss beside an
uncached call, and RSS after many distinct phrases under a 16 MiB bound
(``cache_speed.py``). Ours and the floor run (3), (4) and
each row of (7) in 5 interleaved processes, taking turns in ABBA order, and report the median, as this
kind of machine drifts; the peers, at tens of times the floor, run once.
Prints a table (medians, p99, ratios to the floor and to ours), the scan's
table and the targets met or missed, and writes everything (samples
included) as JSON.

``--smoke`` also runs a few seconds of the fleet benchmark (``fleet.py``:
worker processes sharing one account's concurrency quota, with and without
a limiter); run ``fleet.py`` for its full figures.

``profile_ours.py`` profiles our client (or the floor) in workloads (4), (5)
and the scan, on either loop, and A/B tests a change.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
for _path in (str(SRC), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from clients import COUNTS, FLOOR, OURS, ROOT, Client  # noqa: E402
from counting import count, valgrind  # noqa: E402
from harness import Emulator, Runner  # noqa: E402
from peers import PEERS, ensure_requirements, ensure_venv, find_python, installed_version, python_version  # noqa: E402
from report import machine, render, render_counts, targets  # noqa: E402

OUR_MIN_PYTHON = (3, 11)
#: What ours, the floor and the emulator import, beyond the standard library.
_NEEDED = ("h2", "cryptography", "numpy", "soundfile", "espeakng_loader")
_BOOTSTRAPPED = "POLLY_BENCH_BOOTSTRAPPED"


# --------------------------------------------------------------------------- setup


def _missing_modules() -> list[str]:
    import importlib.util

    return [name for name in _NEEDED if importlib.util.find_spec(name) is None]


def _requirements() -> list[str]:
    """The package's runtime and emulator requirements, from pyproject.toml."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    uvloop = [spec for spec in extras["test"] if spec.startswith("uvloop")]  # for the uvloop rows
    return [*project["dependencies"], *extras["emulator"], *extras["redis"], *uvloop]  # redis: fleet, cache


def bootstrap() -> None:
    """Re-run the script under an interpreter that has what ours, the floor and the emulator need."""
    script = os.path.abspath(sys.argv[0])
    if sys.version_info >= OUR_MIN_PYTHON and not _missing_modules():
        return
    if os.environ.get(_BOOTSTRAPPED):
        raise SystemExit(f"still missing after installing: {', '.join(_missing_modules())}")
    python = sys.executable if sys.version_info >= OUR_MIN_PYTHON else find_python(OUR_MIN_PYTHON)
    if python is None:
        raise SystemExit("the benchmark needs Python 3.11+ (none found; set POLLY_PEER_PYTHON to one)")
    if sys.version_info < OUR_MIN_PYTHON:  # tomllib needs 3.11: let that interpreter do the rest
        os.execv(python, [python, script, *sys.argv[1:]])  # noqa: S606 - a fixed argument list
    major, minor = python_version(python) or (0, 0)
    interpreter = ensure_requirements(f"ours-py{major}.{minor}", _requirements(), python)
    print(f"re-running under {interpreter}", file=sys.stderr, flush=True)
    arguments = [str(interpreter), script, *sys.argv[1:]]
    os.execve(str(interpreter), arguments, {**os.environ, _BOOTSTRAPPED: "1"})  # noqa: S606 - a fixed argument list


# --------------------------------------------------------------------------- main


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = options.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="a few seconds: ours and the floor, tiny counts (CI)")
    size.add_argument("--quick", action="store_true", help="small counts, peers included")
    options.add_argument("--skip-peers", action="store_true", help="do not install or run the other clients")
    options.add_argument("--json", default=str(HERE / "results.json"), help="where to write the results")
    options.add_argument(
        "--emulator-processes",
        type=int,
        help="emulator processes sharing the port (default: 1 on 2 CPUs or fewer, else one per CPU but the "
        "client's, at most 4)",
    )
    options.add_argument("--emulator-loop", choices=("asyncio", "uvloop"), default="asyncio")
    options.add_argument(
        "--counts-only",
        action="store_true",
        help="only the instruction counts under callgrind (ours and the floor), e.g. to check a change",
    )
    options.add_argument(
        "--count-repeat", type=int, default=1, help="count each figure this many times, to see that it holds still"
    )
    args = options.parse_args()
    bootstrap()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    counts = COUNTS[mode]
    began = time.monotonic()

    from amazon_polly_streaming import __version__

    ours_python = sys.executable
    clients = [
        Client(OURS, "ours", ours_python, "client_ours.py", "amazon_polly_streaming", f"checkout {__version__}"),
        Client(FLOOR, "floor", ours_python, "client_floor.py", "asyncio,ssl,h2.connection", "h2 " + _h2_version()),
    ]
    notes: list[str] = []
    if args.smoke:
        notes.append("smoke run: counts too small for the figures to mean anything; it shows that the harness works")
    if args.smoke:
        notes.append("smoke run: instruction counts skipped (callgrind takes minutes); run.py --counts-only runs them")
    elif valgrind() is None:
        notes.append("valgrind is not installed: the instruction counts are skipped")
    if args.counts_only:
        return counts_only(args, clients, counts)
    if not (args.smoke or args.skip_peers):
        python = find_python()
        if python is None:
            notes.append("peers skipped: no Python 3.12+ found (set POLLY_PEER_PYTHON)")
        else:
            for peer in PEERS:
                try:
                    interpreter = str(ensure_venv(peer, python))
                except (OSError, subprocess.SubprocessError) as exc:
                    notes.append(f"{peer.name} skipped: installing it failed ({exc})")
                    continue
                version = installed_version(interpreter, peer.distribution) or "?"
                clients.append(Client(peer.name, "peer", interpreter, peer.driver, peer.module, version))
    for note in notes:
        print(note, file=sys.stderr)
    python_versions = {c.name: ".".join(map(str, python_version(c.python) or ("?",))) for c in clients}

    load_before = _load_average()
    cpus = os.cpu_count() or 1
    # The client needs a CPU of its own; the emulator spends more per stream than the client.
    processes = args.emulator_processes or (1 if cpus <= 2 else min(4, cpus - 1))
    emulator = Emulator(processes, args.emulator_loop)
    try:
        with Runner(emulator, counts) as runner:
            if runner.uvloop_error:
                notes.append(runner.uvloop_error)
            runner.log(f"emulator at {emulator.endpoint_url}; clients: {', '.join(c.name for c in clients)}")
            results = runner.run(clients)
            scan = runner.scan(clients[:2])
            turns = runner.in_turns()
            counted = not args.smoke and valgrind() is not None
            instructions = count(runner, clients[:2], args.count_repeat) if counted else []
            top = max(n for n in counts.scan_levels if n <= 64)
            check = None if args.smoke else runner.emulator_check(clients[0], top)
            codec = runner.codec(clients[0])
            cache = runner.cache(clients[0])
    finally:
        emulator.close()
    fleet = None
    if args.smoke:
        from fleet import run_fleet

        fleet = run_fleet("smoke", notes)
    for name, row in results.items():
        row["python_version"] = python_versions[name]
    report = {
        "machine": {**machine(), "load_average_before": load_before, "load_average_after": _load_average()},
        "mode": mode,
        "counts": asdict(counts),
        "clients": results,
        "scan": scan,
        "turns": turns,
        "instructions": instructions,
        "emulator": {"processes": processes, "loop": args.emulator_loop},
        "emulator_check": check,
        "codec": codec,
        "fleet": fleet,
        "cache": cache,
        "targets": targets(results, codec, scan, instructions, cache, turns),
        "notes": notes,
        "seconds": round(time.monotonic() - began, 1),
    }
    table = render(report) + ("\n\n" + fleet["table"] if fleet else "")
    report["table"] = table
    print(table)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}", file=sys.stderr)
    broken = [name for name in (OURS, FLOOR) if results[name]["errors"]] + (["codec"] if "error" in codec else [])
    broken += [f"cache {mode}" for mode, row in cache.items() if "error" in row]
    broken += [
        f"scan {row['loop']} N={row['conversations']}"
        for row in scan
        if row[OURS].get("error") or row[FLOOR].get("error")
    ]
    broken += [f"turns {row['loop']} N={row['conversations']}" for row in turns if row.get("error")]
    broken += [
        f"instructions {row['loop']} N={row['conversations']}"
        for row in instructions
        if row[OURS].get("error") or row[FLOOR].get("error")
    ]
    if fleet is not None:
        broken += [f"fleet {arm}" for arm, row in fleet["arms"].items() if row.get("errors")]
    if broken:
        print(f"failed: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


def counts_only(args: argparse.Namespace, clients: list[Client], counts: Any) -> int:
    """Only the instruction counts, printed as their table."""
    if valgrind() is None:
        print("valgrind is not installed", file=sys.stderr)
        return 2
    load_before = _load_average()
    emulator = Emulator(args.emulator_processes or 1, args.emulator_loop)
    try:
        with Runner(emulator, counts if counts.count_levels else COUNTS["quick"]) as runner:
            rows = count(runner, clients, args.count_repeat)
    finally:
        emulator.close()
    report = {"instructions": rows, "scan": [], "turns": [], "counts": asdict(runner.counts)}
    print("\n".join(render_counts(report)))
    print(f"\nload average {_load_average()} after, {load_before} before (instruction counts do not depend on it)")
    broken = [row for row in rows if row[OURS].get("error") or row[FLOOR].get("error")]
    return 1 if broken else 0


def _load_average() -> float | None:
    """The 1-minute load average: figures taken while other work runs on the machine are noise."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _h2_version() -> str:
    import h2

    return str(h2.__version__)


if __name__ == "__main__":
    sys.exit(main())
