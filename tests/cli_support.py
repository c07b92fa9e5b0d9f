"""Running the real ``polly-stream`` console script in a subprocess, against an emulator."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import clean_env

from amazon_polly_streaming.emulator import Emulator, EmulatorThread
from support import KEY, SECRET


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    """One emulator for a test module (strict HTTP/2), in a thread of its own."""
    with Emulator.start_in_thread(strict=True) as running:
        yield running


def duration(data: bytes) -> float:
    """Seconds of audio in ``data`` (any format soundfile reads)."""
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data))
    return float(len(samples) / rate)


def command() -> list[str]:
    script = Path(sys.executable).parent / "polly-stream"
    if script.exists():
        return [str(script)]
    found = shutil.which("polly-stream")
    return [found] if found else [sys.executable, "-m", "amazon_polly_streaming.cli"]


def cli_env(emulator: EmulatorThread | None, **extra: str) -> dict[str, str]:
    """The environment without the developer's AWS settings, pointed at ``emulator``."""
    env = clean_env(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1")
    if emulator is not None:
        env.update(AWS_ENDPOINT_URL_POLLY=emulator.endpoint_url, AWS_CA_BUNDLE=emulator.ca_file)
    env.update(extra)
    return env


def run(args: list[str], emulator: EmulatorThread | None, *, stdin: bytes | None = None, **env: str) -> Any:
    return subprocess.run(
        command() + args,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=cli_env(emulator, **env),
        timeout=60,
        check=False,
    )
