"""The suite runs the same on a developer's machine as on a bare one, and leaves no clutter.

``.ci/run`` exports a developer's AWS settings (a missing profile, a wrong region, fake keys, an
unreachable endpoint, a missing CA bundle, a bogus default profile) and ignores SIGINT before running the
suite: these tests check the isolation itself, the others that nothing reading those settings slipped by.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from clients import COUNTS
from harness import Runner
from peers import AWS_ISOLATION, clean_env

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming._region import DEFAULT_REGION
from support import default_signals

pytestmark = pytest.mark.timeout(60)

DEVELOPER = {
    "AWS_PROFILE": "polly-tests-missing-profile",
    "AWS_REGION": "ap-nowhere-9",
    "AWS_ACCESS_KEY_ID": "AKIAFAKEDEVELOPERKEY",
    "AWS_ENDPOINT_URL_POLLY": "https://127.0.0.1:9",
    "AWS_CA_BUNDLE": "/nonexistent/ca-bundle.pem",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_RETRY_MODE": "legacy",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "no_proxy": "localhost",
}


def test_no_aws_setting_of_the_machine_reaches_a_test() -> None:
    assert {name: value for name, value in os.environ.items() if name.startswith("AWS_")} == AWS_ISOLATION
    client = PollyStreamingClient()  # what a developer's AWS_REGION, AWS_ENDPOINT_URL* or AWS_CA_BUNDLE would change
    assert client.region == DEFAULT_REGION
    assert client.endpoint.url == f"https://polly.{DEFAULT_REGION}.amazonaws.com"


def test_a_child_process_gets_no_aws_setting_and_no_proxy() -> None:
    env = clean_env({**DEVELOPER, "PATH": "/usr/bin"}, drop={"PATH"}, AWS_REGION="us-east-1", HOME="/nowhere")
    assert env == {**AWS_ISOLATION, "AWS_REGION": "us-east-1", "HOME": "/nowhere"}


@contextmanager
def _started_with_sigint_ignored_and_blocked() -> Iterator[None]:
    """This process as under ``nohup`` or ``cmd &`` (ignored), and with SIGINT blocked besides."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)


def _child_sigint(**popen: Any) -> str:
    probe = (
        "import signal; "
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
        "signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))"
    )
    with _started_with_sigint_ignored_and_blocked():
        out: subprocess.CompletedProcess[str] = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, **popen
        )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_child_that_a_test_interrupts_gets_sigint_back() -> None:
    assert _child_sigint() == "False True"  # inherited: a Ctrl-C would never arrive
    assert _child_sigint(preexec_fn=default_signals(signal.SIGINT)) == "True False"


def test_the_benchmark_removes_its_scratch_folder_on_failure_too() -> None:
    scratch: list[Path] = []

    def failing_run() -> None:
        with Runner(cast(Any, None), COUNTS["smoke"]) as runner:
            scratch.append(runner._scratch)
            (runner._scratch / "presigned.json").write_text("a signed request")
            raise RuntimeError("a workload failed")

    with pytest.raises(RuntimeError):
        failing_run()
    assert scratch
    assert not scratch[0].exists()
