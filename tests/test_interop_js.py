"""AWS's SDK for JavaScript v3 (``@aws-sdk/client-polly``) against the emulator.

The SDK is pinned by ``tests/interop/js/package-lock.json`` and installed with
``npm ci`` into ``tests/interop/js/node_modules`` on first use (again only when
the lockfile changes). Each test runs ``tests/interop/js/synthesize.mjs``, one
``StartSpeechSynthesisStreamCommand`` with the SDK's default HTTP/2 handler,
request signing and event signing, and compares what the SDK reports with what
the emulator recorded. The expectations are AWS's behaviour, not ours: what
the SDK does against the real service. Skipped, saying why, only where
``node`` or ``npm`` is missing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import clean_env, locked

from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS, Emulator, EmulatorThread, RequestRecord
from interop import THROTTLING_MESSAGE

HARNESS = Path(__file__).resolve().parent / "interop" / "js"
SCRIPT = HARNESS / "synthesize.mjs"
#: Written into node_modules after a successful ``npm ci``: the lockfile it installed.
INSTALLED_MARKER = ".installed-lock-sha256"
KEY, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]


def _ensure_node_modules(npm: str) -> None:
    """``npm ci`` from the committed lockfile, unless node_modules already holds exactly that."""
    wanted = hashlib.sha256((HARNESS / "package-lock.json").read_bytes()).hexdigest()
    marker = HARNESS / "node_modules" / INSTALLED_MARKER
    with locked(HARNESS / ".install.lock"):  # concurrent runs share the worktree
        if marker.exists() and marker.read_text().strip() == wanted:
            return
        print(f"installing the JS SDK into {HARNESS / 'node_modules'} (npm ci) ...", file=sys.stderr, flush=True)
        # --ignore-scripts: nothing in the tree needs an install script, and none should run.
        out = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=HARNESS,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if out.returncode != 0:
            pytest.fail(f"npm ci failed in {HARNESS}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        marker.write_text(wanted + "\n")


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = f"the JS SDK interop needs node and npm on PATH (node: {node}, npm: {npm})"
        # A warning, so the reason shows in a default run's summary (skip reasons need -rs).
        warnings.warn(f"skipped: {reason}", stacklevel=1)
        pytest.skip(reason)
    _ensure_node_modules(npm)
    return node


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with Emulator.start_in_thread(record_audio=True) as running:
        yield running


def run_sdk(node: str, emulator: EmulatorThread, *, secret: str = SECRET, **options: str) -> dict[str, Any]:
    """Run the harness; its JSON report plus ``audio`` (the bytes the SDK handed over) and ``records`` (the
    emulator's records of the requests this run made)."""
    requests = emulator.emulator.requests
    before = len(requests)
    out_file = Path(options.pop("out"))
    args = [node, str(SCRIPT), "--endpoint", emulator.endpoint_url, "--ca", emulator.ca_file]
    args += ["--access-key-id", KEY, "--secret-access-key", secret, "--timeout", "30", "--out", str(out_file)]
    for name, value in options.items():
        args += [f"--{name}", value]
    # The SDK must not pick up a profile, region or proxy of the machine running the tests.
    env = clean_env()
    done = subprocess.run(args, cwd=HARNESS, capture_output=True, text=True, timeout=90, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    assert lines, f"the harness printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = done.stderr[-3000:]
    result["audio"] = out_file.read_bytes() if out_file.exists() else b""
    result["records"] = requests[before:]
    return result


def describe(result: dict[str, Any]) -> str:
    """What went wrong, for an assertion message: the SDK's error, the events it saw, its stderr."""
    return f"error={result['error']} events={result['events']} stderr:\n{result['stderr']}"


def record_of(result: dict[str, Any]) -> RequestRecord:
    """The emulator's record of the request this run of the SDK made (by x-amzn-requestid when the SDK saw
    one): never a previous test's."""
    own: list[RequestRecord] = result["records"]
    assert own, f"the SDK never reached the emulator: {describe(result)}"
    request_id = result.get("requestId")
    if request_id:
        matching = [record for record in own if record.request_id == request_id]
        assert matching, f"no request {request_id} among this run's: {[r.request_id for r in own]}"
        return matching[-1]
    return own[-1]


#: What each format's bytes start with (a check that the SDK delivered audio, not an envelope).
MAGIC = {"mp3": (b"ID3", b"\xff"), "ogg_vorbis": (b"OggS",)}


@pytest.mark.parametrize(("fmt", "rate"), [("pcm", "16000"), ("mp3", "24000"), ("ogg_vorbis", "24000")])
def test_js_sdk_receives_every_byte(node: str, emulator: EmulatorThread, tmp_path: Path, fmt: str, rate: str) -> None:
    result = run_sdk(
        node,
        emulator,
        format=fmt,
        rate=rate,
        voice="Matthew",
        text="Hello from the JavaScript SDK. A second sentence follows.",
        out=str(tmp_path / "audio"),
    )
    assert result["error"] is None, describe(result)
    record = record_of(result)
    assert (record.status, record.outcome) == (200, "ok"), record
    assert record.access_key_id == KEY
    assert record.audio is not None
    assert record.audio_bytes > 0
    # Every byte the emulator sent, in order, and nothing else.
    assert result["audio"] == bytes(record.audio)
    assert result["bytes"] == record.audio_bytes
    assert result["audio"].startswith(MAGIC.get(fmt, (b"",)))
    # The SDK also decoded the closing event (a JSON-bodied event, unlike the audio).
    assert result["events"].get("StreamClosedEvent") == 1, describe(result)
    assert result["events"].get("RequestCharacters") == record.billed_characters


def test_js_sdk_wrong_secret_is_invalid_signature(node: str, emulator: EmulatorThread, tmp_path: Path) -> None:
    result = run_sdk(node, emulator, secret="not-the-secret-key", out=str(tmp_path / "audio"))
    error = result["error"]
    assert error is not None, describe(result)
    assert error["name"] == "InvalidSignatureException", describe(result)
    assert error["status"] == 403
    # Refused because the signature does not match (AWS's wording), not for another reason.
    assert "signature we calculated does not match" in error["message"], describe(result)
    record = record_of(result)
    assert (record.status, record.outcome) == (403, "error:InvalidSignatureException")
    assert result["audio"] == b""


@pytest.mark.parametrize("phase", ["before_headers", "after_headers"])
def test_js_sdk_throttling_fault(node: str, emulator: EmulatorThread, tmp_path: Path, phase: str) -> None:
    """before_headers: an HTTP 400 error response; after_headers: an exception event on the stream."""
    result = run_sdk(node, emulator, text=f"{{{{fault:throttling@{phase}}}}} Hello.", out=str(tmp_path / "audio"))
    error = result["error"]
    assert error is not None, describe(result)
    assert error["name"] == "ThrottlingException", describe(result)
    # The SDK reads the model's `message` member; without it, it says "Unknown".
    assert error["message"] == THROTTLING_MESSAGE, describe(result)
    assert record_of(result).outcome == "fault:throttling"


def test_js_sdk_unknown_voice_is_validation_error(node: str, emulator: EmulatorThread, tmp_path: Path) -> None:
    result = run_sdk(node, emulator, voice="NoSuchVoice", out=str(tmp_path / "audio"))
    error = result["error"]
    assert error is not None, describe(result)
    assert error["name"] == "ValidationException", describe(result)
    assert error["status"] == 400
    assert error["message"] not in ("", "Unknown"), describe(result)
    assert "NoSuchVoice" in error["message"], describe(result)
    record = record_of(result)
    assert (record.status, record.outcome) == (400, "error:ValidationException")
