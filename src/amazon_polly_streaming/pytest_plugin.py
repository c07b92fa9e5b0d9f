"""pytest fixtures that run the Polly emulator and point clients at it.

Installed with the package (entry point ``pytest11``) and inert until a test
asks for a fixture: registering the plugin imports neither the emulator nor
its extra (cryptography, numpy, eSpeak NG), so pytest runs as usual in any
project where the package is installed. Without the ``[emulator]`` extra, a
test that uses a fixture is skipped with the install command.

The plugin lives outside ``amazon_polly_streaming.emulator`` on purpose:
importing that package requires the extra.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .emulator import EmulatorThread

__all__ = ["polly_emulator", "polly_env"]

INSTALL_HINT = "the Polly emulator needs its extra: pip install 'amazon-polly-streaming[emulator]'"


@pytest.fixture(scope="session")
def polly_emulator() -> Iterator[EmulatorThread]:
    """A local Polly emulator for the whole test session (amazon-polly-streaming).

    It runs on its own thread and event loop, so tests of any async framework
    (or none) can use it: ``.endpoint_url``, ``.ca_file``, ``.inject(fault)``,
    ``.emulator.requests``. Accepted credentials: ``DEFAULT_CREDENTIALS`` from
    ``amazon_polly_streaming.emulator``. Skipped when the ``[emulator]`` extra
    is not installed.
    """
    try:
        from .emulator import Emulator
    except ImportError as exc:
        # The emulator's own ImportError wraps the missing module's: name that one.
        pytest.skip(f"{INSTALL_HINT} ({exc.__cause__ or exc})")
    running = Emulator.start_in_thread()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def polly_env(polly_emulator: EmulatorThread, monkeypatch: pytest.MonkeyPatch) -> EmulatorThread:
    """Point the AWS environment at the session's emulator for one test (amazon-polly-streaming).

    Sets ``AWS_ENDPOINT_URL_POLLY``, ``AWS_CA_BUNDLE``, the emulator's test
    credentials and ``AWS_REGION``, so an unmodified ``PollyStreamingClient()``
    (or an AWS SDK client that reads these variables) talks to the emulator.
    Returns the emulator. Skipped when the ``[emulator]`` extra is not installed.
    """
    from .emulator import DEFAULT_CREDENTIALS

    key, secret = next(iter(DEFAULT_CREDENTIALS.items()))
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", polly_emulator.endpoint_url)
    monkeypatch.setenv("AWS_CA_BUNDLE", polly_emulator.ca_file)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return polly_emulator
