"""pytest fixtures that run the emulator and point clients at it.

Installed with the package (entry point ``pytest11``); inert unless a test asks
for a fixture, and without the ``[emulator]`` extra those tests are skipped.

* ``polly_emulator`` -- one emulator per test session, on its own thread and
  event loop (so any async test framework can use it): ``.endpoint_url``,
  ``.ca_file``, ``.inject(fault)``, ``.emulator.requests``.
* ``polly_env`` -- sets ``AWS_ENDPOINT_URL_POLLY``, ``AWS_CA_BUNDLE``, test
  credentials and a region for one test, so ``PollyStreamingClient()`` with no
  arguments talks to the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def polly_emulator() -> Iterator[Any]:
    try:
        from amazon_polly_streaming.emulator import Emulator
    except ImportError as exc:
        pytest.skip(f"the Polly emulator is not installed: {exc}")
    running = Emulator.start_in_thread()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def polly_env(polly_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS

    key, secret = next(iter(DEFAULT_CREDENTIALS.items()))
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", polly_emulator.endpoint_url)
    monkeypatch.setenv("AWS_CA_BUNDLE", polly_emulator.ca_file)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return polly_emulator
