"""The operation's event streams, sans-IO: the client's signed envelopes in, the service's events out.

Inbound (``StartSpeechSynthesisStreamActionStream`` in the service model,
botocore 1.44.8): each envelope is an event-stream message carrying ``:date``
and ``:chunk-signature`` whose payload is an inner message with
``:message-type: event`` and ``:event-type`` ``TextEvent`` or
``CloseStreamEvent``. A final envelope with an empty payload closes the chain.
Outbound (``StartSpeechSynthesisStreamEventStream``): ``AudioEvent`` (the
payload is the audio), ``StreamClosedEvent`` and the modeled exceptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._wire.eventstream import EventStreamDecoder, encode_headers, encode_message
from .._wire.request import MAX_BILLED_CHARS, MAX_TEXT_EVENT_CHARS, TEXT_TYPES, utf16_length
from ..exceptions import EventStreamError
from ._auth import EventChain
from ._errors import ServiceError, invalid_event, validation
from ._text import ssml_text

__all__ = [
    "CloseInput",
    "InboundEvents",
    "TextInput",
    "audio_event",
    "stream_closed_event",
]

_AUDIO_HEADERS = encode_headers(
    ((":message-type", "event"), (":event-type", "AudioEvent"), (":content-type", "application/octet-stream"))
)
_CLOSED_HEADERS = encode_headers(
    ((":message-type", "event"), (":event-type", "StreamClosedEvent"), (":content-type", "application/json"))
)


def audio_event(audio: bytes) -> bytes:
    return encode_message(_AUDIO_HEADERS, audio)


def stream_closed_event(request_characters: int) -> bytes:
    return encode_message(_CLOSED_HEADERS, json.dumps({"RequestCharacters": request_characters}).encode())


class TextInput(NamedTuple):
    """One valid TextEvent."""

    text: str
    ssml: bool
    flush: bool


@dataclass(frozen=True)
class CloseInput:
    """A CloseStreamEvent."""


def _text_event(payload: bytes) -> TextInput | ServiceError:
    # A TextEvent whose JSON is broken is an invalid inbound event; one whose
    # fields break the model's constraints (or the per-event limits) fails
    # field validation, naming the field. The operation models no
    # TextLengthExceededException or InvalidSsmlException (SynthesizeSpeech
    # has both), so ValidationException, the one input error it models, is
    # the service's answer to either.
    try:
        body: Any = json.loads(payload)
    except ValueError:
        return invalid_event("TextEvent payload is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("Text"), str):
        return invalid_event("TextEvent must have a Text string", "Text")
    text: str = body["Text"]
    text_type = body.get("TextType", "text")
    if text_type not in TEXT_TYPES:
        return validation(
            f"1 validation error detected: Value '{text_type}' at 'textType' failed to satisfy constraint: "
            "Member must satisfy enum value set: [ssml, text]",
            "TextType",
        )
    flush_config = body.get("FlushStreamConfiguration")
    if flush_config is not None and not isinstance(flush_config, dict):
        return invalid_event("FlushStreamConfiguration must be an object", "FlushStreamConfiguration")
    # The per-event limits (``_wire.request``: the Polly guide's, counted in UTF-16
    # code units as the service counts characters): 6,000 with SSML tags, 3,000 billed.
    ssml = text_type == "ssml"
    if utf16_length(text) > MAX_TEXT_EVENT_CHARS:
        return validation(f"Text of one TextEvent must be at most {MAX_TEXT_EVENT_CHARS} characters", "Text")
    try:
        billed = utf16_length(ssml_text(text)) if ssml else utf16_length(text)
    except ValueError as exc:
        return validation(str(exc), "Text")
    if billed > MAX_BILLED_CHARS:
        return validation(f"Text of one TextEvent must have at most {MAX_BILLED_CHARS} billed characters", "Text")
    return TextInput(text, ssml, bool((flush_config or {}).get("Force")))


class InboundEvents:
    """Turns the request body's bytes into events, verifying each envelope's signature.

    The first error ends the stream: ``feed`` returns it once, then nothing more.
    """

    def __init__(self, chain: EventChain | None) -> None:
        self._chain = chain
        self._decoder = EventStreamDecoder()
        self._failed = False

    def feed(self, data: bytes) -> list[TextInput | CloseInput | ServiceError]:
        if self._failed:
            return []
        out: list[TextInput | CloseInput | ServiceError] = []
        try:
            envelopes = self._decoder.feed(data)
        except EventStreamError as exc:
            return self._fail(out, invalid_event(f"Invalid event stream framing: {exc}"))
        for envelope in envelopes:
            if self._chain is not None and not self._chain.verify(envelope):
                return self._fail(out, invalid_event("The event signature is invalid"))
            if not envelope.payload:
                continue  # the final, empty envelope that closes the chain
            try:
                (inner,) = EventStreamDecoder().feed(envelope.payload)
            except (EventStreamError, ValueError):
                return self._fail(out, invalid_event("Invalid inbound event"))
            message_type = inner.headers.get(":message-type")
            event_type = inner.headers.get(":event-type")
            if message_type != "event":
                return self._fail(out, invalid_event(f"Unknown message type {message_type!r}"))
            if event_type == "TextEvent":
                event = _text_event(inner.payload)
                if isinstance(event, ServiceError):
                    return self._fail(out, event)
                out.append(event)
            elif event_type == "CloseStreamEvent":
                out.append(CloseInput())
            else:
                return self._fail(out, invalid_event(f"Unknown event type {event_type!r}"))
        return out

    def _fail(
        self, out: list[TextInput | CloseInput | ServiceError], error: ServiceError
    ) -> list[TextInput | CloseInput | ServiceError]:
        self._failed = True
        out.append(error)
        return out
