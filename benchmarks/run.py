"""Benchmark this client against the raw h2 floor and the other Python clients for Polly streaming.

    python benchmarks/run.py              # everything, peers included (installed on the first run)
    python benchmarks/run.py --quick      # the same with small counts (about a minute)
    python benchmarks/run.py --smoke      # seconds: ours and the floor, tiny counts (CI)

Any Python 3.11+ will do: when the interpreter lacks the emulator's and the
floor's packages, the script installs them into a cached virtualenv
(``.bench-venvs/``) and re-runs itself there. It measures the checkout's
``src/``, not an installed copy.

The emulator runs in its own process in as-fast-as-possible mode with
pre-rendered tone audio (speech synthesis is not measured). Every client runs
every workload in fresh processes of its own interpreter: ours and the floor
under this Python, the peers (amazon-polly-streaming 1.1.0 and aws-sdk-polly
with awscrt, from PyPI) in their own Python 3.12+ virtualenvs. CPU figures
are the client process's CPU time only. Bytecode is cached for every client
alike (``PYTHONPYCACHEPREFIX`` under ``.bench-venvs/``), as an installed
package would have it.

Workloads: (1) import time, ``-X importtime`` cumulative, median of 15 fresh
processes; (2) cold start: spawning a process to its first audio byte,
credentials from the environment, TLS included, median of 10; (3) warm time
to first audio of a short utterance on a pooled connection, median and p99 of
500; (4) client CPU per short utterance over 1,000 sequential calls; (5) 64
concurrent streams of 1 MiB of 16 kHz PCM: client CPU per MB and wall time,
median of 3 rounds; (6) RSS growth per idle pooled connection, per stream held
open on a warm pool, and per stream with its connection in a fresh process;
(7) the sans-IO codec alone. Ours and the floor run (3) and (4) in 5
interleaved processes and report the median, as this kind of machine drifts;
the peers, at tens of times the floor, run once. Prints a table (medians, p99,
ratios to the floor and to ours) and the targets met or not, and writes
everything (samples included) as JSON.

``profile_ours.py`` profiles our client in workloads (4) and (5) and A/B
tests a change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
for _path in (str(SRC), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from peers import (  # noqa: E402
    PEERS,
    VENVS,
    ensure_requirements,
    ensure_venv,
    find_python,
    installed_version,
    python_version,
)
from workloads import DEFAULT_KEY, DEFAULT_SECRET, HOLD_TEXT, SHORT_TEXT, bulk_text  # noqa: E402

OURS, FLOOR = "ours", "raw h2 floor"
REGION = "us-east-1"
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
    return [*project["dependencies"], *project["optional-dependencies"]["emulator"]]


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


@dataclass(frozen=True)
class Counts:
    imports: int  # fresh processes for the import time
    cold: int  # fresh processes for the cold start
    warmup: int  # calls before measuring TTFA or CPU
    ttfa: int  # calls measured for the warm TTFA
    cpu: int  # sequential calls per CPU measurement
    rounds: int  # TTFA and CPU measurements (fresh processes) for ours and the floor; peers get one
    streams: int  # concurrent streams of the bulk workload
    stream_bytes: int  # audio per bulk stream
    bulk_rounds: int  # bulk rounds measured per process
    memory_streams: int  # connections / streams held in the memory workload
    codec_seconds: float


COUNTS = {
    "full": Counts(15, 10, 20, 500, 1000, 5, 64, 1024 * 1024, 3, 64, 3.0),
    "quick": Counts(5, 3, 10, 100, 200, 3, 16, 1024 * 1024, 1, 16, 1.0),
    "smoke": Counts(2, 1, 3, 20, 30, 1, 4, 64 * 1024, 1, 4, 0.3),
}


@dataclass
class Client:
    name: str
    kind: str  # "ours", "floor" or "peer"
    python: str
    driver: str
    module: str  # what the import workload imports ("a,b" for several)
    version: str


# Variables that would point a client somewhere else, or change what it loads.
_DROPPED_ENV = {
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONPROFILEIMPORTTIME",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_POLLY",
    "AWS_CA_BUNDLE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
}


def client_env(client: Client) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _DROPPED_ENV}
    env["PYTHONPYCACHEPREFIX"] = str(VENVS / "pycache")
    # The peers must import their own installed package, never this checkout's.
    env["PYTHONPATH"] = str(HERE) if client.kind == "peer" else os.pathsep.join([str(HERE), str(SRC)])
    env["AWS_ACCESS_KEY_ID"] = DEFAULT_KEY
    env["AWS_SECRET_ACCESS_KEY"] = DEFAULT_SECRET
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


class Emulator:
    """``python -m amazon_polly_streaming.emulator`` in its own process, tone audio, as fast as possible."""

    def __init__(self) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the emulator's stderr, kept until close()
        env = {name: value for name, value in os.environ.items() if name not in _DROPPED_ENV}
        env["PYTHONPATH"] = str(SRC)
        env["PYTHONPYCACHEPREFIX"] = str(VENVS / "pycache")
        command = [sys.executable, "-m", "amazon_polly_streaming.emulator", "--port", "0", "--audio", "tone"]
        self.process = subprocess.Popen(
            [*command, "--max-concurrent-streams", "256"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        stdout = self.process.stdout
        assert stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        if not line or not line[0].strip():
            self.close()
            self._log.seek(0)
            raise SystemExit("the emulator did not start:\n" + self._log.read().decode(errors="replace")[-2000:])
        info = json.loads(line[0])
        self.endpoint_url: str = info["endpoint_url"]
        self.ca_file: str = info["ca_file"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def presign(emulator: Emulator, texts: list[str], path: Path) -> None:
    """Sign each request once, with its event envelopes, for the floor to replay byte for byte."""
    from amazon_polly_streaming._protocol import CLOSE_STREAM_EVENT, RequestSigner, synthesis_params, text_event
    from amazon_polly_streaming.credentials import Credentials

    signed = {}
    for text in texts:
        headers, signer = RequestSigner(REGION).request_headers(
            synthesis_params(voice_id="Matthew", output_format="pcm", sample_rate="16000"),
            authority=emulator.endpoint_url.removeprefix("https://"),
            credentials=Credentials(DEFAULT_KEY, DEFAULT_SECRET),
            amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            user_agent="benchmark-floor",
        )
        now = int(time.time() * 1000)
        body = signer.sign(text_event(text), now) + signer.sign(CLOSE_STREAM_EVENT, now) + signer.sign(b"", now)
        signed[text] = {"headers": headers, "body": body.hex()}
    path.write_text(json.dumps(signed))


# --------------------------------------------------------------------------- workloads


class Runner:
    def __init__(self, emulator: Emulator, counts: Counts) -> None:
        self.emulator = emulator
        self.counts = counts
        self.began = time.monotonic()
        self._scratch = Path(tempfile.mkdtemp(prefix="polly-bench-"))

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f} s] {message}", file=sys.stderr, flush=True)

    def drive(self, client: Client, mode: str, timeout: float, **options: Any) -> dict[str, Any]:
        """Run ``client``'s driver once in a fresh process; its JSON result, or ``{"error": ...}``."""
        args = [client.python, str(HERE / client.driver), "--mode", mode, "--timeout", f"{timeout:g}"]
        args += ["--endpoint", self.emulator.endpoint_url, "--ca", self.emulator.ca_file]
        if client.kind == "floor":
            # Signed now: the emulator allows 5 minutes of clock skew, like Polly.
            presigned = self._scratch / "presigned.json"
            texts = [SHORT_TEXT, HOLD_TEXT, bulk_text(self.counts.stream_bytes)]
            presign(self.emulator, texts, presigned)
            args += ["--presigned", str(presigned)]
        for name, value in options.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        try:
            out = subprocess.run(
                args, capture_output=True, text=True, timeout=timeout + 30, env=client_env(client), check=False
            )
        except subprocess.TimeoutExpired:
            return {"error": f"{mode}: no result within {timeout + 30:g} s"}
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            detail = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
            return {"error": f"{mode}: {detail[:300]}"}
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def import_ms(self, client: Client) -> float | str:
        """Cumulative ``-X importtime`` of the client's top-level imports in ms (one process), or an error."""
        wanted = {name.split(".")[0] for name in client.module.split(",")}
        try:
            out = subprocess.run(
                [client.python, "-X", "importtime", "-c", f"import {client.module}"],
                capture_output=True,
                text=True,
                timeout=120,
                env=client_env(client),
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "import: timed out"
        if out.returncode != 0:
            return "import: " + (out.stderr.strip().splitlines() or ["failed"])[-1][:300]
        total = 0
        for line in out.stderr.splitlines():
            parts = line.split("|")
            # "import time: self | cumulative | name", the name indented two spaces per nesting level:
            # the statement's own imports are the entries at level 0.
            top_level = len(parts) == 3 and parts[1].strip().isdigit() and parts[2][1:2] != " "
            if top_level and parts[2].strip().split(".")[0] in wanted:
                total += int(parts[1])
        return total / 1000

    def cold_ms(self, client: Client) -> float | str:
        """Spawn to first audio byte in ms (one process), or an error."""
        started = time.time()
        result = self.drive(client, "cold", 60)
        wall = result.get("first_byte_wall")
        if wall is None:
            return str(result.get("error") or "cold: no audio")
        return (float(wall) - started) * 1000

    def sampled(self, clients: list[Client], rows: dict[str, dict[str, Any]], key: str, runs: int, sample: Any) -> None:
        """``runs`` samples per client, interleaved across clients after one warm-up each (it fills the
        bytecode cache); the median goes in ``rows[name][key]``, the samples in ``..._samples``."""
        samples: dict[str, list[float]] = {client.name: [] for client in clients}
        failed: dict[str, str] = {}
        for index in range(runs + 1):
            for client in clients:
                if client.name in failed:
                    continue
                value = sample(client)
                if isinstance(value, str):
                    failed[client.name] = value
                elif index:
                    samples[client.name].append(value)
        for client in clients:
            row = rows[client.name]
            if client.name in failed:
                row[key] = None
                row["errors"][key] = failed[client.name]
            else:
                row[key] = statistics.median(samples[client.name])
                row[key + "_samples"] = [round(v, 3) for v in samples[client.name]]

    def rounds(
        self, clients: list[Client], mode: str, timeout: float, **options: Any
    ) -> dict[str, list[dict[str, Any]]]:
        """``counts.rounds`` fresh processes each for ours and the floor, interleaved (this machine's noise
        drifts); one for a peer, whose figures are tens of times the floor's."""
        runs: dict[str, list[dict[str, Any]]] = {client.name: [] for client in clients}
        for index in range(self.counts.rounds):
            for client in clients:
                if client.kind != "peer" or not index:
                    runs[client.name].append(self.drive(client, mode, timeout, **options))
        return runs

    @staticmethod
    def summarize(row: dict[str, Any], key: str, runs: list[dict[str, Any]], fields: dict[str, str]) -> None:
        """``row[name]``: the median over the runs of their ``fields[name]``; the runs in ``row[key + "_runs"]``."""
        good = [run for run in runs if not run.get("error")]
        if len(good) < len(runs):
            row["errors"][key] = next(run["error"] for run in runs if run.get("error"))
        for name, field in fields.items():
            row[name] = statistics.median(float(run[field]) for run in good) if good else None
        row[key + "_runs"] = good

    def run(self, clients: list[Client]) -> dict[str, dict[str, Any]]:
        counts = self.counts
        rows: dict[str, dict[str, Any]] = {
            client.name: {"python": client.python, "version": client.version, "errors": {}} for client in clients
        }

        def note(key: str, label: str, unit: str) -> None:
            values = ", ".join(f"{c.name} {_fmt(rows[c.name].get(key))}" for c in clients)
            self.log(f"{label} ({unit}): {values}")

        def record(client: Client, key: str, result: dict[str, Any], fields: dict[str, str]) -> None:
            row = rows[client.name]
            if result.get("error"):
                row["errors"][key] = result["error"]
            for name, field in fields.items():
                row[name] = result.get(field)
            row[key + "_run"] = result

        self.log(f"1/6 import time: median of {counts.imports} processes per client")
        self.sampled(clients, rows, "import_ms", counts.imports, self.import_ms)
        note("import_ms", "import", "ms")

        self.log(f"2/6 cold start: median of {counts.cold} processes per client")
        self.sampled(clients, rows, "cold_start_ms", counts.cold, self.cold_ms)
        note("cold_start_ms", "cold start to first audio", "ms")

        self.log(f"3/6 warm time to first audio: {counts.ttfa} calls per process")
        timeout = 60 + (counts.ttfa + counts.warmup) * 0.3
        runs = self.rounds(clients, "ttfa", timeout, n=counts.ttfa, warmup=counts.warmup)
        for client in clients:
            fields = {"ttfa_median_ms": "median_ms", "ttfa_p99_ms": "p99_ms"}
            self.summarize(rows[client.name], "ttfa", runs[client.name], fields)
        note("ttfa_median_ms", "warm TTFA median", "ms")

        self.log(f"4/6 CPU per short utterance: {counts.cpu} sequential calls per process")
        timeout = 60 + (counts.cpu + counts.warmup) * 0.3
        runs = self.rounds(clients, "cpu", timeout, n=counts.cpu, warmup=counts.warmup)
        for client in clients:
            fields = {"cpu_us_per_call": "cpu_us_per_call", "wall_us_per_call": "wall_us_per_call"}
            self.summarize(rows[client.name], "cpu", runs[client.name], fields)
        note("cpu_us_per_call", "CPU per short utterance", "us")

        streams, size = counts.streams, counts.stream_bytes
        self.log(f"5/6 {streams} concurrent streams x {size / 2**20:g} MiB PCM, {counts.bulk_rounds} rounds")
        for client in clients:
            result = self.drive(
                client, "throughput", 300, streams=streams, bytes=size, rounds=counts.bulk_rounds, pool_size=streams
            )
            record(client, "bulk", result, {"bulk_cpu_s_per_mb": "cpu_s_per_mb", "bulk_wall_s": "wall_s"})
        note("bulk_cpu_s_per_mb", "bulk CPU per MB", "s")

        held = counts.memory_streams
        self.log(f"6/6 memory: {held} idle connections, then {held} open streams; {held} streams in a fresh process")
        for client in clients:
            result = self.drive(client, "memory", 120, streams=held, pool_size=held)
            record(
                client,
                "memory",
                result,
                {
                    "rss_kb_per_open_stream": "rss_per_open_stream_kb",
                    "rss_kb_per_idle_connection": "rss_per_idle_connection_kb",
                    "connections_for_streams": "connections_opened",
                },
            )
            result = self.drive(client, "memory-fresh", 120, streams=held, pool_size=held)
            record(client, "memory_fresh", result, {"rss_kb_per_stream_fresh": "rss_per_stream_fresh_kb"})
        note("rss_kb_per_idle_connection", "RSS per idle connection", "KB")
        note("rss_kb_per_stream_fresh", "RSS per concurrent stream (fresh process)", "KB")
        return rows

    def codec(self, ours: Client) -> dict[str, Any]:
        self.log("7 codec alone (sans-IO, no sockets)")
        seconds = self.counts.codec_seconds
        out = subprocess.run(
            [ours.python, str(HERE / "codec_speed.py"), "--seconds", str(seconds)],
            capture_output=True,
            text=True,
            timeout=120 + seconds,
            env=client_env(ours),
            check=False,
        )
        if out.returncode != 0:
            return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


# --------------------------------------------------------------------------- report


def _at_most(value: float | None, limit: float | None) -> bool | None:
    """value <= limit, or None (not measured) when either is missing."""
    return None if value is None or limit is None else value <= limit


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}{unit}"
        return f"{value:.3g}{unit}"
    return f"{value}{unit}"


def targets(results: dict[str, dict[str, Any]], codec: dict[str, Any]) -> list[dict[str, Any]]:
    ours, floor = results.get(OURS, {}), results.get(FLOOR, {})
    peers = {name: row for name, row in results.items() if name not in (OURS, FLOOR)}
    out: list[dict[str, Any]] = []

    def add(name: str, met: bool | None, detail: str) -> None:
        out.append({"target": name, "met": met, "detail": detail})

    value = ours.get("import_ms")
    peer_imports = ", ".join(f"{name} {_fmt(row.get('import_ms'), ' ms')}" for name, row in peers.items())
    add("import <= 40 ms", _at_most(value, 40.0), _fmt(value, " ms") + (f" (peers: {peer_imports})" if peers else ""))

    a, b = ours.get("ttfa_median_ms"), floor.get("ttfa_median_ms")
    gap = f" (+{a - b:.2f} ms)" if a is not None and b is not None else ""
    add(
        "warm TTFA <= floor + 1 ms",
        _at_most(a, None if b is None else b + 1.0),
        f"median {_fmt(a, ' ms')} vs floor {_fmt(b, ' ms')}{gap}",
    )

    a, b = ours.get("cpu_us_per_call"), floor.get("cpu_us_per_call")
    peer_cpu = [float(row["cpu_us_per_call"]) for row in peers.values() if row.get("cpu_us_per_call")]
    best = min(peer_cpu) if peer_cpu else None
    add(
        "CPU/utterance <= best peer / 3",
        _at_most(a, None if best is None else best / 3),
        f"{_fmt(a, ' us')} vs best peer {_fmt(best, ' us')} ({_ratio(a, best)})",
    )
    add(
        "CPU/utterance <= 1.5x floor",
        _at_most(a, None if b is None else b * 1.5),
        f"{_fmt(a, ' us')} = {_ratio(a, b)} floor",
    )

    a, b = ours.get("bulk_cpu_s_per_mb"), floor.get("bulk_cpu_s_per_mb")
    add(
        "bulk PCM CPU/MB <= 1.5x floor",
        _at_most(a, None if b is None else b * 1.5),
        f"{_fmt(None if a is None else a * 1000, ' ms')}/MB = {_ratio(a, b)} floor",
    )

    speed = codec.get("decode_audio_mb_s")
    add("codec decode >= 300 MB/s", None if speed is None else speed >= 300, f"{_fmt(speed, ' MB/s')}")
    return out


_ROWS = (
    # label, key, display scale
    ("import (ms)", "import_ms", 1.0),
    ("cold start to first audio (ms)", "cold_start_ms", 1.0),
    ("warm TTFA median (ms)", "ttfa_median_ms", 1.0),
    ("warm TTFA p99 (ms)", "ttfa_p99_ms", 1.0),
    ("CPU per short utterance (us)", "cpu_us_per_call", 1.0),
    ("bulk PCM: CPU per MB (ms)", "bulk_cpu_s_per_mb", 1000.0),
    ("bulk PCM: wall (s)", "bulk_wall_s", 1.0),
    ("RSS per idle pooled connection (KB)", "rss_kb_per_idle_connection", 1.0),
    ("RSS per open stream, warm pool (KB)", "rss_kb_per_open_stream", 1.0),
    ("RSS per stream + its connection, fresh (KB)", "rss_kb_per_stream_fresh", 1.0),
    ("connections for the concurrent streams", "connections_for_streams", 1.0),
)


def render(report: dict[str, Any]) -> str:
    results: dict[str, dict[str, Any]] = report["clients"]
    names = list(results)
    floor, ours = results.get(FLOOR, {}), results.get(OURS, {})
    counts = report["counts"]
    lines = [
        f"Polly streaming clients, {report['mode']} run: emulator in its own process (tone audio, as fast as "
        f"possible), {counts['streams']} x {counts['stream_bytes'] / 2**20:g} MiB bulk streams",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, key, scale in _ROWS:
        cells = []
        for name in names:
            value = results[name].get(key)
            cell = _fmt(None if value is None else value * scale)
            if key != "connections_for_streams" and value is not None:
                ratios = []
                if name != FLOOR and floor.get(key):
                    ratios.append(f"{_ratio(value, floor[key])} floor")
                if name not in (OURS, FLOOR) and ours.get(key):
                    ratios.append(f"{_ratio(value, ours[key])} ours")
                if ratios:
                    cell += f" ({', '.join(ratios)})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    codec = report["codec"]
    lines.append("")
    if "error" in codec:
        lines.append(f"codec: failed: {codec['error']}")
    else:
        lines.append(
            f"codec alone: decoding AudioEvents {_fmt(codec['decode_audio_mb_s'])} MB/s through the response parser "
            f"({_fmt(codec['decode_bare_decoder_mb_s'])} MB/s bare decoder); encoding signed envelopes "
            f"{_fmt(codec['encode_envelopes_mb_s'])} MB/s ({_fmt(codec['encode_envelopes_per_s'])} envelopes/s "
            f"of {codec['envelope_bytes']} bytes)"
        )
    lines += ["", "targets:"]
    for target in report["targets"]:
        state = {True: "MET", False: "NOT MET", None: "n/a"}[target["met"]]
        lines.append(f"  {state:8} {target['target']:32} {target['detail']}")
    for name, row in results.items():
        if row.get("errors"):
            lines.append(f"  errors for {name}: {row['errors']}")
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    machine = report["machine"]
    lines.append("")
    lines.append(
        f"machine: {machine['cpus']} CPUs ({machine['cpu_model']}), {machine['memory_gb']} GB RAM, "
        f"{machine['platform']}; the emulator shares these CPUs"
    )
    for name, row in results.items():
        lines.append(f"  {name}: {row.get('version') or ''} on Python {row.get('python_version', '?')}")
    lines.append(f"total {report['seconds']:.0f} s")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    memory = None
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
        with open("/proc/meminfo") as meminfo:
            memory = round(int(meminfo.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------- main


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = options.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="a few seconds: ours and the floor, tiny counts (CI)")
    size.add_argument("--quick", action="store_true", help="small counts, peers included")
    options.add_argument("--skip-peers", action="store_true", help="do not install or run the other clients")
    options.add_argument("--json", default=str(HERE / "results.json"), help="where to write the results")
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

    emulator = Emulator()
    try:
        runner = Runner(emulator, counts)
        runner.log(f"emulator at {emulator.endpoint_url}; clients: {', '.join(c.name for c in clients)}")
        results = runner.run(clients)
        codec = runner.codec(clients[0])
    finally:
        emulator.close()
    for name, row in results.items():
        row["python_version"] = python_versions[name]
    report = {
        "machine": machine(),
        "mode": mode,
        "counts": asdict(counts),
        "clients": results,
        "codec": codec,
        "targets": targets(results, codec),
        "notes": notes,
        "seconds": round(time.monotonic() - began, 1),
    }
    table = render(report)
    report["table"] = table
    print(table)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}", file=sys.stderr)
    broken = [name for name in (OURS, FLOOR) if results[name]["errors"]] + (["codec"] if "error" in codec else [])
    if broken:
        print(f"failed: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


def _h2_version() -> str:
    import h2

    return str(h2.__version__)


if __name__ == "__main__":
    sys.exit(main())
