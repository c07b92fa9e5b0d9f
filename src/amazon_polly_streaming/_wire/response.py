"""The StartSpeechSynthesisStream response, sans-IO: headers and bytes in, audio, events or errors out.

``ResponseParser.receive_data`` returns the messages of a chunk of the body in
order: audio as plain ``bytes`` (the hot path), :class:`StreamClosedEvent`,
:class:`UnknownEvent`, and, last, the exception a service error message or a
broken protocol stands for. An error is returned rather than raised so that
audio that arrived before it in the same read still reaches the caller.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..events import StreamClosedEvent, UnknownEvent
from ..exceptions import (
    MODELED_EXCEPTIONS,
    AuthenticationError,
    HTTPStatusError,
    IncompleteStreamError,
    PollyStreamingError,
    ProtocolError,
    ServiceException,
)
from .eventstream import EventStreamDecoder

__all__ = ["AUTH_ERROR_TYPES", "ResponseItem", "ResponseParser", "clean_error_type", "service_error"]

EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
ResponseItem = bytes | StreamClosedEvent | UnknownEvent | PollyStreamingError

#: AWS's authentication and authorization errors (Polly's "Common Errors" in
#: its API reference). They come with 400 as well as 401/403, so they are
#: recognised by type, whatever the status.
AUTH_ERROR_TYPES = frozenset(
    {
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "IncompleteSignatureException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "NotAuthorized",
        "RequestExpired",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
_IAM_ACTION = "polly:StartSpeechSynthesisStream"


def clean_error_type(value: str) -> str:
    """An error type as AWS's SDKs sanitize it.

    ``com.amazonaws.polly#ThrottlingException`` and
    ``ValidationException:http://internal.amazon.com/...`` both name the
    short type: keep the text before the first ``,`` and ``:``, then the part
    after the last ``#`` (aws-sdk-js-v3, ``sanitizeErrorCode`` in the restJson1
    protocol code; aws-sdk-go-v2 ``SanitizeErrorCode``).
    """
    value = value.split(",", 1)[0].split(":", 1)[0]
    return value.rsplit("#", 1)[-1].strip()


_JSON = json.JSONDecoder()


def _json_object(payload: bytes) -> dict[str, object]:
    # Every stream ends with one (StreamClosedEvent's): the decoder itself,
    # without json.loads's guessing of an encoding other than Polly's UTF-8.
    try:
        value = _JSON.decode(payload.decode())
    except ValueError:  # UnicodeDecodeError included
        return {}
    return value if isinstance(value, dict) else {}


_CLOSED_PREFIX = b'{"RequestCharacters":'


def _request_characters(payload: bytes) -> int | None:
    """``RequestCharacters`` of a StreamClosedEvent's payload, if it holds a whole number."""
    # The payload is {"RequestCharacters":N}: read that without the JSON
    # decoder (a third of the parsing of a short stream's response); any
    # other shape (more members, a number JSON refuses) goes through it.
    if payload.startswith(_CLOSED_PREFIX) and payload.endswith(b"}"):
        digits = payload[len(_CLOSED_PREFIX) : -1].strip(b" ")
        if digits.isdigit() and len(digits) < 19 and (digits[0] != 0x30 or len(digits) == 1):
            return int(digits)
    count = _json_object(payload).get("RequestCharacters")
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    return None


def _message(body: dict[str, object]) -> object:
    # The model names the member ``message``; some services say ``Message``.
    return body.get("message", body.get("Message"))


def _auth_error(error_type: str, message: object, *, status: int | None, request_id: str | None) -> AuthenticationError:
    text = f"{error_type}: {message}" if message else error_type
    if error_type == "AccessDeniedException":
        text += f" (the identity needs the IAM permission {_IAM_ACTION})"
    if status:
        text = f"HTTP {status} {text}"
    if request_id:
        text += f" (request id {request_id})"
    return AuthenticationError(text, status_code=status, error_type=error_type, request_id=request_id)


def service_error(
    error_type: str,
    body: dict[str, object],
    *,
    request_id: str | None,
    status_code: int | None = None,
) -> PollyStreamingError:
    """The typed exception for an error Polly named; unknown types give ``ServiceException``."""
    error_type = clean_error_type(error_type) or "ServiceException"
    message = _message(body)
    if error_type in AUTH_ERROR_TYPES:
        return _auth_error(error_type, message, status=status_code, request_id=request_id)
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
    """Turns the response's headers and body bytes into audio, events and errors."""

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
        self.closed = False  # StreamClosedEvent was received
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
                if not (len(value) == 3 and value.isdigit()):
                    raise ProtocolError(f"malformed :status {value[:16]!r} in the response")
                self.status = int(value)
            elif name == b"x-amzn-requestid":
                self.request_id = value.decode("latin-1")
            elif name == b"x-amzn-errortype":
                self._error_type = clean_error_type(value.decode("latin-1"))
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

    def receive_data(self, data: bytes) -> list[ResponseItem]:
        """The items ``data`` completes, in order; an error, if any, is the last one."""
        if self.is_error:
            room = _ERROR_BODY_LIMIT - len(self._error_body)
            if room > 0:
                self._error_body += data[:room]
            return []
        out: list[ResponseItem] = []
        try:
            messages = self._decoder.feed_shared(data)
        except PollyStreamingError as exc:
            out.append(exc)
            return out
        for headers, payload in messages:
            message_type = headers.get(":message-type")
            if message_type == "event":
                event_type = headers.get(":event-type")
                if event_type == "AudioEvent":
                    if self.closed:
                        out.append(ProtocolError("the server sent audio after StreamClosedEvent"))
                        return out
                    if payload:
                        out.append(payload)
                elif event_type == "StreamClosedEvent":
                    self.closed = True
                    count = _request_characters(payload)
                    if count is not None:
                        self.request_characters = count
                    out.append(StreamClosedEvent(self.request_characters or 0))
                else:
                    # Forward compatibility: an event this version does not know.
                    out.append(UnknownEvent(str(event_type), payload))
            elif message_type == "exception":
                error_type = str(headers.get(":exception-type", "ServiceException"))
                out.append(service_error(error_type, _json_object(payload), request_id=self.request_id))
                return out
            elif message_type == "error":
                code = str(headers.get(":error-code", "UnknownError"))
                body: dict[str, object] = {"message": str(headers.get(":error-message", ""))}
                out.append(service_error(code, body, request_id=self.request_id))
                return out
            else:
                out.append(ProtocolError(f"unknown :message-type {message_type!r}"))
                return out
        return out

    def error(self) -> PollyStreamingError:
        """The exception for a non-2xx response, from its headers and the body so far."""
        status = self.status or 0
        body = _json_object(bytes(self._error_body))
        error_type = self._error_type or clean_error_type(str(body.get("__type", body.get("code", ""))))
        if error_type in MODELED_EXCEPTIONS or error_type in AUTH_ERROR_TYPES:
            return service_error(error_type, body, request_id=self.request_id, status_code=status)
        message = _message(body)
        text = f"HTTP {status}"
        if error_type:
            text += f" {error_type}"
        if message:
            text += f": {message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        cls = AuthenticationError if status in (401, 403) else HTTPStatusError
        return cls(text, status_code=status, error_type=error_type or None, request_id=self.request_id)

    def end_error(self) -> PollyStreamingError | None:
        """The server ended the stream: the error that is, unless it ended properly."""
        if self.status is None:
            return ProtocolError("stream ended before response headers")
        if self.is_error:
            return self.error()
        if self._decoder.buffered:
            return IncompleteStreamError(
                f"stream ended inside an event-stream message ({self._decoder.buffered} bytes pending): audio truncated"
            )
        if not self.closed:
            return IncompleteStreamError("stream ended without StreamClosedEvent: audio may be truncated")
        return None
