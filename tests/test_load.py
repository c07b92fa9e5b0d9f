"""Volume with faults: nothing lost, nothing hangs, nothing leaks.

    bash scripts/test tests/test_load.py -s                       # the CI size: 5,000 calls
    POLLY_SOAK_SECONDS=1800 .venv/bin/python -m pytest tests/test_load.py -m soak -s   # a soak run

Only on 127.0.0.1, bounded in count and time. The report (printed with -s,
and written to load-report.json in the test's temporary directory) gives calls,
errors by type against the faults injected, hangs, byte-for-byte audio
checks, peak RSS and open file descriptors before and after.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from amazon_polly_streaming import PollyStreamingClient, PollyStreamingError
from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS, Emulator
from support import open_fds

# Each injected fault, and the error the caller must see for it.
FAULTS = {
    "throttling@after_headers": "ThrottlingException",
    "validation@after_first_audio": "ValidationException",
    "service_failure@before_headers": "ServiceFailureException",
    "quota_exceeded@after_close": "ServiceQuotaExceededException",
    "http_error": "HTTPStatusError",
    "http_error_no_end": "HTTPStatusError",
    "rst_stream@after_first_audio": "StreamResetError",
    "refuse_stream": "StreamResetError",
    "drop@after_headers": "ConnectionLostError",
    "goaway@after_first_audio": "ConnectionLostError",
    "corrupt_crc@after_first_audio": "EventStreamError",
    "no_stream_closed": "IncompleteStreamError",
    "truncate@after_first_audio": "IncompleteStreamError",
    "stall@after_first_audio": "ReadTimeoutError",
    "never_answer": "ReadTimeoutError",
}
TEXTS = ("Hi.", "Hello there.", "How can I help?", "One moment please.")
READ_TIMEOUT = 0.5
HANG_LIMIT = 5.0  # a call that takes longer than this counts as a hang


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_load(calls: int | None, seconds: float | None, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    gc.collect()
    fds_before = open_fds()
    key, secret = next(iter(DEFAULT_CREDENTIALS.items()))
    injected: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    mismatched: list[str] = []
    hangs = 0
    ok = 0
    received: dict[str, bytes] = {}
    started = time.monotonic()
    async with Emulator(audio="tone", record_audio=True, strict=True) as emulator:
        client = PollyStreamingClient(
            "us-east-1",
            pool_size=16,
            endpoint_url=emulator.endpoint_url,
            verify=emulator.ca_file,
            credentials=(key, secret),
            read_timeout=READ_TIMEOUT,
            connect_timeout=2.0,
        )
        counter = iter(range(10**9))

        async def worker() -> None:
            nonlocal hangs, ok
            while True:
                index = next(counter)
                if calls is not None and index >= calls:
                    return
                if seconds is not None and time.monotonic() - started > seconds:
                    return
                fault = rng.choice(sorted(FAULTS)) if rng.random() < 0.10 else None
                marker = f"[{index}]"
                text = f"{marker} {rng.choice(TEXTS)}"
                if fault:
                    text = f"{{{{fault:{fault}}}}} {text}"
                if fault:
                    injected[FAULTS[fault]] += 1
                audio = bytearray()
                call_started = time.monotonic()
                try:
                    async with asyncio.timeout(HANG_LIMIT):
                        async for chunk in client.start_speech_synthesis_stream(
                            text=text, voice_id="Matthew", output_format="pcm", sample_rate="16000"
                        ):
                            audio += chunk
                except Exception as exc:
                    if isinstance(exc, TimeoutError) and not isinstance(exc, PollyStreamingError):
                        hangs += 1  # our HANG_LIMIT, not the client's ReadTimeoutError
                        mismatched.append(f"{marker} {fault or 'no fault'} hung")
                        continue
                    errors[type(exc).__name__] += 1
                    if not fault:
                        mismatched.append(f"{marker} unexpected {type(exc).__name__}: {exc}")
                    elif FAULTS[fault] != type(exc).__name__:
                        mismatched.append(f"{marker} {fault} gave {type(exc).__name__}")
                    continue
                if fault:
                    mismatched.append(f"{marker} {fault} raised nothing")
                ok += 1
                received[marker] = bytes(audio)
                assert time.monotonic() - call_started < HANG_LIMIT

        await asyncio.gather(*(worker() for _ in range(32)))
        await client.close()
        await emulator.wait_for(lambda: emulator.open_connections == 0, 5.0)
        # Byte for byte against what the server sent for every successful call.
        by_marker = {r.texts[0]["text"].split("]")[0].strip() + "]": r for r in emulator.requests if r.texts}
        differing = [m for m, audio in received.items() if bytes(by_marker[m].audio or b"") != audio]
        total_bytes = sum(len(a) for a in received.values())
    gc.collect()
    fds_after = open_fds()
    return {
        "calls": ok + sum(errors.values()) + hangs,
        "succeeded": ok,
        "errors_by_type": dict(sorted(errors.items())),
        "injected_by_expected_type": dict(sorted(injected.items())),
        "mismatches": mismatched[:20],
        "hangs": hangs,
        "audio_bytes_compared": total_bytes,
        "audio_calls_differing": len(differing),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "open_fds_before": fds_before,
        "open_fds_after": fds_after,
        "seconds": round(time.monotonic() - started, 1),
    }


def _check(report: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "load-report.json").write_text(json.dumps(report, indent=2))
    print("\nload report:", json.dumps(report, indent=2))
    assert report["hangs"] == 0
    assert report["mismatches"] == []
    assert report["errors_by_type"] == report["injected_by_expected_type"]
    assert report["audio_calls_differing"] == 0
    assert report["open_fds_after"] <= report["open_fds_before"]


@pytest.mark.timeout(600)
def test_load_5000_calls_with_faults(tmp_path: Path) -> None:
    calls = int(os.environ.get("POLLY_LOAD_CALLS", "5000"))
    report = asyncio.run(run_load(calls, None))
    assert report["calls"] == calls
    _check(report, tmp_path)


@pytest.mark.soak
@pytest.mark.timeout(0)
def test_soak(tmp_path: Path) -> None:
    seconds = float(os.environ.get("POLLY_SOAK_SECONDS", "1800"))
    report = asyncio.run(run_load(None, seconds))
    _check(report, tmp_path)
