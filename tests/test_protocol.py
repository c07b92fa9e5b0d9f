"""Sans-IO protocol logic: argument checks, request headers, server message mapping."""

from __future__ import annotations

import json

import pytest

from amazon_polly_streaming._wire import request as protocol
from amazon_polly_streaming._wire import response
from amazon_polly_streaming._wire.eventstream import EventStreamDecoder, encode_headers, encode_message
from amazon_polly_streaming._wire.sigv4 import canonical_request, parse_authorization
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


def _ok_parser() -> response.ResponseParser:
    parser = response.ResponseParser()
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
    pieces = protocol.split_text(text)
    assert "".join(pieces) == text
    assert all(len(piece) <= 3000 for piece in pieces)
    assert all(piece.endswith(" ") for piece in pieces[:-1])
    assert protocol.split_text("x" * 6001) == ["x" * 3000, "x" * 3000, "x"]


def test_plain_text_is_cut_at_a_sentence_end_when_one_is_near() -> None:
    sentence = "A sentence of some length, with words. "
    text = sentence * 200
    pieces = protocol.split_text(text)
    assert "".join(pieces) == text
    assert all(piece.endswith(". ") for piece in pieces[:-1])
    assert max(len(piece) for piece in pieces) <= 3000


def test_astral_characters_count_twice_and_are_never_cut() -> None:
    # Polly counts UTF-16 code units: an emoji is two characters.
    text = "\U0001f600" * 2000  # 4,000 units
    pieces = protocol.split_text(text)
    assert "".join(pieces) == text
    assert [protocol.utf16_length(piece) for piece in pieces] == [3000, 1000]
    for piece in pieces:
        piece.encode("utf-8")  # no lone surrogate from a cut inside a pair


def test_text_events_split_plain_text_and_flush_only_the_last() -> None:
    events = protocol.text_events("word " * 1000, flush=True)
    bodies = [json.loads(EventStreamDecoder().feed(event)[0].payload) for event in events]
    assert len(bodies) == 2
    assert "FlushStreamConfiguration" not in bodies[0]
    assert bodies[1]["FlushStreamConfiguration"] == {"Force": True}


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("<speak>" + "x" * 3001 + "</speak>", "3001"),  # over 3,000 billed
        ("<speak>" + "<break/>" * 750 + "x" + "</speak>", "6016"),  # over 6,000 with tags
    ],
)
def test_an_ssml_document_over_the_event_limits_is_refused(document: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        protocol.text_events(document, text_type="ssml")


def test_an_ssml_document_within_the_limits_is_one_event() -> None:
    document = "<speak>" + '<prosody rate="slow">word</prosody> ' * 150 + "</speak>"
    assert len(document) > 3000
    assert protocol.billed_length(document, ssml=True) < 3000
    assert len(protocol.text_events(document, text_type="ssml")) == 1


@pytest.mark.parametrize("text_type", [None, "text"])
@pytest.mark.parametrize("flush", [False, True])
@pytest.mark.parametrize("size", [0, 1, 2999, 3000, 3001, 6000])
def test_short_ascii_text_takes_the_short_way_to_the_same_events(size: int, flush: bool, text_type: str | None) -> None:
    # Short plain ASCII skips the encodability check and the splitter: the events are those the general way
    # makes (split where it is over 3,000 characters, flush only on the last).
    text = ("Hi there. " * 700)[:size]
    pieces = protocol.split_text(text)
    expected = [
        protocol.text_event(piece, text_type=text_type, flush=flush and i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    ]
    assert protocol.text_events(text, text_type=text_type, flush=flush) == expected


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        protocol.text_events("bad \ud800 text")


@pytest.mark.parametrize("field", ["voice_id", "engine", "language_code", "sample_rate", "lexicon_names"])
@pytest.mark.parametrize("bad", ["Mat\r\nX-Evil: 1", "Mat\x00", "Mat thew", " Matthew", "Matth\x7f", "Mätthew", ""])
def test_header_values_must_be_visible_ascii(field: str, bad: str) -> None:
    arguments: dict[str, object] = {"voice_id": "Matthew", field: [bad] if field == "lexicon_names" else bad}
    with pytest.raises(ValueError, match=r"empty|visible ASCII|lexicon names|not valid for"):
        protocol.synthesis_params(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "rate"),
    [
        ("mp3", "24000"),
        ("ogg_vorbis", "24000"),
        ("pcm", "16000"),
        ("ogg_opus", "48000"),
        ("mulaw", "8000"),
        ("alaw", "8000"),
    ],
)
def test_sample_rate_defaults_to_the_formats_documented_default(fmt: str, rate: str) -> None:
    assert protocol.synthesis_params(voice_id="Matthew", output_format=fmt).sample_rate == rate


def test_language_code_is_sent_only_when_given() -> None:
    signer = protocol.RequestSigner("us-east-1")
    creds = Credentials("AKIDEXAMPLE", SECRET)
    for language, expected in ((None, None), ("en-GB", "en-GB")):
        params = protocol.synthesis_params(voice_id="Matthew", language_code=language)
        headers, _ = signer.request_headers(
            params, authority="a", credentials=creds, amz_date="20260401T120000Z", user_agent="t"
        )
        assert dict(headers).get("x-amzn-languagecode") == expected


def test_a_request_identical_within_its_second_reuses_the_signature_and_nothing_else_does() -> None:
    # What a cached signature must never outlive: any signed input (a key rotated within the second too).
    def sign(signer: protocol.RequestSigner, **change: object) -> tuple[list[tuple[str, str]], bytes]:
        inputs: dict[str, object] = {
            "params": protocol.synthesis_params(voice_id="Matthew", output_format="pcm"),
            "authority": "a",
            "credentials": Credentials("AKIDEXAMPLE", SECRET),
            "amz_date": "20260401T120000Z",
            "user_agent": "t",
        }
        request = signer.sign(**{**inputs, **change})  # type: ignore[arg-type]
        return list(request), request.event_signer.last_signature

    signer = protocol.RequestSigner("us-east-1")
    first = sign(signer)
    assert sign(signer) == first  # the same request in the same second: the same bytes
    assert sign(protocol.RequestSigner("us-east-1")) == first  # as signing it afresh gives
    changes: list[dict[str, object]] = [
        {"amz_date": "20260401T120001Z"},
        {"credentials": Credentials("AKIDEXAMPLE", "another secret")},  # rotated within the second
        {"credentials": Credentials("AKIDOTHER", SECRET)},
        {"credentials": Credentials("AKIDEXAMPLE", SECRET, "TOKEN")},
        {"params": protocol.synthesis_params(voice_id="Joanna", output_format="pcm")},
        {"authority": "b"},
    ]
    for change in changes:
        assert sign(signer) == first  # the last request signed: the one this change differs from
        changed = sign(signer, **change)
        assert changed == sign(protocol.RequestSigner("us-east-1"), **change)
        assert changed != first
    assert sign(signer, user_agent="u")[0][-1] == ("user-agent", "u")  # not signed, but sent


def test_signed_request_repr_hides_the_signature_and_token() -> None:
    signer = protocol.RequestSigner("us-east-1")
    request = signer.sign(
        protocol.synthesis_params(voice_id="Matthew"),
        authority="a",
        credentials=Credentials("AKIDEXAMPLE", SECRET, "TOKEN-VALUE"),
        amz_date="20260401T120000Z",
        user_agent="t",
    )
    text = repr(request)
    assert "Signature=" not in text
    assert "TOKEN-VALUE" not in text
    assert SECRET not in repr(vars(signer) if hasattr(signer, "__dict__") else signer)


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
    assert parser.end_error() is None


@pytest.mark.parametrize(
    "payload",
    [
        b'{"RequestCharacters":5}',
        b'{"RequestCharacters": 5}',  # the emulator's json.dumps
        b'{"RequestCharacters":0}',
        b'{"RequestCharacters":007}',  # not JSON: no count
        b'{"RequestCharacters":-1}',
        b'{"RequestCharacters":5.0}',
        b'{"RequestCharacters":true}',
        b'{"RequestCharacters":"5"}',
        b'{"RequestCharacters":12345678901234567890123}',
        b'{"RequestCharacters":5,"Other":1}',
        b'{ "RequestCharacters" : 5 }',
        b'{"RequestCharacters":}',
        b'{"RequestCharacters":\xd9\xa3}',  # a non-ASCII digit
        b"",
        b"[5]",
    ],
)
def test_the_billed_characters_read_as_the_json_decoder_reads_them(payload: bytes) -> None:
    # StreamClosedEvent's payload is read without the JSON decoder when it has the usual shape; whatever
    # the shape, the count is the one the decoder gives (an int, not a bool), or none.
    try:
        value = json.loads(payload).get("RequestCharacters") if payload else None
    except (ValueError, AttributeError):
        value = None
    expected = value if isinstance(value, int) and not isinstance(value, bool) else None
    parser = _ok_parser()
    parser.receive_data(_event("StreamClosedEvent", payload))
    assert parser.request_characters == expected


def test_end_without_stream_closed_is_an_error() -> None:
    parser = _ok_parser()
    parser.receive_data(_event("AudioEvent", b"abc"))
    assert isinstance(parser.end_error(), IncompleteStreamError)
    parser = _ok_parser()
    parser.receive_data(_event("AudioEvent", b"abc")[:-3])
    error = parser.end_error()
    assert isinstance(error, IncompleteStreamError)
    assert "inside" in str(error)


def test_audio_before_an_exception_in_the_same_read_comes_first() -> None:
    parser = _ok_parser()
    items = parser.receive_data(
        _event("AudioEvent", b"tail") + _exception("ThrottlingException", {"message": "slow down"})
    )
    assert items[0] == b"tail"
    assert isinstance(items[1], ThrottlingException)
    assert len(items) == 2


def test_audio_after_stream_closed_is_a_protocol_error() -> None:
    parser = _ok_parser()
    items = parser.receive_data(_event("StreamClosedEvent", b'{"RequestCharacters":1}') + _event("AudioEvent", b"x"))
    assert items[0] == StreamClosedEvent(1)
    assert isinstance(items[1], ProtocolError)


@pytest.mark.parametrize("status", [b"abc", b"", b"2000", b"20x", b"-20"])
def test_a_malformed_status_is_a_protocol_error(status: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed :status"):
        response.ResponseParser().receive_headers([(b":status", status)])


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("ThrottlingException", "ThrottlingException"),
        ("com.amazonaws.polly#ThrottlingException", "ThrottlingException"),
        ("ValidationException:http://internal.amazon.com/coral/com.amazon.coral.validate/", "ValidationException"),
        ("aws.protocoltests.restjson#FooError:http://internal.amazon.com/", "FooError"),
        ("FooError,BarError", "FooError"),
    ],
)
def test_error_types_are_sanitized_as_aws_sdks_do(raw: str, clean: str) -> None:
    assert response.clean_error_type(raw) == clean


@pytest.mark.parametrize(
    "error_type",
    [
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "AccessDeniedException",
        "ExpiredTokenException",
        "RequestExpired",
        "com.amazonaws.polly#AccessDeniedException",
    ],
)
@pytest.mark.parametrize("status", [400, 403])
def test_auth_errors_are_authentication_errors_whatever_the_status(error_type: str, status: int) -> None:
    parser = response.ResponseParser()
    parser.receive_headers([(b":status", str(status).encode()), (b"x-amzn-errortype", error_type.encode())])
    parser.receive_data(json.dumps({"message": "no"}).encode())
    error = parser.end_error()
    assert isinstance(error, AuthenticationError)
    short = error_type.rsplit("#", 1)[-1]
    assert error.error_type == short
    assert short in str(error)
    assert not error.retry_safe
    if short == "AccessDeniedException":
        assert "polly:StartSpeechSynthesisStream" in str(error)


def test_namespaced_modeled_error_is_typed() -> None:
    parser = response.ResponseParser()
    parser.receive_headers([(b":status", b"400"), (b"x-amzn-errortype", b"com.amazonaws.polly#ThrottlingException")])
    parser.receive_data(json.dumps({"message": "Rate exceeded"}).encode())
    error = parser.end_error()
    assert type(error) is ThrottlingException
    assert error.message == "Rate exceeded"
    # The same name in a body's __type (no header):
    parser = response.ResponseParser()
    parser.receive_headers([(b":status", b"400")])
    parser.receive_data(json.dumps({"__type": "com.amazonaws.polly#ValidationException", "message": "bad"}).encode())
    assert type(parser.end_error()) is ValidationException


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
    (exc,) = parser.receive_data(_exception(name, body))
    assert type(exc) is cls
    assert isinstance(exc, ServiceException)
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
    (error,) = parser.receive_data(encode_message(encode_headers(headers), b""))
    assert isinstance(error, ServiceException)
    assert "boom" in str(error)
    assert error.error_type == "InternalError"


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
    parser = response.ResponseParser()
    headers = [(b":status", str(status).encode()), (b"x-amzn-requestid", b"r-2")]
    if error_type:
        headers.append((b"x-amzn-errortype", f"{error_type}:http://internal.amazon.com/coral/".encode()))
    body = json.dumps({"message": "text from the service"}).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    parser.receive_headers(headers)
    assert parser.is_error
    assert parser.receive_data(body) == []
    assert parser.error_body_complete
    exc = parser.end_error()
    assert isinstance(exc, cls)
    assert "text from the service" in str(exc)
    assert getattr(exc, "request_id", None) == "r-2"
    assert isinstance(exc, ServiceException) != isinstance(exc, TransportError)


def test_unexpected_content_type_and_missing_status() -> None:
    with pytest.raises(ProtocolError):
        response.ResponseParser().receive_headers([(b":status", b"200"), (b"content-type", b"text/html")])
    with pytest.raises(ProtocolError):
        response.ResponseParser().receive_headers([(b"content-type", b"text/html")])


def test_checked_stream_arguments_are_remembered_by_value_and_type_and_only_when_valid() -> None:
    from amazon_polly_streaming import client

    def params(**changes: object) -> object:
        arguments: dict[str, object] = {
            "voice_id": "Matthew",
            "engine": "generative",
            "language_code": None,
            "output_format": "pcm",
            "sample_rate": 16000,
            "lexicon_names": None,
            "text_type": None,
        }
        arguments.update(changes)
        return client._stream_params(**arguments)  # type: ignore[arg-type]

    first = params()
    assert params() is first  # looked up, not checked again
    with pytest.raises(TypeError, match="sample_rate"):
        params(sample_rate=16000.0)  # equal to 16000 and hashed alike, but refused
    with pytest.raises(TypeError, match="voice_id"):
        params(voice_id=["Matthew"])  # unhashable: checked, and refused
    for _ in range(2):
        with pytest.raises(ValueError, match="visible ASCII"):
            params(voice_id="Mat thew")  # refused every time: never remembered
    with pytest.raises(ValueError, match="text_type"):
        params(text_type="html")
    assert params(lexicon_names=["a1"]).lexicon_names == ("a1",)  # type: ignore[attr-defined]
    for index in range(200):
        params(voice_id=f"Voice{index}")
    assert len(client._checked) <= client._CHECKED_LIMIT
