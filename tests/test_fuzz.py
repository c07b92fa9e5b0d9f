"""Property tests and fuzzing of the sans-IO codec and signers.

The decoder must only ever return messages or raise ``EventStreamError``, and
must never buffer more than its message limit, whatever bytes arrive.
"""

from __future__ import annotations

import random
import struct
import time
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amazon_polly_streaming._wire.event_signer import EventSigner, chunk_signature, date_header
from amazon_polly_streaming._wire.eventstream import (
    EventStreamDecoder,
    HeaderValue,
    Int8,
    Int16,
    Int64,
    Message,
    Timestamp,
    UUIDValue,
    encode_headers,
    encode_message,
)
from amazon_polly_streaming._wire.sigv4 import canonical_request, derive_signing_key, parse_authorization, sign_request
from amazon_polly_streaming.exceptions import EventStreamError

FUZZ_SEED = 20261124
FUZZ_FRAMES = 20_000

names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
values = st.one_of(
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-128, 127).map(Int8),
    st.integers(-(2**15), 2**15 - 1).map(Int16),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.integers(0, 2**62).map(Timestamp),
    st.binary(min_size=16, max_size=16).map(UUIDValue),
    st.binary(max_size=64),
    st.text(max_size=64),
)
messages = st.builds(
    Message,
    st.dictionaries(names, values, max_size=6),
    st.binary(max_size=2048),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=5), st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_round_trip_at_random_splits(batch: list[Message], cuts: list[int]) -> None:
    data = b"".join(encode_message(encode_headers(m.headers), m.payload) for m in batch)
    decoder = EventStreamDecoder()
    got: list[Message] = []
    pos = 0
    for cut in cuts * (len(data) // max(1, sum(cuts)) + 1):
        got += decoder.feed(data[pos : pos + cut])
        pos += cut
        if pos >= len(data):
            break
    got += decoder.feed(data[pos:])
    decoder.finish()
    assert got == batch
    for decoded, original in zip(got, batch, strict=True):
        for key, value in original.headers.items():
            # Plain ints travel as int32; every other type keeps its wire type.
            if type(value) is not int:
                assert type(decoded.headers[key]) is type(value)


def _decode_or_reject(data: bytes, limit: int) -> None:
    decoder = EventStreamDecoder(max_message_length=limit)
    try:
        for start in range(0, len(data), 97):
            for message in decoder.feed(data[start : start + 97]):
                assert isinstance(message, Message)
            assert decoder.buffered <= limit
    except EventStreamError:
        return


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_only_decode_or_raise(data: bytes) -> None:
    _decode_or_reject(data, 1024)


@settings(max_examples=200, deadline=None)
@given(st.integers(16, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_hostile_lengths_with_valid_prelude_crc(total: int, headers_length: int) -> None:
    prelude = struct.pack(">II", total, headers_length)
    frame = prelude + struct.pack(">I", zlib.crc32(prelude)) + b"\x00" * 64
    decoder = EventStreamDecoder(max_message_length=4096)
    try:
        decoder.feed(frame)
    except EventStreamError:
        return
    # Accepted only if the lengths are plausible, and then it just waits.
    assert total <= 4096
    assert decoder.buffered <= 4096


def test_mutated_frames_fuzz() -> None:
    """Flip, drop, duplicate and splice bytes of valid frames; count outcomes."""
    rng = random.Random(FUZZ_SEED)
    typed: dict[str, HeaderValue] = {":message-type": "exception", "n": Int64(7), "t": Timestamp(1)}
    base = [
        encode_message(encode_headers({":message-type": "event", ":event-type": "AudioEvent"}), bytes(range(200))),
        encode_message(encode_headers(typed), b"{}"),
        encode_message(b"", b""),
    ]
    outcomes = {"decoded": 0, "rejected": 0, "incomplete": 0}
    for _ in range(FUZZ_FRAMES):
        frame = bytearray(rng.choice(base) + rng.choice(base))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            pos = rng.randrange(len(frame))
            if op == 0:
                frame[pos] ^= 1 << rng.randrange(8)
            elif op == 1:
                del frame[pos]
            elif op == 2:
                frame.insert(pos, rng.randrange(256))
            else:
                frame[pos : pos + 4] = rng.randbytes(4)
        decoder = EventStreamDecoder(max_message_length=2048)
        try:
            for start in range(0, len(frame), rng.randint(1, 64)):
                decoder.feed(bytes(frame[start : start + 64]))
            decoder.finish()
            outcomes["decoded"] += 1
        except EventStreamError as exc:
            outcomes["rejected" if "ended inside" not in str(exc) else "incomplete"] += 1
        assert decoder.buffered <= 2048
    assert sum(outcomes.values()) == FUZZ_FRAMES
    assert outcomes["rejected"] > FUZZ_FRAMES // 2  # CRCs catch nearly every mutation


header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.from_regex(r"x-amzn-[a-z]{1,10}", fullmatch=True), header_values, max_size=5),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-", min_size=1, max_size=40),
)
def test_sign_then_verify_round_trip(extra: dict[str, str], secret: str) -> None:
    headers = [("host", "polly.us-east-1.amazonaws.com"), ("x-amz-date", "20260401T120000Z"), *extra.items()]
    key = derive_signing_key(secret, "20260401", "us-east-1", "polly")
    auth = sign_request(
        method="POST",
        path="/v1/synthesisStream",
        headers=headers,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-EVENTS",
        access_key_id="AKID",
        signing_key=key,
        scope="20260401/us-east-1/polly/aws4_request",
        amz_date="20260401T120000Z",
    )
    parsed = parse_authorization(auth.header)
    assert parsed is not None
    # A verifier sees the headers in another order and with other case.
    shuffled = [(name.upper(), value) for name, value in reversed(headers)]
    creq, _ = canonical_request(
        "POST", "/v1/synthesisStream", "", shuffled, "STREAMING-AWS4-HMAC-SHA256-EVENTS", signed=parsed.signed_headers
    )
    again = sign_request(
        method="POST",
        path="/v1/synthesisStream",
        headers=[(n, v) for n, v in shuffled if n.lower() in parsed.signed_headers],
        payload_hash="STREAMING-AWS4-HMAC-SHA256-EVENTS",
        access_key_id="AKID",
        signing_key=key,
        scope="20260401/us-east-1/polly/aws4_request",
        amz_date="20260401T120000Z",
    )
    assert again.signature == auth.signature
    assert creq.startswith("POST\n/v1/synthesisStream\n")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6), st.integers(0, 2**40))
def test_event_chain_verifies_independently(payloads: list[bytes], start_ms: int) -> None:
    def key_for(day: str) -> bytes:
        return derive_signing_key("secret", day, "us-east-1", "polly")

    seed = bytes(32)
    signer = EventSigner(key_for("20260401"), "20260401/us-east-1/polly/aws4_request", seed, key_for=key_for)
    previous = seed
    decoder = EventStreamDecoder()
    for index, payload in enumerate(payloads):
        when = start_ms + index * 1500
        (envelope,) = decoder.feed(signer.sign(payload, when))
        assert envelope.payload == payload
        assert envelope.headers[":date"] == when
        amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when // 1000))
        # Each envelope with the key and scope of its own day.
        scope = f"{amz[:8]}/us-east-1/polly/aws4_request"
        expected = chunk_signature(key_for(amz[:8]), scope, previous, date_header(when), amz, payload)
        assert envelope.headers[":chunk-signature"] == expected
        previous = expected
