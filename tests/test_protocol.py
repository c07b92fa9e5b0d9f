"""Sans-IO protocol logic: argument checks, request headers, server message mapping."""

from __future__ import annotations

import json

import pytest

from amazon_polly_streaming import _protocol as protocol
from amazon_polly_streaming._eventstream import EventStreamDecoder, encode_headers, encode_message
from amazon_polly_streaming._sigv4 import canonical_request, parse_authorization
from amazon_polly_streaming.credentials import Credentials
from amazon_polly_streaming.events import StreamClosedEvent, UnknownEvent
from amazon_polly_streaming.exceptions import (
    AuthenticationError,
    HTTPStatusError,
    IncompleteStreamError,
    ProtocolError,
    ServiceException,
    ServiceFailureException,
    ServiceQuotaExceededException,
    ThrottlingException,
    TransportError,
    ValidationException,
)

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _event(event_type: str, payload: bytes, message_type: str = "event") -> bytes:
    return encode_message(encode_headers({":message-type": message_type, ":event-type": event_type}), payload)


def _exception(exception_type: str, body: dict[str, object]) -> bytes:
    headers = {":message-type": "exception", ":exception-type": exception_type, ":content-type": "application/json"}
    return encode_message(encode_headers(headers), json.dumps(body).encode())


def _ok_parser() -> protocol.ResponseParser:
    parser = protocol.ResponseParser()
    parser.receive_headers(
        [(b":status", b"200"), (b"content-type", b"application/vnd.amazon.eventstream"), (b"x-amzn-requestid", b"r-1")]
    )
    return parser


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"voice_id": ""}, ValueError),
        ({"voice_id": 5}, TypeError),
        ({"voice_id": "Matthew", "output_format": "wav"}, ValueError),
        ({"voice_id": "Matthew", "output_format": "pcm", "sample_rate": "24000"}, ValueError),
        ({"voice_id": "Matthew", "sample_rate": 24000.0}, TypeError),
        ({"voice_id": "Matthew", "lexicon_names": ["bad name"]}, ValueError),
        ({"voice_id": "Matthew", "lexicon_names": ["a", "b", "c", "d", "e", "f"]}, ValueError),
    ],
)
def test_bad_arguments_raise_before_io(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        protocol.synthesis_params(**kwargs)  # type: ignore[arg-type]


def test_valid_arguments() -> None:
    params = protocol.synthesis_params(voice_id="Joanna", output_format="mulaw", sample_rate=8000, lexicon_names="lex1")
    assert params.sample_rate == "8000"
    assert params.lexicon_names == ("lex1",)


def test_request_headers_are_signed_and_have_one_authority() -> None:
    signer = protocol.RequestSigner("us-east-1")
    params = protocol.synthesis_params(voice_id="Matthew", lexicon_names=["a", "b"])
    headers, event_signer = signer.request_headers(
        params,
        authority="polly.us-east-1.amazonaws.com",
        credentials=Credentials("AKIDEXAMPLE", SECRET, "TOKEN"),
        amz_date="20260401T120000Z",
        user_agent="test",
    )
    names = [name for name, _ in headers]
    assert names[:4] == [":method", ":scheme", ":path", ":authority"]
    assert names.count(":authority") == 1
    assert "host" not in names
    values = dict(headers)
    assert values["x-amzn-lexiconnames"] == "a,b"
    assert values["x-amz-security-token"] == "TOKEN"
    parsed = parse_authorization(values["authorization"])
    assert parsed is not None
    assert "x-amz-security-token" in parsed.signed_headers
    # The server's view: rebuild the canonical request from what was sent.
    received = [("host", values[":authority"])] + [(n, v) for n, v in headers if not n.startswith(":")]
    creq, _ = canonical_request(
        "POST", protocol.PATH, "", received, values["x-amz-content-sha256"], signed=parsed.signed_headers
    )
    assert "host:polly.us-east-1.amazonaws.com" in creq
    assert event_signer.last_signature.hex() == parsed.signature


def test_text_event_json_and_split() -> None:
    (message,) = EventStreamDecoder().feed(protocol.text_event("héllo", text_type="ssml", flush=True))
    assert message.headers[":event-type"] == "TextEvent"
    assert json.loads(message.payload) == {
        "Text": "héllo",
        "TextType": "ssml",
        "FlushStreamConfiguration": {"Force": True},
    }
    text = ("word " * 3000).strip()
    pieces = protocol.split_text(text, 6000)
    assert "".join(pieces) == text
    assert all(len(piece) <= 6000 for piece in pieces)
    assert pieces[0].endswith(" ")
    assert protocol.split_text("x" * 12001, 6000) == ["x" * 6000, "x" * 6000, "x"]


def test_audio_and_stream_closed() -> None:
    parser = _ok_parser()
    data = (
        _event("AudioEvent", b"abc") + _event("Mystery", b"?") + _event("StreamClosedEvent", b'{"RequestCharacters":5}')
    )
    items = []
    for i in range(len(data)):  # one byte at a time
        items += parser.receive_data(data[i : i + 1])
    assert items == [b"abc", UnknownEvent("Mystery", b"?"), StreamClosedEvent(5)]
    assert parser.request_id == "r-1"
    assert parser.request_characters == 5
    parser.receive_end()


def test_end_without_stream_closed_is_an_error() -> None:
    parser = _ok_parser()
    parser.receive_data(_event("AudioEvent", b"abc"))
    with pytest.raises(IncompleteStreamError):
        parser.receive_end()
    parser = _ok_parser()
    parser.receive_data(_event("AudioEvent", b"abc")[:-3])
    with pytest.raises(IncompleteStreamError, match="inside"):
        parser.receive_end()


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("ValidationException", ValidationException),
        ("ThrottlingException", ThrottlingException),
        ("ServiceQuotaExceededException", ServiceQuotaExceededException),
        ("ServiceFailureException", ServiceFailureException),
        ("BrandNewException", ServiceException),
    ],
)
def test_exception_events_map_to_types(name: str, cls: type[ServiceException]) -> None:
    parser = _ok_parser()
    body: dict[str, object] = {
        "Message": "nope",
        "reason": "fieldValidationFailed",
        "fields": [{"name": "Text", "message": "bad"}],
        "quotaCode": "input-stream-timeout",
        "serviceCode": "polly",
        "throttlingReasons": [{"reason": "r", "resource": "x"}],
    }
    with pytest.raises(cls) as info:
        parser.receive_data(_exception(name, body))
    exc = info.value
    assert type(exc) is cls
    assert exc.error_type == name
    assert exc.message == "nope"
    assert exc.request_id == "r-1"
    assert not isinstance(exc, RuntimeError)
    if isinstance(exc, ValidationException):
        assert exc.reason == "fieldValidationFailed"
        assert exc.fields == [{"name": "Text", "message": "bad"}]
    if isinstance(exc, ServiceQuotaExceededException):
        assert exc.quota_code == "input-stream-timeout"
        assert exc.service_code == "polly"
    if isinstance(exc, ThrottlingException):
        assert exc.throttling_reasons == [{"reason": "r", "resource": "x"}]


def test_error_message_type() -> None:
    parser = _ok_parser()
    headers = {":message-type": "error", ":error-code": "InternalError", ":error-message": "boom"}
    with pytest.raises(ServiceException, match="boom") as info:
        parser.receive_data(encode_message(encode_headers(headers), b""))
    assert info.value.error_type == "InternalError"


@pytest.mark.parametrize(
    ("status", "error_type", "cls"),
    [
        (400, "ValidationException", ValidationException),
        (400, "ThrottlingException", ThrottlingException),
        (402, "ServiceQuotaExceededException", ServiceQuotaExceededException),
        (500, "ServiceFailureException", ServiceFailureException),
        (403, "InvalidSignatureException", AuthenticationError),
        (403, "UnrecognizedClientException", AuthenticationError),
        (503, None, HTTPStatusError),
        (404, "UnknownOperationException", HTTPStatusError),
    ],
)
def test_error_responses(status: int, error_type: str | None, cls: type[Exception]) -> None:
    parser = protocol.ResponseParser()
    headers = [(b":status", str(status).encode()), (b"x-amzn-requestid", b"r-2")]
    if error_type:
        headers.append((b"x-amzn-errortype", f"{error_type}:http://internal.amazon.com/coral/".encode()))
    body = json.dumps({"message": "text from the service"}).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    parser.receive_headers(headers)
    assert parser.is_error
    assert parser.receive_data(body) == []
    assert parser.error_body_complete
    with pytest.raises(cls, match="text from the service") as info:
        parser.receive_end()
    exc = info.value
    assert getattr(exc, "request_id", None) == "r-2"
    assert isinstance(exc, ServiceException) != isinstance(exc, TransportError)


def test_unexpected_content_type_and_missing_status() -> None:
    with pytest.raises(ProtocolError):
        protocol.ResponseParser().receive_headers([(b":status", b"200"), (b"content-type", b"text/html")])
    with pytest.raises(ProtocolError):
        protocol.ResponseParser().receive_headers([(b"content-type", b"text/html")])
