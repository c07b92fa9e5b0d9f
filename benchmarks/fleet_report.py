"""The fleet benchmark's figures, targets and table, from the runs' raw results (``fleet.py``)."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from typing import Any

from report import fmt, render_targets

ARM_LABELS = {"none": "no limiter", "local": "LocalLimiter per process", "redis": "RedisLimiter"}


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _within(turns: list[list[Any]], start: float, end: float) -> list[list[Any]]:
    """The turns that ended in [start, end]."""
    return [turn for turn in turns if start <= turn[1] <= end]


def arm_figures(run: dict[str, Any], limit: int) -> dict[str, Any]:
    start, end = run["window"]
    good = [worker for worker in run["workers"] if "error" not in worker]
    errors = [worker["error"] for worker in run["workers"] if "error" in worker]
    turns = [_within(worker["turns"], start, end) for worker in good]
    completed = [sum(1 for turn in mine if turn[2] is None) for mine in turns]
    failures: dict[str, int] = {}
    for mine in turns:
        for turn in mine:
            if turn[2] is not None:
                failures[turn[2]] = failures.get(turn[2], 0) + 1
    waits = [wait * 1000 for worker in good for at, wait in worker.get("waits", []) if start <= at <= end]
    quota = run["quota"]
    figures: dict[str, Any] = {"errors": errors, "raw": run}
    if "start" in quota and "end" in quota:
        first, last = quota["start"], quota["end"]
        figures["throttled"] = last["throttled"] - first["throttled"]
        figures["utilisation"] = (last["stream_seconds"] - first["stream_seconds"]) / (
            limit * (last["at"] - first["at"])
        )
        figures["peak_active"] = last["peak"]
    seconds = end - start
    slowest = min(completed, default=0)
    figures.update(
        turns_completed=sum(completed),
        turns_failed=sum(failures.values()),
        failures=failures,
        turns_per_s_by_process=[round(n / seconds, 2) for n in completed],
        spread=max(completed) / slowest if slowest else None,
        wait_p50_ms=_quantile(waits, 0.5),
        wait_p99_ms=_quantile(waits, 0.99),
        admissions=len(waits),
        fallbacks=sum(worker.get("limiter", {}).get("fallbacks", 0) for worker in good),
        limiter_throttles=sum(worker.get("limiter", {}).get("throttles", 0) for worker in good) if good else None,
        lease_seconds=next((worker.get("lease_seconds") for worker in good if worker.get("lease_seconds")), None),
    )
    return figures


def _per_second(workers: list[dict[str, Any]], since: float, first: int = -2, last: int = 12) -> list[int]:
    """Turns completed in each second from ``first`` to ``last`` seconds after ``since``."""
    counts = [0] * (last - first + 1)
    for worker in workers:
        for _began, ended, error in worker.get("turns", []):
            second = int((ended - since) // 1) - first
            if error is None and 0 <= second < len(counts):
                counts[second] += 1
    return counts


def _throttles_per_second(samples: list[list[float]], since: float, first: int = -2, last: int = 12) -> list[int]:
    """Streams the emulator throttled in each second from ``first`` to ``last`` seconds after ``since``."""
    counts = [0] * (last - first + 1)
    for (_, _, before), (at, _, after) in itertools.pairwise(samples):
        second = int((at - since) // 1) - first
        if 0 <= second < len(counts):
            counts[second] += int(after - before)
    return counts


def fault_figures(run: dict[str, Any], limit: int) -> dict[str, Any]:
    figures = arm_figures(run, limit)
    fault = run["fault"]
    figures["fault"] = fault
    struck = fault.get("killed_at") or fault.get("stopped_at")
    if struck:
        figures["turns_per_second"] = _per_second(run["workers"], struck)
        figures["throttled_per_second"] = _throttles_per_second(fault.get("samples", []), struck)
    if "killed_at" in fault:
        killed, held = fault["killed_at"], fault["permits_held"]
        samples = [sample for sample in fault["samples"] if sample[0] >= killed]
        figures["active_before"] = next((a for t, a, _ in reversed(fault["samples"]) if t < killed), None)
        figures["lowest_active"] = min((active for _, active, _ in samples), default=None)
        # Until the dead leases expire, the others can hold at most limit - held. Once the emulator saw the
        # dead process's streams go, a reading above that is one of its permits serving another process.
        gone = next((i for i, (_, active, _) in enumerate(samples) if active <= limit - held), None)
        after = samples[gone:] if gone is not None else []
        reused = next((t for t, active, _ in after if active > limit - held), None)
        full = next((t for t, active, _ in after if active >= limit - 1), None)
        figures["permits_held"] = held
        figures["recovered_s"] = None if reused is None else reused - killed
        figures["full_again_s"] = None if full is None else full - killed
    if "stopped_at" in fault:
        # Turns that ended (failed) from the moment Redis stopped until 2 s after it answered again.
        good = [worker for worker in run["workers"] if "error" not in worker]
        during = [turn for worker in good for turn in _within(worker["turns"], fault["stopped_at"], fault["until"])]
        figures["outage_turns"] = len(during)
        figures["outage_failed"] = sum(1 for turn in during if turn[2] is not None)
        during_samples = [s for s in fault["samples"] if fault["stopped_at"] <= s[0] <= fault["until"]]
        figures["outage_throttled"] = during_samples[-1][2] - during_samples[0][2] if during_samples else None
    return figures


#: Commands a client sends itself; the others in INFO commandstats ran inside the limiter's Lua scripts.
_CLIENT_COMMANDS = ("eval", "script", "hello", "client", "subscribe", "unsubscribe", "psubscribe", "select")


def overhead_figures(result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        return {"error": result["error"]}
    admission = statistics.median(wait for _, wait in result["waits"]) * 1000
    ping = statistics.median(result["pings"]) * 1000
    return {
        "admission_p50_ms": admission,
        "ping_p50_ms": ping,
        "round_trips": admission / ping if ping else None,
        "commands_per_stream": {
            name: n
            for name, n in (result.get("commands_per_stream") or {}).items()
            if name.startswith(_CLIENT_COMMANDS)
        },
        "script_calls_per_stream": sum(
            n for name, n in (result.get("commands_per_stream") or {}).items() if not name.startswith(_CLIENT_COMMANDS)
        ),
        "errors": result.get("errors"),
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, met: bool | None, detail: str) -> None:
        out.append({"target": name, "met": met, "detail": detail})

    redis = report["arms"].get("redis", {})
    throttled, util, spread = redis.get("throttled"), redis.get("utilisation"), redis.get("spread")
    add("RedisLimiter: 0 throttles", None if throttled is None else throttled == 0, fmt(throttled))
    add("RedisLimiter: utilisation >= 95 %", None if util is None else util >= 0.95, _share(util))
    add("RedisLimiter: spread <= 1.2x", None if spread is None else spread <= 1.2, fmt(spread, "x"))
    overhead = report.get("overhead_figures", {})
    trips = overhead.get("round_trips")
    add(
        "uncontended admission <= 2 Redis round trips",
        None if trips is None else trips <= 2,
        f"{fmt(overhead.get('admission_p50_ms'), ' ms')} = {fmt(trips)} PINGs "
        f"({fmt(overhead.get('ping_p50_ms'), ' ms')})",
    )
    kill = report.get("kill", {})
    recovered, lease = kill.get("recovered_s"), kill.get("lease_seconds")
    add(
        "crash recovery <= lease time + 1 s",
        None if not kill else recovered is not None and lease is not None and recovered <= lease + 1,
        f"{fmt(recovered, ' s')} (lease {fmt(lease, ' s')})" if kill else "not run",
    )
    outage = report.get("outage", {})
    failed = outage.get("outage_failed")
    add("0 streams failed during the Redis outage", None if failed is None else failed == 0, fmt(failed))
    return out


_ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("streams throttled (emulator)", lambda a: fmt(a.get("throttled"))),
    ("turns completed", lambda a: fmt(a.get("turns_completed"))),
    ("turns failed", lambda a: fmt(a.get("turns_failed"))),
    ("quota utilisation (time-weighted open streams / quota)", lambda a: _share(a.get("utilisation"))),
    ("admission wait p50 / p99 (ms)", lambda a: f"{fmt(a.get('wait_p50_ms'))} / {fmt(a.get('wait_p99_ms'))}"),
    ("turns/s by process", lambda a: ", ".join(fmt(x) for x in a.get("turns_per_s_by_process", [])) or "-"),
    ("spread between processes (max/min)", lambda a: fmt(a.get("spread"), "x")),
)


def _share(value: float | None) -> str:
    """A share to a tenth of a percent: 94.6 % must not print as a target's 95 %."""
    return "-" if value is None else f"{value:.1%}"


def _series(values: list[int] | None) -> str:
    return " ".join(str(v) for v in values) if values else "-"


def render(report: dict[str, Any]) -> str:
    shape = report["shape"]
    arms: dict[str, dict[str, Any]] = report["arms"]
    lines = [
        f"fleet, {report['mode']} run: {shape['workers']} processes x {shape['conversations']} conversations "
        f"against one emulator with --max-active-streams {shape['limit']}, 1 s streams, retries=3 in every arm; "
        f"{shape['window']:g} s measured after {shape['warmup']:g} s",
        "",
        "| | "
        + " | ".join(ARM_LABELS[arm] + (f" ({shape['local_limit']})" if arm == "local" else "") for arm in arms)
        + " |",
        "|---|" + "---:|" * len(arms),
    ]
    for label, cell in _ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(row) for row in arms.values()) + " |")
    for arm, row in arms.items():
        if row.get("failures"):
            lines.append(f"  {ARM_LABELS[arm]}: failed turns by error: {row['failures']}")
        for error in row.get("errors", []):
            lines.append(f"  {ARM_LABELS[arm]}: a worker failed: {error}")
    overhead = report.get("overhead_figures")
    if overhead:
        lines += [
            "",
            f"uncontended admission (RedisLimiter, streams one after another): {fmt(overhead.get('admission_p50_ms'))} "
            f"ms median = {fmt(overhead.get('round_trips'))} Redis round trips (PING median "
            f"{fmt(overhead.get('ping_p50_ms'))} ms); commands sent per stream: "
            + ", ".join(f"{name} {n:g}" for name, n in (overhead.get("commands_per_stream") or {}).items())
            + f" (and {fmt(overhead.get('script_calls_per_stream'))} calls inside the Lua scripts)",
        ]
    kill = report.get("kill")
    if kill:
        lines += [
            f"SIGKILL of the worker holding the most permits ({fmt(kill.get('permits_held'))}): open streams "
            f"{fmt(kill.get('active_before'))} before, {fmt(kill.get('lowest_active'))} at the lowest; its permits "
            f"served others after {fmt(kill.get('recovered_s'))} s (lease {fmt(kill.get('lease_seconds'))} s), the "
            f"quota was full again after {fmt(kill.get('full_again_s'))} s; streams throttled "
            f"{fmt(kill.get('throttled'))}, turns failed {fmt(kill.get('turns_failed'))}",
            f"  turns completed per second from 2 s before the kill: {_series(kill.get('turns_per_second'))}",
        ]
    outage = report.get("outage")
    if outage:
        lines += [
            f"Redis stopped for {shape['outage']:g} s: {fmt(outage.get('outage_failed'))} of "
            f"{fmt(outage.get('outage_turns'))} turns failed and {fmt(outage.get('outage_throttled'))} streams "
            f"throttled from the stop to 2 s after the restart; fallbacks {fmt(outage.get('fallbacks'))}; over "
            f"the run: utilisation {_share(outage.get('utilisation'))}, throttled {fmt(outage.get('throttled'))}",
            f"  turns completed per second from 2 s before the stop: {_series(outage.get('turns_per_second'))}",
            f"  streams throttled per second from 2 s before the stop: {_series(outage.get('throttled_per_second'))}",
        ]
    lines += render_targets(report["targets"], 46)
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    lines.append(f"total {report['seconds']:.0f} s")
    return "\n".join(lines)
