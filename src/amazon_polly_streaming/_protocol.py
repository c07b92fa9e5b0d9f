"""The StartSpeechSynthesisStream protocol, sans-IO.

Everything between "the caller's arguments" and "bytes on an HTTP/2 stream"
that needs no socket and no clock: argument validation, the signed request
headers, the text events, and the mapping of the server's messages to audio,
the end of the stream, or typed errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from . import _sigv4
from ._event_signer import EventSigner
from ._eventstream import EventStreamDecoder, Message, encode_headers, encode_message
from .credentials import Credentials
from .events import StreamClosedEvent, UnknownEvent
from .exceptions import (
    MODELED_EXCEPTIONS,
    AuthenticationError,
    HTTPStatusError,
    IncompleteStreamError,
    PollyStreamingError,
    ProtocolError,
    ServiceException,
)

__all__ = [
    "CLOSE_STREAM_EVENT",
    "MAX_TEXT_EVENT_CHARS",
    "OUTPUT_FORMATS",
    "PATH",
    "RequestSigner",
    "ResponseParser",
    "SynthesisParams",
    "service_error",
    "split_text",
    "synthesis_params",
    "text_event",
]

PATH = "/v1/synthesisStream"
SERVICE = "polly"
EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
MAX_TEXT_EVENT_CHARS = 6000
MAX_LEXICONS = 5

#: Valid sample rates (Hz, as strings) per output format.
OUTPUT_FORMATS: dict[str, frozenset[str]] = {
    "mp3": frozenset({"8000", "16000", "22050", "24000", "44100", "48000"}),
    "ogg_vorbis": frozenset({"8000", "16000", "22050", "24000", "44100", "48000"}),
    "pcm": frozenset({"8000", "16000"}),
    "ogg_opus": frozenset({"48000"}),
    "mulaw": frozenset({"8000"}),
    "alaw": frozenset({"8000"}),
}
TEXT_TYPES = ("text", "ssml")


# --------------------------------------------------------------------------- request


class SynthesisParams(NamedTuple):
    """Validated synthesis settings, as sent in the request headers."""

    voice_id: str
    engine: str
    language_code: str | None
    output_format: str
    sample_rate: str
    lexicon_names: tuple[str, ...] = ()


def _non_empty_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def synthesis_params(
    *,
    voice_id: object,
    engine: object = "generative",
    language_code: object = "en-US",
    output_format: object = "mp3",
    sample_rate: object = "24000",
    lexicon_names: Iterable[str] | None = None,
) -> SynthesisParams:
    """Check the caller's arguments; raise ``ValueError``/``TypeError`` before any I/O."""
    voice = _non_empty_str("voice_id", voice_id)
    engine_name = _non_empty_str("engine", engine)
    language = None if language_code is None else _non_empty_str("language_code", language_code)
    fmt = _non_empty_str("output_format", output_format)
    rates = OUTPUT_FORMATS.get(fmt)
    if rates is None:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {fmt!r}")
    if isinstance(sample_rate, int) and not isinstance(sample_rate, bool):
        sample_rate = str(sample_rate)
    if not isinstance(sample_rate, str):
        raise TypeError(f"sample_rate must be a str of Hz, not {type(sample_rate).__name__}")
    if sample_rate not in rates:
        raise ValueError(
            f"sample_rate {sample_rate!r} is not valid for {fmt}; use one of {', '.join(sorted(rates, key=int))}"
        )
    lexicons: tuple[str, ...] = ()
    if lexicon_names is not None:
        if isinstance(lexicon_names, str):
            lexicon_names = [lexicon_names]
        lexicons = tuple(lexicon_names)
        if len(lexicons) > MAX_LEXICONS:
            raise ValueError(f"at most {MAX_LEXICONS} lexicons may be applied")
        for name in lexicons:
            if not (isinstance(name, str) and 1 <= len(name) <= 20 and name.isascii() and name.isalnum()):
                raise ValueError(f"lexicon names are 1-20 letters or digits, not {name!r}")
    return SynthesisParams(voice, engine_name, language, fmt, sample_rate, lexicons)


class RequestSigner:
    """Builds the signed request headers of one stream and its event signer.

    Keeps the derived signing key of the current day so that only the
    request's own HMAC is computed per stream.
    """

    __slots__ = ("_key_cache", "region")

    def __init__(self, region: str) -> None:
        self.region = region
        self._key_cache: tuple[str, str, bytes] | None = None

    def __repr__(self) -> str:
        return f"RequestSigner(region={self.region!r})"

    def _signing_key(self, secret: str, datestamp: str) -> bytes:
        cached = self._key_cache
        if cached is not None and cached[0] == datestamp and cached[1] == secret:
            return cached[2]
        key = _sigv4.derive_signing_key(secret, datestamp, self.region, SERVICE)
        self._key_cache = (datestamp, secret, key)
        return key

    def request_headers(
        self,
        params: SynthesisParams,
        *,
        authority: str,
        credentials: Credentials,
        amz_date: str,
        user_agent: str,
    ) -> tuple[list[tuple[str, str]], EventSigner]:
        """The HTTP/2 request headers (pseudo-headers first) and the stream's event signer.

        ``amz_date`` is the signing time as ``YYYYMMDDTHHMMSSZ``.
        """
        signed = [
            ("content-type", EVENT_STREAM_CONTENT_TYPE),
            ("host", authority),
            ("x-amz-content-sha256", _sigv4.STREAMING_PAYLOAD),
            ("x-amz-date", amz_date),
            ("x-amzn-engine", params.engine),
            ("x-amzn-outputformat", params.output_format),
            ("x-amzn-samplerate", params.sample_rate),
            ("x-amzn-voiceid", params.voice_id),
        ]
        if params.language_code is not None:
            signed.append(("x-amzn-languagecode", params.language_code))
        if params.lexicon_names:
            signed.append(("x-amzn-lexiconnames", ",".join(params.lexicon_names)))
        if credentials.session_token:
            signed.append(("x-amz-security-token", credentials.session_token))
        datestamp = amz_date[:8]
        scope = _sigv4.credential_scope(datestamp, self.region, SERVICE)
        key = self._signing_key(credentials.secret_access_key, datestamp)
        auth = _sigv4.sign_request(
            method="POST",
            path=PATH,
            headers=signed,
            payload_hash=_sigv4.STREAMING_PAYLOAD,
            access_key_id=credentials.access_key_id,
            signing_key=key,
            scope=scope,
            amz_date=amz_date,
        )
        # HTTP/2 carries the host as :authority, exactly once; "host" is only
        # part of the signature.
        headers = [(":method", "POST"), (":scheme", "https"), (":path", PATH), (":authority", authority)]
        headers.extend(item for item in signed if item[0] != "host")
        headers.append(("authorization", auth.header))
        headers.append(("user-agent", user_agent))
        return headers, EventSigner(key, scope, auth.signature)


# ------------------------------------------------------------------------ text events

_TEXT_EVENT_HEADERS = encode_headers(
    ((":event-type", "TextEvent"), (":content-type", "application/json"), (":message-type", "event")),
)
#: The encoded (unsigned, inner) CloseStreamEvent.
CLOSE_STREAM_EVENT = encode_message(
    encode_headers(
        ((":event-type", "CloseStreamEvent"), (":content-type", "application/json"), (":message-type", "event")),
    ),
    b"{}",
)
_FLUSH = {"Force": True}


def text_event(text: str, *, text_type: str | None = None, flush: bool = False) -> bytes:
    """The encoded (unsigned, inner) TextEvent carrying ``text``."""
    body: dict[str, object] = {"Text": text}
    if text_type is not None:
        body["TextType"] = text_type
    if flush:
        body["FlushStreamConfiguration"] = _FLUSH
    return encode_message(_TEXT_EVENT_HEADERS, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())


def split_text(text: str, limit: int = MAX_TEXT_EVENT_CHARS) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters.

    Polly reassembles text across events, so any cut is correct; cutting
    after white space where possible keeps words whole for the emulator and
    for log readers.
    """
    if len(text) <= limit:
        return [text]
    pieces = []
    start = 0
    while len(text) - start > limit:
        end = start + limit
        space = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
        if space > start:
            end = space + 1
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


# ----------------------------------------------------------------------- response


def _json_object(payload: bytes) -> dict[str, object]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _clean_error_type(value: str) -> str:
    # Services may append a namespace, e.g. "ValidationException:http://...".
    return value.split(":", 1)[0].strip()


def service_error(
    error_type: str,
    body: dict[str, object],
    *,
    request_id: str | None,
    status_code: int | None = None,
    fallback_message: str = "",
) -> ServiceException:
    """The typed exception for a Polly error; unknown types give the base class."""
    message = body.get("Message", body.get("message", fallback_message))
    cls = MODELED_EXCEPTIONS.get(error_type, ServiceException)
    return cls(
        str(message) if message is not None else "",
        error_type=error_type,
        request_id=request_id,
        status_code=status_code,
        details=body,
    )


_ERROR_BODY_LIMIT = 64 * 1024


class ResponseParser:
    """Turns the response's headers and body bytes into audio, events or errors.

    ``receive_data`` returns audio as plain ``bytes`` items (the hot path) and
    anything else as :class:`StreamClosedEvent` or :class:`UnknownEvent`. Service
    exceptions in the stream are raised.
    """

    __slots__ = (
        "_decoder",
        "_error_body",
        "_error_type",
        "_expected_length",
        "closed",
        "request_characters",
        "request_id",
        "status",
    )

    def __init__(self) -> None:
        self.status: int | None = None
        self.request_id: str | None = None
        self.closed = False
        self.request_characters: int | None = None
        self._decoder = EventStreamDecoder()
        self._error_type: str | None = None
        self._error_body = bytearray()
        self._expected_length: int | None = None

    @property
    def is_error(self) -> bool:
        return self.status is not None and not 200 <= self.status < 300

    def receive_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        content_type = None
        for name, value in headers:
            if name == b":status":
                self.status = int(value)
            elif name == b"x-amzn-requestid":
                self.request_id = value.decode("latin-1")
            elif name == b"x-amzn-errortype":
                self._error_type = _clean_error_type(value.decode("latin-1"))
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                self._expected_length = int(value)
        if self.status is None:
            raise ProtocolError("response without :status")
        if not self.is_error and content_type is not None and not content_type.startswith(EVENT_STREAM_CONTENT_TYPE):
            raise ProtocolError(f"unexpected response content-type {content_type!r}")

    @property
    def error_body_complete(self) -> bool:
        """For an error response: the body announced by content-length has arrived."""
        return self._expected_length is not None and len(self._error_body) >= self._expected_length

    def receive_data(self, data: bytes) -> list[bytes | StreamClosedEvent | UnknownEvent]:
        if self.is_error:
            room = _ERROR_BODY_LIMIT - len(self._error_body)
            if room > 0:
                self._error_body += data[:room]
            return []
        out: list[bytes | StreamClosedEvent | UnknownEvent] = []
        for message in self._decoder.feed(data):
            headers = message.headers
            message_type = headers.get(":message-type")
            if message_type == "event":
                event_type = headers.get(":event-type")
                if event_type == "AudioEvent":
                    if message.payload:
                        out.append(message.payload)
                elif event_type == "StreamClosedEvent":
                    self._on_stream_closed(message)
                    out.append(StreamClosedEvent(self.request_characters or 0))
                else:
                    out.append(UnknownEvent(str(event_type), message.payload))
            elif message_type == "exception":
                error_type = str(headers.get(":exception-type", "ServiceException"))
                raise service_error(error_type, _json_object(message.payload), request_id=self.request_id)
            elif message_type == "error":
                code = str(headers.get(":error-code", "UnknownError"))
                text = str(headers.get(":error-message", ""))
                raise ServiceException(text, error_type=code, request_id=self.request_id)
            else:
                raise ProtocolError(f"unknown :message-type {message_type!r}")
        return out

    def _on_stream_closed(self, message: Message) -> None:
        self.closed = True
        count = _json_object(message.payload).get("RequestCharacters")
        if isinstance(count, int):
            self.request_characters = count

    def error(self) -> PollyStreamingError:
        """The exception for a non-2xx response, from its headers and the body so far."""
        status = self.status or 0
        body = _json_object(bytes(self._error_body))
        error_type = self._error_type or _clean_error_type(str(body.get("__type", body.get("code", ""))))
        if error_type in MODELED_EXCEPTIONS:
            return service_error(error_type, body, request_id=self.request_id, status_code=status)
        message = body.get("Message", body.get("message"))
        text = f"HTTP {status}"
        if error_type:
            text += f" {error_type}"
        if message:
            text += f": {message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        cls = AuthenticationError if status in (401, 403) else HTTPStatusError
        return cls(text, status_code=status, error_type=error_type or None, request_id=self.request_id)

    def receive_end(self) -> None:
        """The server ended the stream: raise unless it ended properly."""
        if self.status is None:
            raise ProtocolError("stream ended before response headers")
        if self.is_error:
            raise self.error()
        if self._decoder.buffered:
            raise IncompleteStreamError(
                f"stream ended inside an event-stream message ({self._decoder.buffered} bytes pending): audio truncated"
            )
        if not self.closed:
            raise IncompleteStreamError("stream ended without StreamClosedEvent: audio may be truncated")
