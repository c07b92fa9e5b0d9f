"""Fleet benchmark: worker processes sharing one account's concurrency quota, with and without a limiter.

    python benchmarks/fleet.py            # the full run (about three minutes)
    python benchmarks/fleet.py --smoke    # seconds: smaller fleet, no fault runs (CI)

One emulator process (``--max-active-streams 26``: a quota belongs to one
emulator process, so the fleet is never split among several) paces every
stream to one second of audio (``--real-time-factor 1``, tone audio). 4
worker processes (``fleet_member.py``) run 12 conversations each: 48
conversations that always want to speak, against a quota of 26. Three arms,
one after another in the same run, each with ``retries=3``: no limiter,
``LocalLimiter(6)`` per process, ``RedisLimiter(limit=26)`` on a redis-server
this script starts (free loopback port, persistence off, removed at the end).

Per arm, over a measured window after a warm-up: streams throttled (the
emulator's count), turns failed, the quota's utilisation (the emulator's
time-weighted open streams / 26), admission wait p50/p99, and the spread of
completed turns between processes (max/min). Then, with ``RedisLimiter``:
the uncontended admission time per stream against one Redis PING, and two
fault runs: one worker SIGKILLed while it holds permits (seconds until the
quota is in use again, against the lease time), and Redis stopped for 5 s
mid-run (turns failed and streams throttled meanwhile). Prints a table and
the targets MET or MISSED; writes everything as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parent / "src"), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from clients import OURS, Client, client_env  # noqa: E402
from fleet_report import arm_figures, fault_figures, overhead_figures, render, targets  # noqa: E402
from harness import Emulator  # noqa: E402
from peers import stop_process  # noqa: E402

ARMS = ("none", "local", "redis")


@dataclass(frozen=True)
class Shape:
    workers: int
    conversations: int  # per worker
    limit: int  # the emulator's quota, and the RedisLimiter's limit
    local_limit: int  # LocalLimiter per process
    warmup: float  # seconds before the measured window
    window: float  # seconds measured
    overhead_turns: int  # uncontended streams for the admission overhead
    faults: bool  # the SIGKILL and Redis outage runs
    outage: float = 5.0  # seconds Redis is stopped


SHAPES = {
    "full": Shape(4, 12, 26, 6, 4.0, 20.0, 300, True),
    "smoke": Shape(2, 4, 6, 2, 1.5, 2.0, 20, False),
}


class RedisServer:
    """A redis-server on a free loopback port, persistence off, in a temporary directory removed at close."""

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self._dir = tempfile.TemporaryDirectory(prefix="polly-fleet-redis-")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        import redis

        command = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", self._dir.name, "--logfile", ""]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError), redis.Redis(port=self.port, socket_timeout=1) as conn:
                conn.ping()
                return
            time.sleep(0.02)
        raise SystemExit(f"redis-server did not start on port {self.port}")

    def command_calls(self) -> dict[str, int]:
        """Calls of each command so far (INFO commandstats)."""
        import redis

        with redis.Redis(port=self.port, socket_timeout=2) as conn:
            stats = conn.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


class Fleet:
    def __init__(self, shape: Shape, emulator: Emulator, redis: RedisServer | None) -> None:
        self.shape = shape
        self.emulator = emulator
        self.redis = redis
        self.began = time.monotonic()
        self._env = client_env(Client(OURS, "ours", sys.executable, "fleet_member.py", "", ""))
        self._runs = 0
        self._name = ""  # the RedisLimiter's, one per run

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f} s] {message}", file=sys.stderr, flush=True)

    def _worker(self, arm: str, *options: str) -> subprocess.Popen[str]:
        shape = self.shape
        limit = shape.local_limit if arm == "local" else shape.limit
        command = [sys.executable, str(HERE / "fleet_member.py"), "--arm", arm, "--limit", str(limit)]
        command += ["--endpoint", self.emulator.endpoint_url, "--ca", self.emulator.ca_file]
        command += ["--conversations", str(shape.conversations), "--name", self._name]
        if self.redis is not None:
            command += ["--redis", self.redis.url]
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - the worker's stderr, read when it ends
        process = subprocess.Popen(
            [*command, *options], stdout=subprocess.PIPE, stderr=stderr, text=True, env=self._env
        )
        process.stderr_file = stderr  # type: ignore[attr-defined]
        return process

    @staticmethod
    def _result(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        stderr = process.stderr_file  # type: ignore[attr-defined]
        stderr.seek(0)
        detail = stderr.read().decode(errors="replace").strip().splitlines()
        stderr.close()
        lines = out.strip().splitlines()
        if process.returncode != 0 or not lines:
            return {"error": (detail or [f"exit status {process.returncode}"])[-1][:300]}
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def run(self, arm: str, *, kill_at: float | None = None, outage_at: float | None = None) -> dict[str, Any]:
        """One fleet run of ``arm``; with ``kill_at`` or ``outage_at`` (seconds into the window), a fault."""
        shape = self.shape
        self._runs += 1
        self._name = f"fleetbench-{os.getpid()}-{self._runs}"
        start = time.time() + 3.0  # every worker imports and connects meanwhile
        window = (start + shape.warmup, start + shape.warmup + shape.window)
        times = ["--start-at", f"{start:.3f}", "--stop-at", f"{window[1] + 0.5:.3f}"]
        workers = [self._worker(arm, *times) for _ in range(shape.workers)]
        readings: dict[str, Any] = {}
        fault: dict[str, Any] = {}
        samples: list[tuple[float, int, int]] = []
        try:
            _sleep_until(window[0])
            readings["start"] = self.emulator.quota()
            if kill_at is not None or outage_at is not None:
                watch = threading.Thread(target=self._watch, args=(samples, window[1]), daemon=True)
                watch.start()
            if kill_at is not None:
                _sleep_until(window[0] + kill_at)
                fault = self._kill(workers)
            if outage_at is not None:
                fault = self._outage(window[0] + outage_at)
            _sleep_until(window[1])
            readings["end"] = self.emulator.quota()
        finally:
            results = [self._result(worker, shape.window + 90) for worker in workers]
        fault["samples"] = samples
        return {"arm": arm, "window": window, "quota": readings, "workers": results, "fault": fault}

    def _kill(self, workers: list[subprocess.Popen[str]]) -> dict[str, Any]:
        """SIGKILL the worker that holds the most permits now."""
        held = self._holders_by_pid()
        victim = max(workers, key=lambda worker: held.get(worker.pid, 0))
        victim.send_signal(signal.SIGKILL)
        return {"killed_at": time.time(), "permits_held": held.get(victim.pid, 0)}

    def _holders_by_pid(self) -> dict[int, int]:
        """The permits each process holds, as the fleet's Redis has them (``RedisLimiter.stats()``)."""
        import asyncio

        from amazon_polly_streaming.limits import RedisLimiter

        assert self.redis is not None
        limiter = RedisLimiter(self.redis.url, limit=self.shape.limit, name=self._name)

        async def read() -> dict[str, int]:
            try:
                return (await limiter.stats()).holders_by_process
            finally:
                await limiter.aclose()

        by_process = asyncio.run(read())
        return {int(label.rsplit(":", 1)[1]): count for label, count in by_process.items()}

    def _watch(self, samples: list[tuple[float, int, int]], until: float) -> None:
        """The emulator's open streams and throttles so far, every 50 ms until ``until``."""
        while time.time() < until:
            quota = self.emulator.quota()
            samples.append((time.time(), quota["active"], quota["throttled"]))
            time.sleep(0.05)

    def _outage(self, at: float) -> dict[str, Any]:
        assert self.redis is not None
        _sleep_until(at)
        stopped = time.time()
        self.redis.stop()
        _sleep_until(stopped + self.shape.outage)
        self.redis.start()
        # The limiter's way back (re-registering holders after the restart) counts as part of the outage.
        return {"stopped_at": stopped, "restarted_at": time.time(), "until": time.time() + 2.0}

    def overhead(self) -> dict[str, Any]:
        """Uncontended streams one after another with ``RedisLimiter``: admission time against a PING."""
        assert self.redis is not None
        turns = self.shape.overhead_turns
        before = self.redis.command_calls()
        worker = self._worker("redis", "--mode", "overhead", "--turns", str(turns), "--conversations", "1")
        result = self._result(worker, 60 + turns * 0.5)
        after = self.redis.command_calls()
        # What each stream cost Redis, by command (the PINGs and this INFO aside; the limiter's setup included).
        calls = {name: (n - before.get(name, 0)) / turns for name, n in after.items() if name not in ("ping", "info")}
        result["commands_per_stream"] = {name: round(n, 2) for name, n in calls.items() if n}
        return result


def _sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.time()))


def run_fleet(mode: str, log_notes: list[str] | None = None) -> dict[str, Any]:
    """The whole fleet benchmark (``mode``: full or smoke); its report, the table under ``"table"``."""
    shape = SHAPES[mode]
    notes: list[str] = []
    limits_ok = importlib.util.find_spec("amazon_polly_streaming.limits") is not None
    if not limits_ok:
        notes.append("amazon_polly_streaming.limits is missing: the limiter arms and fault runs are skipped")
    binary = shutil.which("redis-server")
    if binary is None:
        notes.append("redis-server is not installed (Debian: apt-get install redis-server): the Redis arm is skipped")
    elif importlib.util.find_spec("redis") is None:
        binary = None
        notes.append("redis-py is not installed (pip install 'redis>=5'): the Redis arm is skipped")
    options = ("--max-active-streams", str(shape.limit), "--real-time-factor", "1")
    emulator = Emulator(1, "asyncio", options)
    redis = RedisServer(binary) if binary and limits_ok else None
    began = time.monotonic()
    report: dict[str, Any] = {"mode": mode, "shape": asdict(shape), "arms": {}, "notes": notes}
    try:
        fleet = Fleet(shape, emulator, redis)
        for arm in ARMS:
            if (arm != "none" and not limits_ok) or (arm == "redis" and redis is None):
                continue
            fleet.log(
                f"arm {arm}: {shape.workers} processes x {shape.conversations} conversations, quota {shape.limit}"
            )
            report["arms"][arm] = arm_figures(fleet.run(arm), shape.limit)
        if redis is not None:
            fleet.log(f"uncontended admission: {shape.overhead_turns} streams one after another")
            report["overhead"] = fleet.overhead()
            report["overhead_figures"] = overhead_figures(report["overhead"])
            if shape.faults:
                fleet.log("fault: one worker SIGKILLed while it holds permits")
                report["kill"] = fault_figures(fleet.run("redis", kill_at=shape.window / 4), shape.limit)
                fleet.log(f"fault: Redis stopped for {shape.outage:g} s")
                report["outage"] = fault_figures(fleet.run("redis", outage_at=shape.window / 4), shape.limit)
    finally:
        emulator.close()
        if redis is not None:
            redis.close()
    report["seconds"] = round(time.monotonic() - began, 1)
    report["targets"] = targets(report)
    report["table"] = render(report)
    if log_notes is not None:
        log_notes.extend(notes)
    return report


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--smoke", action="store_true", help="seconds: a smaller fleet, no fault runs")
    options.add_argument("--json", default=str(HERE / "fleet-results.json"), help="where to write the results")
    args = options.parse_args()
    report = run_fleet("smoke" if args.smoke else "full")
    print(report["table"])
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}", file=sys.stderr)
    errors = [f"{arm}: {e}" for arm, row in report["arms"].items() for e in row.get("errors", [])]
    if errors:
        print("failed: " + "; ".join(errors), file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
