"""The events a stream yields to callers who want events rather than bytes."""

from __future__ import annotations

from typing import NamedTuple, TypeAlias

__all__ = ["AudioEvent", "Event", "StreamClosedEvent", "UnknownEvent"]


class AudioEvent(NamedTuple):
    """A chunk of synthesized audio, exactly as Polly sent it."""

    audio: bytes


class StreamClosedEvent(NamedTuple):
    """Polly finished the stream; ``request_characters`` is what it billed."""

    request_characters: int


class UnknownEvent(NamedTuple):
    """An event type this version does not know: passed through, never fatal."""

    event_type: str
    payload: bytes


Event: TypeAlias = AudioEvent | StreamClosedEvent | UnknownEvent
