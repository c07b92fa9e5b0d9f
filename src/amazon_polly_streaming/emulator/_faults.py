"""Faults the emulator can inject, and the text directives that choose them per request.

Any client -- including ones we did not write -- can pick a fault for one
request by putting ``{{fault:KIND}}`` or ``{{fault:KIND@PHASE}}`` in its first
TextEvent, and the size of a tone-mode response with ``{{audio_bytes:N}}``.
Directives are removed before synthesis and billing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EXCEPTION_KINDS",
    "FAULT_KINDS",
    "PHASES",
    "Directives",
    "Fault",
    "parse_directives",
]

#: When a fault strikes, in the order a request goes through them.
PHASES = ("before_headers", "after_headers", "during_input", "after_first_audio", "after_close")

#: Polly's modeled exceptions, by fault kind: (type, HTTP status when sent as a response, JSON body).
EXCEPTION_KINDS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "throttling": (
        "ThrottlingException",
        400,
        {
            "Message": "Rate exceeded",
            "throttlingReasons": [{"reason": "RequestRateExceeded", "resource": "StartSpeechSynthesisStream"}],
        },
    ),
    "validation": (
        "ValidationException",
        400,
        {
            "Message": "1 validation error detected",
            "reason": "fieldValidationFailed",
            "fields": [{"name": "Text", "message": "injected validation fault"}],
        },
    ),
    "service_failure": ("ServiceFailureException", 500, {"Message": "An internal error occurred"}),
    "quota_exceeded": (
        "ServiceQuotaExceededException",
        402,
        {"Message": "Quota exceeded", "quotaCode": "input-stream-timeout", "serviceCode": "polly"},
    ),
}

#: Kinds that only make sense before the response headers: they replace them.
HEADER_KINDS = frozenset({"http_error", "http_error_no_end", "http_error_rst", "never_answer", "refuse_stream"})

FAULT_KINDS = frozenset(
    {
        *EXCEPTION_KINDS,
        *HEADER_KINDS,
        "stall",
        "drop",
        "rst_stream",
        "goaway",
        "corrupt_crc",
        "no_stream_closed",
        "truncate",
    }
)

_DEFAULT_PHASE = {
    **dict.fromkeys(HEADER_KINDS, "before_headers"),
    **dict.fromkeys(EXCEPTION_KINDS, "after_first_audio"),
    "stall": "after_first_audio",
    "drop": "after_first_audio",
    "rst_stream": "after_first_audio",
    "goaway": "after_first_audio",
    "corrupt_crc": "after_first_audio",
    "no_stream_closed": "after_close",
    "truncate": "after_first_audio",
}


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` (see ``FAULT_KINDS``) striking at ``phase``.

    Kinds in ``HEADER_KINDS`` always strike before the headers. ``params``:
    ``graceful`` for ``goaway`` (finish this stream first), ``status`` for
    ``http_error*`` (default 500).
    """

    kind: str
    phase: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(sorted(FAULT_KINDS))}")
        phase = "before_headers" if self.kind in HEADER_KINDS else self.phase or _DEFAULT_PHASE[self.kind]
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}")
        object.__setattr__(self, "phase", phase)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """``KIND`` or ``KIND@PHASE``."""
        kind, _, phase = spec.strip().partition("@")
        return cls(kind.strip(), phase.strip())

    def __str__(self) -> str:
        return f"{self.kind}@{self.phase}"


_DIRECTIVE = re.compile(r"\{\{\s*(fault|audio_bytes)\s*:\s*([^}]*?)\s*\}\}")


@dataclass
class Directives:
    text: str
    fault: Fault | None = None
    audio_bytes: int | None = None


def parse_directives(text: str) -> Directives:
    """Strip directives from ``text``; invalid ones raise ``ValueError``."""
    found = Directives(text)
    if "{{" not in text:
        return found
    for name, value in _DIRECTIVE.findall(text):
        if name == "fault":
            found.fault = Fault.parse(value)
        else:
            found.audio_bytes = int(value)
            if found.audio_bytes < 0:
                raise ValueError("audio_bytes must not be negative")
    found.text = _DIRECTIVE.sub("", text)
    return found
