"""A local emulator of Polly's ``StartSpeechSynthesisStream``, for development and CI.

Real HTTP/2 over TLS (its own CA), SigV4 and event-signature checks, real speech
from eSpeak NG, Polly's validation errors and limits, and fault injection.
Needs the extra: ``pip install 'amazon-polly-streaming[emulator]'``.
"""

from __future__ import annotations

try:
    import cryptography  # noqa: F401
    import numpy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"the Polly emulator needs its extra: pip install 'amazon-polly-streaming[emulator]' ({exc})"
    ) from exc

from ._faults import FAULT_KINDS, PHASES, Fault
from ._server import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig, EmulatorThread, RequestRecord

__all__ = [
    "DEFAULT_CREDENTIALS",
    "FAULT_KINDS",
    "PHASES",
    "Emulator",
    "EmulatorConfig",
    "EmulatorThread",
    "Fault",
    "RequestRecord",
]
