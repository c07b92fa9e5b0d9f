"""Clients we did not write, against the emulator in its default mode with signature checks on.

The 1.1.0 release of amazon-polly-streaming and AWS's aws-sdk-polly[awscrt]
each run in their own Python 3.12+ virtualenv (created on first use, cached in
.bench-venvs/), through the benchmark's drivers. Without a Python 3.12+ on the
machine these tests skip, saying so.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import PEERS, Peer, clean_env, ensure_venv, find_python

from amazon_polly_streaming.emulator import Emulator, EmulatorThread, RequestRecord
from interop import THROTTLING_MESSAGE

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = [pytest.mark.interop, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def peer_python() -> str:
    python = find_python()
    if python is None:
        pytest.skip("interop needs a Python 3.12+ for the peer clients (none found; set POLLY_PEER_PYTHON)")
    return python


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with Emulator.start_in_thread(record_audio=True) as running:
        yield running


def _synth(
    interpreter: Path, peer: Peer, emulator: EmulatorThread, **options: Any
) -> tuple[dict[str, Any], list[RequestRecord]]:
    """The driver's result, and the records of the requests this run made (asserted: at least one).

    A peer that never reached the emulator (a bad environment, a TLS or install failure) would otherwise
    be judged on the previous test's request.
    """
    requests = emulator.emulator.requests
    before = len(requests)
    args = [str(interpreter), str(BENCHMARKS / peer.driver), "--mode", "synth", "--timeout", "20"]
    args += ["--endpoint", emulator.endpoint_url, "--ca", emulator.ca_file]
    for name, value in options.items():
        args += [f"--{name}", str(value)]
    # Credentials come from the driver's arguments; nothing else of the machine's AWS settings.
    env = clean_env(PYTHONPATH=str(BENCHMARKS))
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)
    if out.returncode != 0:
        # A client that hangs is stopped by the driver's own timeout.
        result = {"bytes": None, "error": {"type": "DriverFailed", "message": out.stderr.strip()[-300:]}}
    else:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    own = requests[before:]
    assert own, f"{peer.name} never reached the emulator: {result['error']}"
    return result, own


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
@pytest.mark.parametrize(("fmt", "rate"), [("mp3", "24000"), ("ogg_vorbis", "24000"), ("pcm", "16000")])
def test_peer_synthesizes_each_format(
    peer: Peer, fmt: str, rate: str, peer_python: str, emulator: EmulatorThread
) -> None:
    interpreter = ensure_venv(peer, peer_python)
    result, own = _synth(interpreter, peer, emulator, format=fmt, rate=rate, text="Interoperability works.")
    assert result["error"] is None, result
    [record] = own
    assert record.outcome == "ok"
    assert record.access_key_id == "AKIDEXAMPLE"
    assert result["bytes"] == record.audio_bytes > 0  # every byte the emulator sent arrived


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
def test_peer_with_a_wrong_secret_is_rejected(peer: Peer, peer_python: str, emulator: EmulatorThread) -> None:
    interpreter = ensure_venv(peer, peer_python)
    result, own = _synth(interpreter, peer, emulator, secret="not-the-secret-key")
    [record] = own  # refused for good: not retried
    assert (record.status, record.outcome) == (403, "error:InvalidSignatureException")
    assert result["bytes"] is None  # the client did not report success


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
@pytest.mark.parametrize("phase", ["before_headers", "after_headers"])
def test_peer_gets_modeled_errors_with_their_message(
    peer: Peer, phase: str, peer_python: str, emulator: EmulatorThread
) -> None:
    """before_headers: an HTTP error response; after_headers: an exception event on the stream."""
    interpreter = ensure_venv(peer, peer_python)
    result, own = _synth(interpreter, peer, emulator, text=f"{{{{fault:throttling@{phase}}}}} Hello.")
    # Throttling is retryable: each attempt met the same fault.
    assert {record.outcome for record in own} == {"fault:throttling"}
    assert result["error"] is not None
    assert "ThrottlingException" in result["error"]["bases"], result
    # aws-sdk-polly reads the model's `message` member only; the 1.1.0 release shows the whole body.
    assert THROTTLING_MESSAGE in result["error"]["message"], result
