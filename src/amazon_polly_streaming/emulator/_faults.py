"""Faults the emulator can inject, where each strikes, and the text directives that choose them per request.

Any client -- including ones we did not write -- can pick a fault for one
request by putting ``{{fault:KIND}}`` or ``{{fault:KIND@PHASE}}`` in its first
TextEvent, and the size of a tone-mode response with ``{{audio_bytes:N}}``.
Directives are removed before synthesis and billing; an invalid one is a
ValidationException whose message lists what is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._errors import ServiceError, quota_exceeded, service_failure, throttling, validation

__all__ = [
    "BEFORE_HEADER_KINDS",
    "DEFAULT_PHASES",
    "EXCEPTION_KINDS",
    "FAULT_KINDS",
    "HEADER_KINDS",
    "PHASES",
    "Directives",
    "Fault",
    "directive_error",
    "parse_directives",
]

#: When a fault strikes, in the order a request goes through them.
PHASES = ("before_headers", "after_headers", "during_input", "after_first_audio", "after_close")

#: Polly's modeled exceptions, by fault kind (sent as an HTTP error before the headers, an event after).
EXCEPTION_KINDS: dict[str, ServiceError] = {
    "throttling": throttling("Rate exceeded", "RequestRateExceeded", "StartSpeechSynthesisStream"),
    "validation": validation("injected validation fault", "Text"),
    "service_failure": service_failure("An internal error occurred"),
    "quota_exceeded": quota_exceeded("input-stream-timeout", "Quota exceeded"),
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

#: Kinds that can strike before any response headers exist; the others need a
#: response in progress and strike right after its headers when asked for earlier.
BEFORE_HEADER_KINDS = frozenset({*EXCEPTION_KINDS, *HEADER_KINDS, "stall", "drop", "rst_stream", "goaway"})

#: The phase of each kind when none is given.
DEFAULT_PHASES: dict[str, str] = {
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
        phase = "before_headers" if self.kind in HEADER_KINDS else self.phase or DEFAULT_PHASES[self.kind]
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

    @property
    def replaces_headers(self) -> bool:
        """Strikes instead of the response headers."""
        return self.phase == "before_headers" and self.kind in BEFORE_HEADER_KINDS

    def after_headers(self) -> Fault:
        """This fault moved to right after the headers (for a kind that needs a response in progress)."""
        return Fault(self.kind, "after_headers", self.params)


_DIRECTIVE = re.compile(r"\{\{\s*(fault|audio_bytes)\s*:\s*([^}]*?)\s*\}\}")


@dataclass
class Directives:
    text: str
    fault: Fault | None = None
    audio_bytes: int | None = None


def parse_directives(text: str) -> Directives:
    """Strip directives from ``text``; an invalid one raises ``ValueError`` saying what is valid."""
    found = Directives(text)
    if "{{" not in text:
        return found
    for name, value in _DIRECTIVE.findall(text):
        if name == "fault":
            found.fault = Fault.parse(value)
        elif not value.isdigit():
            raise ValueError(f"audio_bytes must be a whole number of bytes, not {value!r}")
        else:
            found.audio_bytes = int(value)
    found.text = _DIRECTIVE.sub("", text)
    return found


def directive_error(exc: ValueError) -> ServiceError:
    """The ValidationException for an invalid directive (the message lists the valid kinds or phases)."""
    return validation(f"Invalid emulator directive: {exc}", "Text")
