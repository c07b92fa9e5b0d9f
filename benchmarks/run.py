"""Benchmark this client against the raw h2 floor and the other Python clients.

    python benchmarks/run.py            # everything, peers included (installed on first run)
    python benchmarks/run.py --smoke    # seconds: ours and the floor, tiny counts (CI)

The emulator runs in its own process in as-fast-as-possible mode with tone
audio, so speech synthesis is not measured. Each workload runs each client in
a fresh process. Prints a table (medians, p99, ratios to the floor) and the
targets met or not, and writes it all as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import PEERS, ensure_venv, find_python  # noqa: E402
from workloads import SHORT_TEXT  # noqa: E402

KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
OURS, FLOOR = "ours", "raw h2 floor"


class Client:
    def __init__(self, name: str, python: str, driver: str, module: str) -> None:
        self.name = name
        self.python = python
        self.driver = str(HERE / driver)
        self.module = module


def _counts(smoke: bool) -> dict[str, int]:
    if smoke:
        return {"import": 3, "cold": 2, "ttfa": 30, "cpu": 50, "streams": 4, "bytes": 64 * 1024, "memory": 4}
    return {"import": 15, "cold": 10, "ttfa": 500, "cpu": 1000, "streams": 64, "bytes": 1024 * 1024, "memory": 32}


def start_emulator() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "amazon_polly_streaming.emulator", "--audio", "tone", "--max-concurrent-streams", "256"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit("the emulator did not start")
    return process, json.loads(line)


def presign(emulator: dict[str, Any], texts: list[str], path: Path) -> None:
    """Sign each request once, for the floor to replay (it must not pay for signing)."""
    from amazon_polly_streaming._protocol import (
        CLOSE_STREAM_EVENT,
        RequestSigner,
        synthesis_params,
        text_event,
    )
    from amazon_polly_streaming.credentials import Credentials

    signed = {}
    for text in texts:
        headers, signer = RequestSigner("us-east-1").request_headers(
            synthesis_params(voice_id="Matthew", output_format="pcm", sample_rate="16000"),
            authority=emulator["endpoint_url"].removeprefix("https://"),
            credentials=Credentials(KEY, SECRET),
            amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            user_agent="floor",
        )
        now = int(time.time() * 1000)
        body = signer.sign(text_event(text), now) + signer.sign(CLOSE_STREAM_EVENT, now) + signer.sign(b"", now)
        signed[text] = {"headers": headers, "body": body.hex()}
    path.write_text(json.dumps(signed))


def drive(client: Client, emulator: dict[str, Any], mode: str, presigned: Path, **options: Any) -> dict[str, Any]:
    # The slowest peer needs ~100 ms a call: 1,000 calls must fit.
    args = [client.python, client.driver, "--mode", mode, "--endpoint", emulator["endpoint_url"], "--timeout", "500"]
    args += ["--ca", emulator["ca_file"], "--presigned", str(presigned)]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def import_ms(client: Client, runs: int) -> float | None:
    """Median cumulative ``-X importtime`` of the client's top-level imports, in ms."""
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [client.python, "-X", "importtime", "-c", f"import {client.module}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if out.returncode != 0:
            return None
        total = 0
        for line in out.stderr.splitlines():
            parts = line.split("|")
            # Top-level entries of what the statement imported (no leading spaces in the name column).
            if len(parts) == 3 and parts[2].startswith(" ") and not parts[2].startswith("  "):
                name = parts[2].strip()
                if name.split(".")[0] in {m.split(".")[0] for m in client.module.split(",")}:
                    total += int(parts[1])
        samples.append(total / 1000)
    return float(statistics.median(samples))


def cold_ms(client: Client, emulator: dict[str, Any], presigned: Path, runs: int) -> float | None:
    samples = []
    for _ in range(runs):
        started = time.time()
        result = drive(client, emulator, "cold", presigned, n=1, key=KEY, secret=SECRET)
        if "first_byte_wall" not in result or result["first_byte_wall"] is None:
            return None
        samples.append((result["first_byte_wall"] - started) * 1000)
    return float(statistics.median(samples))


def codec_speed(seconds: float) -> dict[str, float]:
    """MB/s of the sans-IO codec: decoding AudioEvents, encoding signed envelopes."""
    from amazon_polly_streaming._event_signer import EventSigner
    from amazon_polly_streaming._eventstream import EventStreamDecoder, encode_headers, encode_message
    from amazon_polly_streaming._protocol import text_event

    headers = encode_headers(
        ((":message-type", "event"), (":event-type", "AudioEvent"), (":content-type", "application/octet-stream"))
    )
    frame = encode_message(headers, bytes(8192))
    stream = frame * 256  # 2 MB, fed as 16 KiB DATA frames
    pieces = [stream[i : i + 16384] for i in range(0, len(stream), 16384)]
    decoded = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        decoder = EventStreamDecoder()
        for piece in pieces:
            for message in decoder.feed(piece):
                decoded += len(message.payload)
    decode_mbs = decoded / 1e6 / (time.perf_counter() - started)
    signer = EventSigner(bytes(32), "20260101/us-east-1/polly/aws4_request", bytes(32))
    event = text_event("A sentence of text from a language model, as a voice agent sends it. " * 3)
    encoded = 0
    started = time.perf_counter()
    now = int(time.time() * 1000)
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            encoded += len(signer.sign(event, now))
    encode_mbs = encoded / 1e6 / (time.perf_counter() - started)
    return {"decode_audio_mb_s": decode_mbs, "encode_envelopes_mb_s": encode_mbs}


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}{unit}" if value < 100 else f"{value:,.0f}{unit}"
    return f"{value}{unit}"


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--smoke", action="store_true", help="a few seconds: ours and the floor, tiny counts")
    options.add_argument("--skip-peers", action="store_true", help="do not install or run the other clients")
    options.add_argument("--json", default=str(HERE / "results.json"), help="where to write the results")
    args = options.parse_args()
    counts = _counts(args.smoke)
    began = time.monotonic()

    clients = [
        Client(OURS, sys.executable, "client_ours.py", "amazon_polly_streaming"),
        Client(FLOOR, sys.executable, "client_floor.py", "asyncio,ssl,h2.connection"),
    ]
    skipped = ""
    if not (args.smoke or args.skip_peers):
        python = find_python()
        if python is None:
            skipped = "peers skipped: no Python 3.12+ found (set POLLY_PEER_PYTHON)"
        else:
            for peer in PEERS:
                clients.append(Client(peer.name, str(ensure_venv(peer, python)), peer.driver, peer.module))
    if skipped:
        print(skipped, file=sys.stderr)

    process, emulator = start_emulator()
    presigned = HERE.parent / ".bench-presigned.json"
    big = f"{{{{audio_bytes:{counts['bytes']}}}}} {SHORT_TEXT}"
    try:
        presign(emulator, [SHORT_TEXT, big], presigned)
        results: dict[str, dict[str, Any]] = {}
        for client in clients:
            print(f"measuring {client.name} ...", file=sys.stderr, flush=True)
            row: dict[str, Any] = {}
            row["import_ms"] = import_ms(client, counts["import"])
            row["cold_start_ms"] = cold_ms(client, emulator, presigned, counts["cold"])
            ttfa = drive(client, emulator, "ttfa", presigned, n=counts["ttfa"])
            row["ttfa_median_ms"], row["ttfa_p99_ms"] = ttfa.get("median_ms"), ttfa.get("p99_ms")
            cpu = drive(client, emulator, "cpu", presigned, n=counts["cpu"])
            row["cpu_us_per_call"] = cpu.get("cpu_us_per_call")
            streams = counts["streams"]
            bulk = drive(
                client, emulator, "throughput", presigned, streams=streams, bytes=counts["bytes"], pool_size=streams
            )
            row["bulk_cpu_s_per_mb"], row["bulk_wall_s"] = bulk.get("cpu_s_per_mb"), bulk.get("wall_s")
            memory = drive(client, emulator, "memory", presigned, streams=counts["memory"], pool_size=counts["memory"])
            row["rss_kb_per_open_stream"] = memory.get("rss_per_open_stream_kb")
            row["rss_kb_per_idle_connection"] = memory.get("rss_per_idle_connection_kb")
            errors = {k: v.get("error") for k, v in (("ttfa", ttfa), ("cpu", cpu), ("bulk", bulk), ("memory", memory))}
            row["errors"] = {k: v for k, v in errors.items() if v}
            results[client.name] = row
    finally:
        process.terminate()
        process.wait(10)
        presigned.unlink(missing_ok=True)
    codec = codec_speed(0.5 if args.smoke else 2.0)
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "smoke": args.smoke,
        "counts": counts,
        "clients": results,
        "codec": codec,
        "targets": targets(results, codec),
        "notes": [skipped] if skipped else [],
        "seconds": round(time.monotonic() - began, 1),
    }
    print_table(report)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {args.json} in {report['seconds']} s", file=sys.stderr)
    return 0


def _at_most(value: float | None, limit: float | None) -> bool | None:
    """value <= limit, or None (not measured) when either is missing."""
    return None if value is None or limit is None else value <= limit


def targets(results: dict[str, dict[str, Any]], codec: dict[str, float]) -> list[dict[str, Any]]:
    ours, floor = results.get(OURS, {}), results.get(FLOOR, {})
    peers = [row for name, row in results.items() if name not in (OURS, FLOOR)]
    out = []

    def add(name: str, met: bool | None, detail: str) -> None:
        out.append({"target": name, "met": met, "detail": detail})

    def scaled(value: float | None, factor: float, offset: float = 0.0) -> float | None:
        return None if value is None else value * factor + offset

    value = ours.get("import_ms")
    add("import <= 40 ms", _at_most(value, 40.0), _fmt(value, " ms"))
    a, b = ours.get("ttfa_median_ms"), floor.get("ttfa_median_ms")
    add("warm TTFA <= floor + 1 ms", _at_most(a, scaled(b, 1.0, 1.0)), f"{_fmt(a, ' ms')} vs floor {_fmt(b, ' ms')}")
    a, b = ours.get("cpu_us_per_call"), floor.get("cpu_us_per_call")
    add("CPU/utterance <= 1.5x floor", _at_most(a, scaled(b, 1.5)), f"{_fmt(a, ' us')} = {_ratio(a, b)} floor")
    peer_cpu = [float(row["cpu_us_per_call"]) for row in peers if row.get("cpu_us_per_call")]
    best = min(peer_cpu) if peer_cpu else None
    add(
        "CPU/utterance <= best peer / 3",
        _at_most(a, scaled(best, 1 / 3)),
        f"{_fmt(a, ' us')} vs best peer {_fmt(best, ' us')} ({_ratio(a, best)})",
    )
    a, b = ours.get("bulk_cpu_s_per_mb"), floor.get("bulk_cpu_s_per_mb")
    add("64x1MB CPU/MB <= 1.5x floor", _at_most(a, scaled(b, 1.5)), f"{_fmt(a, ' s')} = {_ratio(a, b)} floor")
    speed = codec["decode_audio_mb_s"]
    add("codec decode >= 300 MB/s", speed >= 300, f"{speed:,.0f} MB/s")
    return out


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def print_table(report: dict[str, Any]) -> None:
    results = report["clients"]
    floor = results.get(FLOOR, {})
    rows = [
        ("import (ms)", "import_ms"),
        ("cold start to first byte (ms)", "cold_start_ms"),
        ("warm TTFA median (ms)", "ttfa_median_ms"),
        ("warm TTFA p99 (ms)", "ttfa_p99_ms"),
        ("CPU per short utterance (us)", "cpu_us_per_call"),
        ("64 x 1 MB PCM: CPU per MB (s)", "bulk_cpu_s_per_mb"),
        ("64 x 1 MB PCM: wall (s)", "bulk_wall_s"),
        ("RSS per open stream (KB)", "rss_kb_per_open_stream"),
        ("RSS per idle connection (KB)", "rss_kb_per_idle_connection"),
    ]
    names = list(results)
    width = max(30, *(len(n) + 2 for n in names))
    print(f"\n{'':32}" + "".join(f"{name:>{width}}" for name in names))
    for label, key in rows:
        line = f"{label:32}"
        for name in names:
            value = results[name].get(key)
            base = floor.get(key)
            ratio = f" ({value / base:.2f}x)" if isinstance(value, int | float) and base and key != "import_ms" else ""
            line += f"{_fmt(value) + ratio:>{width}}"
        print(line)
    print("\n(ratios are to the raw h2 floor)")
    codec = report["codec"]
    print(
        f"codec: decode AudioEvents {codec['decode_audio_mb_s']:,.0f} MB/s, "
        f"encode signed envelopes {codec['encode_envelopes_mb_s']:,.1f} MB/s"
    )
    print("\ntargets:")
    for target in report["targets"]:
        state = {True: "MET", False: "NOT MET", None: "n/a"}[target["met"]]
        print(f"  {state:8} {target['target']:32} {target['detail']}")
    for name, row in results.items():
        if row.get("errors"):
            print(f"  errors for {name}: {row['errors']}")
    for note in report["notes"]:
        print(f"  note: {note}")
    machine = report["machine"]
    print(f"\nmachine: {machine['cpus']} CPUs, Python {machine['python']}, {machine['platform']}")


if __name__ == "__main__":
    sys.exit(main())
