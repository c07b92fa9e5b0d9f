"""The real ``polly-stream`` console script in a subprocess, and the sync helpers."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amazon_polly_streaming.emulator import Emulator, EmulatorThread
from support import KEY, SECRET

pytestmark = pytest.mark.timeout(60)
soundfile = pytest.importorskip("soundfile")


def _command() -> list[str]:
    script = Path(sys.executable).parent / "polly-stream"
    if script.exists():
        return [str(script)]
    found = shutil.which("polly-stream")
    return [found] if found else [sys.executable, "-m", "amazon_polly_streaming.cli"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with Emulator.start_in_thread(strict=True) as running:
        yield running


def _env(emulator: EmulatorThread | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1")
    if emulator is not None:
        env.update(AWS_ENDPOINT_URL_POLLY=emulator.endpoint_url, AWS_CA_BUNDLE=emulator.ca_file)
    env.update(extra)
    return env


def run(args: list[str], emulator: EmulatorThread | None, *, stdin: bytes | None = None, **env: str) -> Any:
    return subprocess.run(
        _command() + args,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=_env(emulator, **env),
        timeout=60,
        check=False,
    )


def _duration(data: bytes) -> float:
    samples, rate = soundfile.read(io.BytesIO(data))
    return float(len(samples) / rate)


def test_say_to_a_file(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "hello.mp3"
    result = run(["say", "Hello", "from", "the", "command", "line.", "-o", str(out)], emulator)
    assert result.returncode == 0, result.stderr
    assert 1.0 < _duration(out.read_bytes()) < 6.0
    assert str(out) in result.stderr.decode()
    assert "first audio after" in result.stderr.decode()
    assert run(["say", "Quiet.", "-o", str(out), "-q"], emulator).stderr == b""


def test_say_to_stdout_when_piped(emulator: EmulatorThread) -> None:
    result = run(["say", "Piped", "audio.", "--format", "ogg_vorbis", "-q"], emulator)
    assert result.returncode == 0, result.stderr
    assert _duration(result.stdout) > 0.5
    dash = run(["say", "Dash.", "-o", "-", "-q"], emulator)
    assert _duration(dash.stdout) > 0.3


def test_wav_has_a_valid_header(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "hi.wav"
    result = run(["say", "A wave file.", "--format", "wav", "--voice", "Joanna", "-o", str(out)], emulator)
    assert result.returncode == 0, result.stderr
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert wav.getnframes() * 2 == out.stat().st_size - 44
    piped = run(["say", "A piped wave.", "--format", "wav", "-q"], emulator)
    assert piped.stdout[:4] == b"RIFF"
    assert _duration(piped.stdout) > 0.3  # the streaming header decodes too


def test_stdin_streams_into_one_stream_and_speaks_before_it_ends(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "story.mp3"
    process = subprocess.Popen(
        [*_command(), "say", "-", "-o", str(out), "-q"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(emulator),
    )
    assert process.stdin is not None
    requests = emulator.emulator.requests
    before = len(requests)
    process.stdin.write(b"Once upon a time there was a slow producer.\n")
    process.stdin.flush()
    deadline = time.monotonic() + 10
    while not (len(requests) > before and requests[-1].audio_bytes > 0):
        assert time.monotonic() < deadline, "no audio while the text was still streaming"
        time.sleep(0.05)
    process.stdin.write(b"It wrote one more line, much later.\n")
    process.stdin.close()
    assert process.wait(30) == 0, process.stderr.read() if process.stderr else ""
    record = requests[-1]
    assert [t["text"] for t in record.texts if t["text"].strip()] == [
        "Once upon a time there was a slow producer.\n",
        "It wrote one more line, much later.\n",
    ]
    assert _duration(out.read_bytes()) > 2.0


def test_local_runs_offline(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp3"
    result = run(["say", "--local", "An offline demo.", "-o", str(out)], None)
    assert result.returncode == 0, result.stderr
    assert _duration(out.read_bytes()) > 0.5


def test_exit_codes_and_one_line_errors(emulator: EmulatorThread, tmp_path: Path) -> None:
    usage = run(["say", "x", "--format", "flac"], emulator)
    assert usage.returncode == 2
    rate = run(["say", "x", "--format", "pcm", "--sample-rate", "44100"], emulator)
    assert rate.returncode == 2
    assert b"sample_rate" in rate.stderr
    creds = run(["say", "x", "-o", str(tmp_path / "a.mp3")], emulator, AWS_SECRET_ACCESS_KEY="wrong")
    assert creds.returncode == 3
    assert b"wrong" not in creds.stderr
    service = run(["say", "{{fault:throttling}} x", "-o", str(tmp_path / "b.mp3")], emulator)
    assert service.returncode == 4
    assert service.stderr.decode().strip().count("\n") == 0
    assert "ThrottlingException" in service.stderr.decode()
    with socket_port_closed() as url:
        transport = run(["say", "x", "--endpoint-url", url, "-o", str(tmp_path / "c.mp3")], emulator)
    assert transport.returncode == 5


class socket_port_closed:
    def __enter__(self) -> str:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        return f"https://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_failed_stream_leaves_no_file(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "broken.mp3"
    text = "{{fault:drop@after_first_audio}} This stream will break after its first audio."
    result = run(["say", text, "-o", str(out)], emulator)
    assert result.returncode == 5
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_voices(emulator: EmulatorThread) -> None:
    listing = run(["voices", "--language", "en-US"], None)
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.decode().splitlines()]
    assert "Matthew" in names
    assert "Lea" not in names
    as_json = json.loads(run(["voices", "--json"], None).stdout)
    assert {
        "VoiceId": "Kajal",
        "LanguageCode": "en-IN",
        "Gender": "Female",
        "AdditionalLanguageCodes": ["hi-IN"],
    } in as_json


@pytest.mark.parametrize("args", [["--help"], ["say", "--help"], ["voices", "--help"], ["emulator", "--help"]])
def test_help_reads_well(args: list[str]) -> None:
    result = run(args, None)
    assert result.returncode == 0
    assert b"usage:" in result.stdout


def test_verbose_logs_never_show_secrets(emulator: EmulatorThread, tmp_path: Path) -> None:
    token = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN"
    result = run(["say", "Debug me.", "-v", "-o", str(tmp_path / "v.mp3")], emulator, AWS_SESSION_TOKEN=token)
    log = result.stderr.decode()
    assert "DEBUG" in log
    for secret in (SECRET, token, "Signature="):
        assert secret not in log


# ------------------------------------------------------------------ sync helpers


def test_sync_helpers(emulator: EmulatorThread) -> None:
    from amazon_polly_streaming.sync import iter_synthesize, synthesize

    options: dict[str, Any] = {
        "region": "us-east-1",
        "endpoint_url": emulator.endpoint_url,
        "verify": emulator.ca_file,
        "credentials": (KEY, SECRET),
        "output_format": "pcm",
        "sample_rate": "16000",
    }
    audio = synthesize("Hello from sync code.", "Matthew", **options)
    streamed = b"".join(iter_synthesize("Hello from sync code.", "Matthew", **options))
    assert abs(len(streamed) - len(audio)) < 0.05 * len(audio)
    early = iter_synthesize("One more time, but stop early.", "Matthew", **options)
    assert next(early)
    early.close()  # resets the stream and closes the loop

    async def inside_a_loop() -> None:
        with pytest.raises(RuntimeError, match="start_speech_synthesis_stream"):
            synthesize("x", "Matthew", **options)

    asyncio.run(inside_a_loop())
