"""The benchmark's machinery: the emulator processes, and each workload run in fresh client processes."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from clients import DROPPED_ENV, FLOOR, HERE, OURS, REGION, SRC, Client, Counts, client_env
from peers import VENVS, clean_env, stop_process
from report import fmt, pct
from workloads import DEFAULT_KEY, DEFAULT_SECRET, HOLD_TEXT, SHORT_TEXT, bulk_text

_SUFFIX = {"asyncio": "", "uvloop": "_uvloop"}
_SCAN_FIELDS = (
    "cpu_us_per_stream",
    "ttfa_median_ms",
    "ttfa_p99_ms",
    "streams_per_s",
    "client_cpu_share",
    "server_busiest",
    "server_cpu_us_per_stream",
    "other_load_cpus",
)


def _scan_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each scan figure over ``runs`` (the failed ones left out, the first error kept)."""
    good = [run for run in runs if not run.get("error")]
    figures: dict[str, Any] = {"runs": good}
    errors = [run["error"] for run in runs if run.get("error")]
    if errors:
        figures["error"] = errors[0]
    for field in _SCAN_FIELDS:
        values = [float(run[field]) for run in good if run.get(field) is not None]
        figures[field] = statistics.median(values) if values else None
    return figures


def turns(clients: list[Client], index: int) -> list[Client]:
    """The order of the clients' turn ``index``: reversed every other turn (ABBA), so that a drift of the machine
    over a run (seen here: 10-25 % within minutes) favours none of them."""
    return clients if index % 2 == 0 else clients[::-1]


def _readline(process: subprocess.Popen[str], timeout: float) -> str:
    """One line of ``process``'s output, or "" after ``timeout`` seconds."""
    stdout = process.stdout
    assert stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0].strip() if line else ""


class Emulator:
    """The emulator (tone audio, as fast as possible) in ``processes`` processes sharing one port.

    Each process runs ``emulator_server.py`` on ``loop``; the kernel spreads
    the connections among them (``SO_REUSEPORT``). ``pids`` lets a driver
    read their CPU time, to show that they kept up.
    """

    def __init__(self, processes: int = 1, loop: str = "asyncio", options: tuple[str, ...] = ()) -> None:
        from amazon_polly_streaming.emulator._certs import make_certificates

        self.loop = loop
        self._dir = tempfile.TemporaryDirectory(prefix="polly-bench-emulator-")
        certs = make_certificates(Path(self._dir.name))
        self.ca_file: str = str(certs.ca_file)
        env = clean_env(drop=DROPPED_ENV)
        env["PYTHONPATH"] = str(SRC)
        env["PYTHONPYCACHEPREFIX"] = str(VENVS / "pycache")
        self._command = [sys.executable, str(HERE / "emulator_server.py"), "--loop", loop]
        self._command += ["--cert", str(certs.cert_file), "--key", str(certs.key_file), "--ca", self.ca_file]
        self._command += options
        self._env = env
        self._processes: list[tuple[subprocess.Popen[str], Any]] = []
        self._quota_lock = threading.Lock()
        self.port = 0
        try:
            for _ in range(processes):
                self.port = self._spawn()
        except BaseException:
            self.close()
            raise
        self.endpoint_url: str = f"https://127.0.0.1:{self.port}"

    def _spawn(self) -> int:
        log = tempfile.TemporaryFile()  # noqa: SIM115 - the process's stderr, kept until close()
        process = subprocess.Popen(
            [*self._command, "--port", str(self.port)], stdout=subprocess.PIPE, stderr=log, text=True, env=self._env
        )
        self._processes.append((process, log))
        line = _readline(process, 60)
        if not line:
            log.seek(0)
            raise SystemExit("the emulator did not start:\n" + log.read().decode(errors="replace")[-2000:])
        port: int = json.loads(line)["port"]
        return port

    def quota(self) -> dict[str, Any]:
        """The first process's quota readings (``StreamQuota.stats()``): it answers SIGUSR1 with a line."""
        process = self._processes[0][0]
        with self._quota_lock:  # one question, one answer: callers on several threads take turns
            process.send_signal(signal.SIGUSR1)
            line = _readline(process, 10)
        if not line:
            raise RuntimeError("the emulator did not report its quota")
        readings: dict[str, Any] = json.loads(line)
        return readings

    @property
    def processes(self) -> int:
        return len(self._processes)

    @property
    def pids(self) -> str:
        """The processes' ids, comma-separated (a driver's ``--server-pids``)."""
        return ",".join(str(process.pid) for process, _ in self._processes)

    def close(self) -> None:
        for process, log in self._processes:
            stop_process(process)
            log.close()
        self._processes.clear()
        self._dir.cleanup()


def presign(emulator: Emulator, texts: list[str], path: Path) -> None:
    """Sign each request once, with its event envelopes, for the floor to replay byte for byte."""
    from amazon_polly_streaming._wire.request import CLOSE_STREAM_EVENT, RequestSigner, synthesis_params, text_event
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


class Runner:
    """The workloads against ``emulator``; a context manager: on exit, its scratch folder is removed
    (it holds a signed request), whether the run finished or not."""

    def __init__(self, emulator: Emulator, counts: Counts) -> None:
        self.emulator = emulator
        self.counts = counts
        self.began = time.monotonic()
        self._scratch_dir = tempfile.TemporaryDirectory(prefix="polly-bench-")
        self._scratch = Path(self._scratch_dir.name)
        #: Why the uvloop rows are skipped, or None when uvloop is there.
        self.uvloop_error: str | None = None
        try:
            import uvloop  # noqa: F401 - only whether it is installed
        except ImportError:
            self.uvloop_error = "uvloop is not installed (pip install uvloop): the uvloop rows are skipped"

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._scratch_dir.cleanup()

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f} s] {message}", file=sys.stderr, flush=True)

    def drive(
        self,
        client: Client,
        mode: str,
        timeout: float,
        emulator: Emulator | None = None,
        *,
        wrapper: list[str] | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Run ``client``'s driver once in a fresh process (against ``emulator``, by default the run's), under
        ``wrapper`` (a command line, such as valgrind's) if given, with ``env`` added; its JSON result, or
        ``{"error": ...}``."""
        emulator = emulator or self.emulator
        args = [*(wrapper or []), client.python, str(HERE / client.driver), "--mode", mode, "--timeout", f"{timeout:g}"]
        args += ["--endpoint", emulator.endpoint_url, "--ca", emulator.ca_file]
        if client.kind == "floor":
            # Signed now: the emulator allows 5 minutes of clock skew, like Polly.
            presigned = self._scratch / "presigned.json"
            texts = [SHORT_TEXT, HOLD_TEXT, bulk_text(self.counts.stream_bytes)]
            presign(emulator, texts, presigned)
            args += ["--presigned", str(presigned)]
        for name, value in options.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        try:
            out = subprocess.run(
                args,
                capture_output=True,
                text=True,
                timeout=timeout + 30,
                env={**client_env(client), **(env or {})},
                check=False,
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
            for client in turns(clients, index):
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
            for client in turns(clients, index):
                if client.kind != "peer" or not index:
                    runs[client.name].append(self.drive(client, mode, timeout, **options))
        return runs

    def sequential(
        self,
        clients: list[Client],
        rows: dict[str, dict[str, Any]],
        mode: str,
        calls: int,
        loop: str,
        fields: dict[str, str],
    ) -> None:
        """Workload ``mode`` (``calls`` sequential calls) on ``loop``: ``rows[name][key + suffix]``, the
        median over the rounds of each run's ``fields[key]``."""
        timeout = 60 + (calls + self.counts.warmup) * 0.3
        runs = self.rounds(clients, mode, timeout, n=calls, warmup=self.counts.warmup, loop=loop)
        suffix = _SUFFIX[loop]
        for client in clients:
            named = {key + suffix: field for key, field in fields.items()}
            self.summarize(rows[client.name], mode + suffix, runs[client.name], named)

    @staticmethod
    def summarize(row: dict[str, Any], key: str, runs: list[dict[str, Any]], fields: dict[str, str]) -> None:
        """``row[name]``: the median over the runs of their ``fields[name]``; the runs in ``row[key + "_runs"]``."""
        good = [run for run in runs if not run.get("error")]
        if len(good) < len(runs):
            row["errors"][key] = next(run["error"] for run in runs if run.get("error"))
        for name, field in fields.items():
            values = [float(run[field]) for run in good if run.get(field) is not None]
            row[name] = statistics.median(values) if values else None
        row[key + "_runs"] = good

    def run(self, clients: list[Client]) -> dict[str, dict[str, Any]]:
        counts = self.counts
        rows: dict[str, dict[str, Any]] = {
            client.name: {"python": client.python, "version": client.version, "errors": {}} for client in clients
        }

        def note(key: str, label: str, unit: str) -> None:
            values = ", ".join(f"{c.name} {fmt(rows[c.name].get(key))}" for c in clients)
            self.log(f"{label} ({unit}): {values}")

        def record(client: Client, key: str, result: dict[str, Any], fields: dict[str, str]) -> None:
            row = rows[client.name]
            if result.get("error"):
                row["errors"][key] = result["error"]
            for name, field in fields.items():
                row[name] = result.get(field)
            row[key + "_run"] = result

        self.log(f"1/8 import time: median of {counts.imports} processes per client")
        self.sampled(clients, rows, "import_ms", counts.imports, self.import_ms)
        note("import_ms", "import", "ms")

        self.log(f"2/8 cold start: median of {counts.cold} processes per client")
        self.sampled(clients, rows, "cold_start_ms", counts.cold, self.cold_ms)
        note("cold_start_ms", "cold start to first audio", "ms")

        pair = [client for client in clients if client.kind != "peer"]
        groups = {"asyncio": clients, "uvloop": pair if self.uvloop_error is None else []}
        self.log(f"3/8 warm time to first audio: {counts.ttfa} calls per process")
        fields = {"ttfa_median_ms": "median_ms", "ttfa_p99_ms": "p99_ms"}
        for loop, group in groups.items():
            self.sequential(group, rows, "ttfa", counts.ttfa, loop, fields)
            note("ttfa_median_ms" + _SUFFIX[loop], f"warm TTFA median on {loop}", "ms")

        self.log(f"4/8 CPU per short utterance: {counts.cpu} sequential calls per process")
        fields = {"cpu_us_per_call": "cpu_us_per_call", "wall_us_per_call": "wall_us_per_call"}
        for loop, group in groups.items():
            self.sequential(group, rows, "cpu", counts.cpu, loop, fields)
            note("cpu_us_per_call" + _SUFFIX[loop], f"CPU per short utterance on {loop}", "us")

        streams, size = counts.streams, counts.stream_bytes
        self.log(f"5/8 {streams} concurrent streams x {size / 2**20:g} MiB PCM, {counts.bulk_rounds} rounds")
        for client in clients:
            result = self.drive(
                client, "throughput", 300, streams=streams, bytes=size, rounds=counts.bulk_rounds, pool_size=streams
            )
            record(client, "bulk", result, {"bulk_cpu_s_per_mb": "cpu_s_per_mb", "bulk_wall_s": "wall_s"})
        note("bulk_cpu_s_per_mb", "bulk CPU per MB", "s")

        held = counts.memory_streams
        self.log(
            f"6/8 memory: {held} idle connections, {held} open streams, {held} idle connections after "
            f"{size / 2**20:g} MiB each; {held} streams in a fresh process"
        )
        # RSS after bulk audio depends on how much of the TLS read buffer the reads happened to touch:
        # ours and the floor take the median of several processes, as for CPU.
        runs = self.rounds(clients, "memory", 120, streams=held, pool_size=held, bytes=size)
        fresh_runs = self.rounds(clients, "memory-fresh", 120, streams=held, pool_size=held)
        for client in clients:
            fields = {
                "rss_kb_per_open_stream": "rss_per_open_stream_kb",
                "rss_kb_per_idle_connection": "rss_per_idle_connection_kb",
                "rss_kb_per_idle_connection_after_bulk": "rss_per_idle_connection_after_bulk_kb",
                "connections_for_streams": "connections_opened",
            }
            self.summarize(rows[client.name], "memory", runs[client.name], fields)
            fields = {"rss_kb_per_stream_fresh": "rss_per_stream_fresh_kb"}
            self.summarize(rows[client.name], "memory_fresh", fresh_runs[client.name], fields)
        note("rss_kb_per_idle_connection", "RSS per idle connection, fresh", "KB")
        note("rss_kb_per_idle_connection_after_bulk", "RSS per idle connection after bulk audio", "KB")
        note("rss_kb_per_stream_fresh", "RSS per concurrent stream (fresh process)", "KB")
        return rows

    def _scan_levels(self) -> list[tuple[str, int]]:
        """(loop, conversations) of every level of the scan: all on asyncio, some on uvloop (when installed)."""
        levels = [("asyncio", n) for n in self.counts.scan_levels]
        if self.uvloop_error is None:
            levels += [("uvloop", n) for n in self.counts.scan_uvloop_levels]
        return levels

    def scan(self, pair: list[Client]) -> list[dict[str, Any]]:
        """The concurrency scan: N conversations at once, ours and the floor interleaved, per loop and N."""
        counts = self.counts
        levels = self._scan_levels()
        self.log(
            f"7/8 concurrency scan: N = {', '.join(str(n) for _, n in levels[: len(counts.scan_levels)])} "
            f"conversations at once (uvloop: {', '.join(str(n) for loop, n in levels if loop == 'uvloop') or '-'}), "
            f"{counts.scan_calls} calls per process, {counts.scan_rounds} processes per client"
        )
        out = []
        for loop, conversations in levels:
            per = max(counts.scan_min_calls, counts.scan_calls // conversations)
            row: dict[str, Any] = {"loop": loop, "conversations": conversations, "calls_per_conversation": per}
            runs: dict[str, list[dict[str, Any]]] = {client.name: [] for client in pair}
            for index in range(counts.scan_rounds):
                for client in turns(pair, index):
                    runs[client.name].append(self.scan_once(client, loop, conversations))
            for client in pair:
                row[client.name] = _scan_medians(runs[client.name])
            ours, floor = row.get(OURS, {}), row.get(FLOOR, {})
            self.log(
                f"  {loop} N={conversations}: CPU/stream ours {fmt(ours.get('cpu_us_per_stream'))} us, floor "
                f"{fmt(floor.get('cpu_us_per_stream'))} us; TTFA p99 ours {fmt(ours.get('ttfa_p99_ms'))} ms, floor "
                f"{fmt(floor.get('ttfa_p99_ms'))} ms; busiest emulator process "
                f"{pct(ours.get('server_busiest'))} / {pct(floor.get('server_busiest'))} of a CPU"
            )
            out.append(row)
        return out

    def in_turns(self) -> list[dict[str, Any]]:
        """Ours and the floor taking turns in blocks, at each level of the scan, in a few processes.

        Fresh processes of the same code differ by 10-40 % in CPU per stream
        on this kind of machine (a process lands in a fast or a slow mode and
        stays there), so the scan's ratio of medians over five processes moves
        by as much between runs. Rounds of one process, each a block of ours
        and a block of the floor in ABBA order, share the process's mode: the
        ratio of a round holds still far better. It still depends a little on
        the process's mode (the two clients' code lands apart in memory: one
        process's rounds gave 1.09x, another's 1.17x), so the rounds are
        spread over ``turns_processes`` processes, which of the two starts
        swapped in every other one, and the median is taken of all their
        rounds' ratios.
        """
        counts = self.counts
        levels = self._scan_levels()
        processes = counts.turns_processes
        self.log(
            f"7b/8 CPU per stream, ours and the floor taking turns in {processes} processes per level: "
            f"{counts.turns_rounds} rounds of {counts.turns_calls} calls in all at N=1, fewer rounds of larger "
            f"blocks (8 calls per conversation) above, at least {counts.turns_min_rounds}"
        )
        out = []
        for loop, conversations in levels:
            block = max(counts.turns_calls, 8 * conversations)
            rounds = max(counts.turns_min_rounds, counts.turns_rounds * counts.turns_calls // block)
            per_process = -(-rounds // (2 * processes)) * 2  # even: as many rounds start with each client
            row: dict[str, Any] = {"loop": loop, "conversations": conversations, "block": block}
            row.update(self._turns_level(loop, conversations, block, per_process))
            if not row.get("error"):
                ratios, medians = row["ratios"], row["process_ratios"]
                self.log(
                    f"  {loop} N={conversations}: ours {row['b_us_per_call']:.0f} us, floor "
                    f"{row['a_us_per_call']:.0f} us per stream, {row['b_over_a']:.3f}x (rounds "
                    f"{min(ratios):.2f}-{max(ratios):.2f}; processes {', '.join(f'{r:.3f}' for r in medians)})"
                )
            else:
                self.log(f"  {loop} N={conversations}: {row['error']}")
            out.append(row)
        return out

    def _turns_level(self, loop: str, conversations: int, block: int, rounds: int) -> dict[str, Any]:
        """One level of :meth:`in_turns`: the floor's (``a``) and ours' (``b``) medians, the median of every
        round's ratio of ours to the floor, and each process's median ratio; or ``{"error"}``."""
        ours_us: list[float] = []
        floor_us: list[float] = []
        ratios: list[float] = []
        process_ratios: list[float] = []
        for index in range(self.counts.turns_processes):
            swapped = index % 2 == 1  # ours starts every other process
            pair = (str(SRC), "floor") if swapped else ("floor", str(SRC))
            result = self.taking_turns(*pair, loop=loop, conversations=conversations, rounds=rounds, block=block)
            if result.get("error"):
                return {"error": result["error"]}
            theirs = [1 / r for r in result["ratios"]] if swapped else list(result["ratios"])
            ratios += theirs
            process_ratios.append(statistics.median(theirs))
            a, b = result["a_us_per_call"], result["b_us_per_call"]
            ours_us.append(a if swapped else b)
            floor_us.append(b if swapped else a)
        return {
            "a_us_per_call": statistics.median(floor_us),
            "b_us_per_call": statistics.median(ours_us),
            "b_over_a": statistics.median(ratios),
            "ratios": [round(r, 4) for r in ratios],
            "process_ratios": [round(r, 4) for r in process_ratios],
        }

    def taking_turns(self, a: str, b: str, *, loop: str, conversations: int, rounds: int, block: int) -> dict[str, Any]:
        """Two clients in one process taking turns in blocks of short utterances (``ab_driver.py``; each
        ``floor`` or a ``src/`` tree): ``{"a_us_per_call", "b_us_per_call", "b_over_a", "ratios"}``, or
        ``{"error"}``."""
        # Signed now, for each process, as drive() signs the floor's: the emulator allows 5 minutes of clock
        # skew, and the turns of a full run's levels take about that together.
        presigned = self._scratch / "presigned-turns.json"
        presign(self.emulator, [SHORT_TEXT], presigned)
        # Started as ours is: the benchmarks and this checkout on its path (the floor's header-block encoder).
        driver = Client(OURS, "ours", sys.executable, "ab_driver.py", "", "")
        return self.drive(
            driver,
            "cpu",
            1200,
            presigned=presigned,
            a=a,
            b=b,
            n=rounds,
            block=block,
            streams=conversations,
            pool_size=conversations,
            loop=loop,
        )

    def scan_once(
        self, client: Client, loop: str, conversations: int, emulator: Emulator | None = None
    ) -> dict[str, Any]:
        """One scan process: ``conversations`` at once on ``loop``."""
        emulator = emulator or self.emulator
        per = max(self.counts.scan_min_calls, self.counts.scan_calls // conversations)
        result = self.drive(
            client,
            "scan",
            120 + per * conversations * 0.02,
            emulator,
            streams=conversations,
            n=per,
            warmup=2,
            pool_size=conversations,
            server_pids=emulator.pids,
            loop=loop,
        )
        if not result.get("error"):
            shares = [share for share in result.get("server_cpu_shares") or [] if share is not None]
            result["server_busiest"] = max(shares) if shares else None
        return result

    def emulator_check(self, ours: Client, conversations: int) -> dict[str, Any]:
        """Ours at ``conversations`` against this run's emulator and against one with a process more (or,
        when this run's has several, with one process), interleaved: if the emulator held the client back,
        the figures differ."""
        processes = 2 if self.emulator.processes == 1 else 1
        self.log(
            f"emulator check: ours at N={conversations}, {self.emulator.processes} vs {processes} emulator processes"
        )
        other = Emulator(processes, self.emulator.loop)
        runs: dict[int, list[dict[str, Any]]] = {self.emulator.processes: [], processes: []}
        try:
            for _ in range(self.counts.scan_rounds):
                for emulator in (self.emulator, other):
                    runs[emulator.processes].append(self.scan_once(ours, "asyncio", conversations, emulator))
        finally:
            other.close()
        return {"conversations": conversations, "by_processes": {str(k): _scan_medians(v) for k, v in runs.items()}}

    def cache(self, ours: Client) -> dict[str, Any]:
        """The phrase cache's rows (TTFA and CPU per call: memory hit, Redis hit, miss) and RSS under its bound."""
        counts = self.counts
        result: dict[str, Any] = {}
        for mode in ("rows", "rss"):
            self.log(f"9/9 phrase cache: {mode}")
            args = [ours.python, str(HERE / "cache_speed.py"), "--mode", mode]
            args += ["--endpoint", self.emulator.endpoint_url, "--ca", self.emulator.ca_file]
            args += ["--calls", str(counts.cache_calls), "--phrases", str(counts.cache_phrases)]
            args += ["--max-bytes", str(counts.cache_max_bytes)]
            try:
                out = subprocess.run(
                    args, capture_output=True, text=True, timeout=900, env=client_env(ours), check=False
                )
            except subprocess.TimeoutExpired:
                result[mode] = {"error": "no result within 900 s"}
                continue
            if out.returncode != 0:
                result[mode] = {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:300]}
                continue
            result[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def codec(self, ours: Client) -> dict[str, Any]:
        self.log("8/9 codec alone (sans-IO, no sockets)")
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
