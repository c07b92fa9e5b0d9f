"""botocore, code no one here wrote, checks what the client puts on the wire (pure functions, no network).

- ``botocore.eventstream.EventStreamBuffer`` decodes the client's signed envelopes and the TextEvents and
  CloseStreamEvent inside them: same headers, same payload, and both CRCs valid (botocore raises
  ``ChecksumMismatch`` otherwise).
- ``botocore.auth.SigV4Auth`` over an ``AWSRequest`` with the client's method, URL and headers gives the
  client's ``Authorization`` (credential scope, signed headers and ``Signature=``), and, over each envelope's
  ``AWS4-HMAC-SHA256-PAYLOAD`` string to sign, each envelope's ``:chunk-signature``.

botocore's clock is never read: ``SigV4Auth.canonical_request``, ``string_to_sign``, ``signature`` and
``scope`` take the signing time from ``request.context["timestamp"]`` (``add_auth`` is the only method that
sets it from the clock), so the tests put the client's time there.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import struct
import time
from typing import Any

import pytest

from amazon_polly_streaming._wire.request import (
    CLOSE_STREAM_EVENT,
    PATH,
    RequestSigner,
    synthesis_params,
    text_event,
)
from amazon_polly_streaming.credentials import Credentials

botocore_auth = pytest.importorskip("botocore.auth")
botocore_awsrequest = pytest.importorskip("botocore.awsrequest")
botocore_credentials = pytest.importorskip("botocore.credentials")
botocore_eventstream = pytest.importorskip("botocore.eventstream")

pytestmark = pytest.mark.timeout(60)

KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE/session+token=="
USER_AGENT = "interop-test/1.0"


def _epoch(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def _amz_date(epoch_seconds: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch_seconds))


def _decode_all(data: bytes, piece: int) -> list[Any]:
    """Every message botocore's buffer yields when fed ``data`` in ``piece``-byte slices."""
    buffer = botocore_eventstream.EventStreamBuffer()
    messages = []
    for start in range(0, len(data), piece):
        buffer.add_data(data[start : start + piece])
        messages.extend(buffer)
    return messages


def _client_request(
    *, region: str, authority: str, amz_date: str, session_token: str | None, **params: Any
) -> tuple[list[tuple[str, str]], Any]:
    params.setdefault("voice_id", "Matthew")
    params.setdefault("engine", "generative")
    params.setdefault("output_format", "pcm")
    params.setdefault("sample_rate", "16000")
    params.setdefault("language_code", None)
    return RequestSigner(region).request_headers(
        synthesis_params(**params),
        authority=authority,
        credentials=Credentials(KEY, SECRET, session_token),
        amz_date=amz_date,
        user_agent=USER_AGENT,
    )


def _botocore_request(headers: list[tuple[str, str]], amz_date: str) -> Any:
    """An AWSRequest with the client's method, URL and regular headers (host comes from the URL)."""
    pseudo = dict(item for item in headers if item[0].startswith(":"))
    regular = [(n, v) for n, v in headers if not n.startswith(":") and n != "authorization"]
    request = botocore_awsrequest.AWSRequest(
        method=pseudo[":method"], url=f"{pseudo[':scheme']}://{pseudo[':authority']}{pseudo[':path']}"
    )
    for name, value in regular:
        request.headers[name] = value
    request.context["timestamp"] = amz_date
    return request


# --------------------------------------------------------------------------- the request signature

REQUEST_CASES = [
    pytest.param("us-east-1", "polly.us-east-1.amazonaws.com", None, {}, id="aws-endpoint"),
    pytest.param(
        "eu-west-2",
        "127.0.0.1:8443",
        TOKEN,
        {"language_code": "en-GB", "lexicon_names": ["alpha", "beta2"], "voice_id": "Amy"},
        id="port-token-language-lexicons",
    ),
    pytest.param("ap-southeast-2", "polly.example.test", None, {"output_format": "ogg_vorbis", "sample_rate": "24000"}),
]


@pytest.mark.parametrize(("region", "authority", "token", "params"), REQUEST_CASES)
def test_sigv4auth_gives_the_clients_request_signature(
    region: str, authority: str, token: str | None, params: dict[str, Any]
) -> None:
    amz_date = "20260314T092653Z"
    headers, _ = _client_request(region=region, authority=authority, amz_date=amz_date, session_token=token, **params)
    names = [name for name, _ in headers]
    assert names[:4] == [":method", ":scheme", ":path", ":authority"]
    values = dict(headers)
    assert values[":path"] == PATH
    assert values["x-amz-content-sha256"] == "STREAMING-AWS4-HMAC-SHA256-EVENTS"

    auth = botocore_auth.SigV4Auth(botocore_credentials.Credentials(KEY, SECRET, token), "polly", region)
    request = _botocore_request(headers, amz_date)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    signed_headers = auth.signed_headers(auth.headers_to_sign(request))
    expected = (
        f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, SignedHeaders={signed_headers}, Signature={signature}"
    )

    assert values["authorization"] == expected
    # botocore signs every header it is given except its blocklist (user-agent...): the client sent no
    # header outside the signature but user-agent.
    assert "host" in signed_headers.split(";")
    assert set(signed_headers.split(";")) == {n for n in names if not n.startswith(":")} - {
        "authorization",
        "user-agent",
    } | {"host"}


# --------------------------------------------------------------------------- event-stream envelopes

TEXTS: list[tuple[str, dict[str, Any]]] = [
    ("Hello there.", {}),
    ("<speak>Hi <break time='300ms'/> there.</speak>", {"text_type": "ssml"}),
    ('naïve café, 日本語, "quoted" \\ backslash, emoji 🎉\n', {"flush": True}),
    ("word " * 600, {}),
]


def _signed_stream(start_ms: int, step_ms: int) -> tuple[str, list[tuple[int, bytes, bytes]], bytes]:
    """(request Signature hex, [(epoch ms, inner message, envelope)], all envelopes) from the client."""
    amz_date = _amz_date(start_ms // 1000)
    headers, signer = _client_request(
        region="us-east-1", authority="polly.us-east-1.amazonaws.com", amz_date=amz_date, session_token=None
    )
    seed = dict(headers)["authorization"].rsplit("Signature=", 1)[1]
    inners = [text_event(text, **options) for text, options in TEXTS] + [CLOSE_STREAM_EVENT]
    sent = []
    for index, inner in enumerate(inners):
        when = start_ms + index * step_ms
        sent.append((when, inner, signer.sign(inner, when)))
    return seed, sent, b"".join(envelope for _, _, envelope in sent)


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_event_stream_buffer_decodes_the_clients_envelopes(piece: int) -> None:
    _, sent, wire = _signed_stream(_epoch("2026-03-14T09:26:53Z") * 1000 + 123, 450)
    messages = _decode_all(wire, piece)
    assert len(messages) == len(sent)
    for message, (when, inner, envelope) in zip(messages, sent, strict=True):
        assert message.prelude.total_length == len(envelope)
        assert message.crc == struct.unpack(">I", envelope[-4:])[0]
        assert set(message.headers) == {":date", ":chunk-signature"}
        assert message.headers[":date"] == when  # a timestamp header, milliseconds since the epoch
        assert isinstance(message.headers[":chunk-signature"], bytes)
        assert len(message.headers[":chunk-signature"]) == 32
        assert message.payload == inner


def test_event_stream_buffer_decodes_the_inner_events() -> None:
    _, _, wire = _signed_stream(_epoch("2026-03-14T09:26:53Z") * 1000, 10)
    inners = [message.payload for message in _decode_all(wire, 4096)]
    decoded = [_decode_all(inner, len(inner))[0] for inner in inners]
    expected_bodies: list[dict[str, Any]] = []
    for text, options in TEXTS:
        body: dict[str, Any] = {"Text": text}
        if "text_type" in options:
            body["TextType"] = options["text_type"]
        if options.get("flush"):
            body["FlushStreamConfiguration"] = {"Force": True}
        expected_bodies.append(body)
    expected_bodies.append({})
    event_types = ["TextEvent"] * len(TEXTS) + ["CloseStreamEvent"]
    for message, event_type, body in zip(decoded, event_types, expected_bodies, strict=True):
        assert message.headers == {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        }
        assert json.loads(message.payload) == body


def _verify_chain_with_botocore(seed_hex: str, wire: bytes, region: str = "us-east-1") -> None:
    """Each :chunk-signature, recomputed by SigV4Auth from what botocore decoded.

    The string to sign is AWS's ``AWS4-HMAC-SHA256-PAYLOAD`` form, with the key and scope of the envelope's
    own ``:date`` (as AWS's SDKs sign: @smithy/signature-v4 ``SignatureV4.signEvent`` derives both from the
    ``signingDate`` that @aws-sdk/eventstream-handler-node passes for each event; aws-sdk-go-v2 and
    smithy-python do the same).
    """
    auth = botocore_auth.SigV4Auth(botocore_credentials.Credentials(KEY, SECRET), "polly", region)
    previous = seed_hex
    for message in _decode_all(wire, 4096):
        when_ms = message.headers[":date"]
        request = botocore_awsrequest.AWSRequest(method="POST", url="https://polly.example.test/")
        request.context["timestamp"] = _amz_date(when_ms // 1000)
        date_header = b"\x05:date\x08" + struct.pack(">q", when_ms)  # name length, name, type 8 (timestamp)
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                request.context["timestamp"],
                auth.credential_scope(request),
                previous,
                hashlib.sha256(date_header).hexdigest(),
                hashlib.sha256(message.payload).hexdigest(),
            ]
        )
        expected = auth.signature(string_to_sign, request)
        assert message.headers[":chunk-signature"].hex() == expected, f"envelope at {when_ms} ms"
        previous = expected


def test_sigv4auth_gives_each_chunk_signature() -> None:
    seed, _, wire = _signed_stream(_epoch("2026-03-14T09:26:53Z") * 1000 + 999, 700)
    _verify_chain_with_botocore(seed, wire)


def test_chunk_signatures_across_midnight_use_each_envelopes_date() -> None:
    """A stream signed at 23:59:58 UTC whose later envelopes carry the next day's :date."""
    seed, sent, wire = _signed_stream(_epoch("2026-03-14T23:59:58Z") * 1000 + 500, 700)
    assert _amz_date(sent[0][0] // 1000)[:8] != _amz_date(sent[-1][0] // 1000)[:8]
    _verify_chain_with_botocore(seed, wire)
