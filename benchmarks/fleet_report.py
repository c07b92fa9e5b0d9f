"""The fleet benchmark's figures, targets and table, from the runs' raw results (``fleet.py``)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from report import fmt, pct, render_targets

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


def fault_figures(run: dict[str, Any], limit: int) -> dict[str, Any]:
    figures = arm_figures(run, limit)
    fault = run["fault"]
    figures["fault"] = fault
    if "stopped_at" in fault:
        # Turns that ended (failed) from the moment Redis stopped until 2 s after it answered again.
        good = [worker for worker in run["workers"] if "error" not in worker]
        during = [turn for worker in good for turn in _within(worker["turns"], fault["stopped_at"], fault["until"])]
        figures["outage_turns"] = len(during)
        figures["outage_failed"] = sum(1 for turn in during if turn[2] is not None)
        figures["outage_throttled"] = fault["throttled"]
    return figures


def overhead_figures(result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        return {"error": result["error"]}
    admission = statistics.median(wait for _, wait in result["waits"]) * 1000
    ping = statistics.median(result["pings"]) * 1000
    return {
        "admission_p50_ms": admission,
        "ping_p50_ms": ping,
        "round_trips": admission / ping if ping else None,
        "commands_per_stream": result.get("commands_per_stream"),
        "errors": result.get("errors"),
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, met: bool | None, detail: str) -> None:
        out.append({"target": name, "met": met, "detail": detail})

    redis = report["arms"].get("redis", {})
    throttled, util, spread = redis.get("throttled"), redis.get("utilisation"), redis.get("spread")
    add("RedisLimiter: 0 throttles", None if throttled is None else throttled == 0, fmt(throttled))
    add("RedisLimiter: utilisation >= 95 %", None if util is None else util >= 0.95, pct(util))
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
    recovered, lease = kill.get("fault", {}).get("recovered_s"), kill.get("lease_seconds")
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
    ("quota utilisation (time-weighted open streams / quota)", lambda a: pct(a.get("utilisation"))),
    ("admission wait p50 / p99 (ms)", lambda a: f"{fmt(a.get('wait_p50_ms'))} / {fmt(a.get('wait_p99_ms'))}"),
    ("turns/s by process", lambda a: ", ".join(fmt(x) for x in a.get("turns_per_s_by_process", [])) or "-"),
    ("spread between processes (max/min)", lambda a: fmt(a.get("spread"), "x")),
)


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
            f"{fmt(overhead.get('ping_p50_ms'))} ms); {fmt(overhead.get('commands_per_stream'))} Redis commands per "
            "stream (acquire, release, heartbeats)",
        ]
    kill = report.get("kill")
    if kill:
        fault = kill["fault"]
        lines.append(
            f"SIGKILL of a worker holding permits: open streams {fault.get('active_before')} before, "
            f"{fault.get('lowest')} at the lowest; the quota in use again after {fmt(fault.get('recovered_s'))} s "
            f"(lease {fmt(kill.get('lease_seconds'))} s); streams throttled {fmt(kill.get('throttled'))}, turns "
            f"failed {fmt(kill.get('turns_failed'))}"
        )
    outage = report.get("outage")
    if outage:
        lines.append(
            f"Redis stopped for {shape['outage']:g} s: {fmt(outage.get('outage_failed'))} of "
            f"{fmt(outage.get('outage_turns'))} turns failed and {fmt(outage.get('outage_throttled'))} streams "
            f"throttled from the stop to 2 s after the restart; fallbacks {fmt(outage.get('fallbacks'))}; over "
            f"the run: utilisation {pct(outage.get('utilisation'))}, throttled {fmt(outage.get('throttled'))}"
        )
    lines += render_targets(report["targets"], 46)
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    lines.append(f"total {report['seconds']:.0f} s")
    return "\n".join(lines)
