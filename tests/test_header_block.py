"""The remembering HPACK encoder makes exactly the bytes hpack's own would, and skips the work when it may."""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from amazon_polly_streaming._transport.header_block import HeaderBlockEncoder

pytestmark = pytest.mark.timeout(120)


def request(date: bytes, signature: bytes, voice: bytes = b"Matthew") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":path", b"/v1/synthesisStream"),
        (b":authority", b"polly.us-east-1.amazonaws.com"),
        (b"content-type", b"application/vnd.amazon.eventstream"),
        (b"x-amz-date", date),
        (b"x-amzn-voiceid", voice),
        NeverIndexedHeaderTuple(b"authorization", b"AWS4-HMAC-SHA256 Signature=" + signature),
        (b"user-agent", b"amazon-polly-streaming/2"),
    ]


# A step: maybe a new table size from the server's SETTINGS, then a request (date, signature, voice,
# whether the credentials are marked never-indexed, Huffman).
_steps = st.lists(
    st.tuples(
        st.sampled_from([None] * 6 + [0, 256, 4096]),  # mostly none: a client sees few SETTINGS
        st.sampled_from([b"20261206T060000Z", b"20261206T060001Z"]),
        st.just(b"aa" * 32),
        st.sampled_from([b"Matthew", b"x" * 300]),  # the long one does not fit a 256-byte table
        st.booleans(),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(_steps)
def test_the_blocks_are_hpacks_own(steps: list[tuple[int | None, bytes, bytes, bytes, bool, bool]]) -> None:
    ours, plain, decoder = HeaderBlockEncoder(), Encoder(), Decoder()
    for size, date, signature, voice, never_indexed, huffman in steps:
        if size is not None:
            ours.header_table_size = plain.header_table_size = size
        headers = request(date, signature, voice)
        if not never_indexed:
            headers = [(name, value) for name, value in headers]
        block = ours.encode(headers, huffman=huffman)
        assert block == plain.encode(headers, huffman=huffman)
        assert [tuple(h) for h in decoder.decode(block, raw=True)] == [tuple(h) for h in headers]


def test_the_same_request_on_an_unchanged_table_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = HeaderBlockEncoder()
    encoded: list[int] = []
    original = Encoder.encode

    def counting(self: Encoder, headers: object, huffman: bool = True) -> bytes:
        encoded.append(1)
        return original(self, headers, huffman)  # type: ignore[arg-type]

    monkeypatch.setattr(Encoder, "encode", counting)
    first = encoder.encode(request(b"20261206T060000Z", b"aa" * 32))  # adds the date (and more) to the table
    second = encoder.encode(request(b"20261206T060000Z", b"aa" * 32))  # all indexed: the table is unchanged
    blocks = [encoder.encode(request(b"20261206T060000Z", b"aa" * 32)) for _ in range(10)]
    assert len(encoded) == 2
    assert first != second
    assert blocks == [second] * 10
    encoder.encode(request(b"20261206T060001Z", b"bb" * 32))  # a new second: a new date in the table
    assert len(encoded) == 3
    encoder.header_table_size = 256  # the server's SETTINGS: the next block starts with a size update
    resized = encoder.encode(request(b"20261206T060001Z", b"bb" * 32))
    assert len(encoded) == 4
    assert resized[0] & 0xE0 == 0x20
    assert "Signature" not in repr(encoder)


@pytest.mark.parametrize("marked_first", [True, False])
def test_a_never_indexed_header_and_the_same_header_unmarked_are_different_requests(marked_first: bool) -> None:
    marked = request(b"20261206T060000Z", b"aa" * 32)
    unmarked = [(name, value) for name, value in marked]
    ours, plain = HeaderBlockEncoder(), Encoder()
    order = [marked, marked, unmarked, unmarked] if marked_first else [unmarked, unmarked, marked, marked]
    for headers in order:
        assert ours.encode(headers) == plain.encode(headers)


def test_a_new_table_size_is_announced_in_the_next_block() -> None:
    headers = request(b"20261206T060000Z", b"aa" * 32)
    ours, plain = HeaderBlockEncoder(), Encoder()
    for size in (None, None, 256, None, 4096, None):
        if size is not None:
            ours.header_table_size = plain.header_table_size = size
        assert ours.encode(headers) == plain.encode(headers)
