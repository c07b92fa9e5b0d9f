"""The emulator's settings and what it records of each request."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._faults import Fault

__all__ = ["DEFAULT_CREDENTIALS", "EmulatorConfig", "RequestRecord"]

#: The AWS documentation's example key pair.
DEFAULT_CREDENTIALS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}

_PERMISSION_ERRORS = ("ValidationException", "AccessDeniedException")


@dataclass
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    alpn: tuple[str, ...] = ("h2",)
    strict: bool = False
    verify_signatures: bool = True
    credentials: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CREDENTIALS))
    session_tokens: dict[str, str] = field(default_factory=dict)
    #: Access key ids whose identity lacks the IAM action ``polly:StartSpeechSynthesisStream``.
    unauthorized_keys: set[str] = field(default_factory=set)
    #: How such a key is refused: "ValidationException" (what the 1.1.0
    #: release's guide says) or "AccessDeniedException" (AWS's IAM convention).
    unauthorized_error: str = "ValidationException"
    clock_skew: float = 300.0
    #: Wall-clock time in epoch seconds for every time check (request
    #: signatures); a test can run the emulator "just before midnight".
    clock: Callable[[], float] = time.time
    audio: str = "speech"
    first_audio_delay: float = 0.0
    real_time_factor: float = 0.0
    audio_chunk_bytes: int = 8192
    idle_timeout: float = 5.0
    max_stream_duration: float = 600.0
    #: HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams per connection.
    max_concurrent_streams: int = 100
    #: The account's concurrency quota: streams at once over all connections (Polly's default for
    #: generative voices is 26); the next one is refused with ThrottlingException. None: no limit.
    max_active_streams: int | None = None
    record_audio: bool = False
    #: False: never hand flow-control window back for request data, so a
    #: client's text backs up (tests of its bounded send queue).
    ack_input: bool = True
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.audio not in ("speech", "tone"):
            raise ValueError("audio must be 'speech' or 'tone'")
        if self.max_active_streams is not None and self.max_active_streams < 1:
            raise ValueError("max_active_streams must be at least 1 (or None: no limit)")
        if self.unauthorized_error not in _PERMISSION_ERRORS:
            raise ValueError(f"unauthorized_error must be one of {', '.join(_PERMISSION_ERRORS)}")


@dataclass
class RequestRecord:
    """What the emulator saw and did for one request (never a secret)."""

    request_id: str
    connection_id: int
    stream_id: int
    started: float
    status: int | None = None
    voice_id: str | None = None
    output_format: str | None = None
    sample_rate: str | None = None
    language_code: str | None = None
    access_key_id: str | None = None
    authority: str | None = None
    texts: list[dict[str, Any]] = field(default_factory=list)
    billed_characters: int = 0
    audio_bytes: int = 0
    audio: bytearray | None = None
    fault: str | None = None
    outcome: str = "open"
    ended: float | None = None

    def finish(self, outcome: str) -> None:
        if self.outcome == "open":
            self.outcome = outcome
            self.ended = time.monotonic()
