"""Known-answer tests for the rolling event signature."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from amazon_polly_streaming._wire.event_signer import EventSigner, amz_date, chunk_signature, date_header
from amazon_polly_streaming._wire.eventstream import EventStreamDecoder, encode_headers, encode_message
from amazon_polly_streaming._wire.sigv4 import credential_scope, derive_signing_key

VECTORS = json.loads((Path(__file__).parent / "vectors" / "event_signing_vectors.json").read_text())
E2E = json.loads((Path(__file__).parent / "vectors" / "polly_e2e_vector.json").read_text())


def _amz(seconds: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))


def test_aws_sdk_go_v1_chain() -> None:
    case = VECTORS["aws-sdk-go_v1"]
    when = calendar.timegm(time.strptime(case["time"], "%Y-%m-%dT%H:%M:%SZ"))
    day = _amz(when)[:8]
    key = derive_signing_key(case["secret_access_key"], day, case["region"], case["service"])
    scope = credential_scope(day, case["region"], case["service"])
    previous = bytes.fromhex(case["seed_signature_hex"])
    for chunk in case["chunks"]:
        previous = chunk_signature(
            key, scope, previous, chunk["header_bytes_utf8"].encode(), _amz(when), chunk["payload_utf8"].encode()
        )
        assert previous.hex() == chunk["signature_hex"]


def test_aws_sdk_go_v2_chain() -> None:
    case = VECTORS["aws-sdk-go-v2"]
    previous = case["seed_signature_raw_utf8"].encode()
    for message in case["messages"]:
        when = message["unix_time"]
        day = _amz(when)[:8]
        key = derive_signing_key(case["secret_access_key"], day, case["region"], case["service"])
        previous = chunk_signature(
            key,
            credential_scope(day, case["region"], case["service"]),
            previous,
            message["header_bytes_utf8"].encode(),
            _amz(when),
            message["payload_utf8"].encode(),
        )
        assert previous.hex() == message["signature_hex"]


def test_smithy_rs_string_to_sign_parts() -> None:
    import hashlib

    case = VECTORS["smithy-rs_aws-sigv4"]
    inner = case["inner_message"]
    headers = encode_headers({h["name"]: h["value"] for h in inner["headers"]})
    message = encode_message(headers, inner["payload_utf8"].encode())
    lines = case["expected_string_to_sign"].split("\n")
    assert hashlib.sha256(date_header(case["unix_time"] * 1000)).hexdigest() == lines[4]
    assert hashlib.sha256(message).hexdigest() == lines[5]


def test_polly_envelope_chain_matches_vector_bytes() -> None:
    creds = E2E["credentials"]
    key = derive_signing_key(creds["secret_access_key"], "20260401", "us-east-1", "polly")
    signer = EventSigner(
        key, credential_scope("20260401", "us-east-1", "polly"), bytes.fromhex(E2E["request"]["seed_signature"])
    )
    for event in E2E["events"]:
        when = calendar.timegm(time.strptime(event["signing_time"], "%Y-%m-%dT%H:%M:%SZ"))
        envelope = signer.sign(bytes.fromhex(event["inner_message_hex"]), when * 1000)
        assert envelope.hex() == event["envelope_hex"]
        assert signer.last_signature.hex() == event["signature"]
        (decoded,) = EventStreamDecoder().feed(envelope)
        assert decoded.headers[":chunk-signature"] == bytes.fromhex(event["signature"])
    assert "wJal" not in repr(signer)


def test_transcribe_doc_end_frame_decodes() -> None:
    import base64

    frame = base64.b64decode(VECTORS["transcribe_doc_signed_end_frame"]["base64"])
    (message,) = EventStreamDecoder().feed(frame)
    assert list(message.headers) == [":date", ":chunk-signature"]
    assert message.payload == b""
    assert len(message.headers[":chunk-signature"]) == 32  # type: ignore[arg-type]


def test_each_envelope_is_signed_with_the_key_and_scope_of_its_own_date() -> None:
    # AWS's SDKs derive the scope from each message's date (aws-sdk-go-v2's
    # stream signer, smithy-python, aws-sdk-js-v3 signMessage): a stream that
    # crosses 00:00 UTC switches day in the middle of its chain.
    from amazon_polly_streaming._wire.request import RequestSigner, synthesis_params
    from amazon_polly_streaming.credentials import Credentials

    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    before = calendar.timegm((2026, 4, 1, 23, 59, 59))
    after = before + 2
    request = RequestSigner("us-east-1").sign(
        synthesis_params(voice_id="Matthew"),
        authority="a",
        credentials=Credentials("AKIDEXAMPLE", secret),
        amz_date=_amz(before),
        user_agent="t",
    )
    signer = request.event_signer
    previous = signer.last_signature
    for when in (before, after):
        day = _amz(when)[:8]
        envelope = signer.sign(b"payload", when * 1000)
        expected = chunk_signature(
            derive_signing_key(secret, day, "us-east-1", "polly"),
            credential_scope(day, "us-east-1", "polly"),
            previous,
            date_header(when * 1000),
            _amz(when),
            b"payload",
        )
        (decoded,) = EventStreamDecoder().feed(envelope)
        assert decoded.headers[":chunk-signature"] == expected
        previous = expected
    assert "20260402" in repr(signer)


@given(st.integers(min_value=0, max_value=253402300799))  # 1970 to the end of year 9999
def test_amz_date_is_the_utc_calendar_time(epoch_seconds: int) -> None:
    # The wire package has no clock: its own date arithmetic must agree with the C library's.
    assert amz_date(epoch_seconds) == time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch_seconds))


def test_amz_date_at_leap_days_and_year_ends() -> None:
    for text in ("20000229T235959Z", "20240301T000000Z", "21000228T120000Z", "19991231T235959Z", "20261206T030244Z"):
        assert amz_date(calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ"))) == text
