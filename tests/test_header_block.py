"""The HPACK encoder: blocks any decoder reads back, per-request headers kept out of the table, work done once."""

from __future__ import annotations

from typing import Any

import pytest
from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from amazon_polly_streaming._transport.header_block import HeaderBlockEncoder, UnindexedHeaderTuple

pytestmark = pytest.mark.timeout(120)


def request(
    date: bytes, signature: bytes, voice: bytes = b"Matthew", *, marked: bool = True, token: bytes | None = None
) -> list[Any]:
    """A request's headers; ``marked``: the date unindexed and the credentials never indexed (as the client sends)."""
    date_header: Any = UnindexedHeaderTuple(b"x-amz-date", date) if marked else (b"x-amz-date", date)
    authorization = b"AWS4-HMAC-SHA256 Signature=" + signature
    credentials: list[Any] = [NeverIndexedHeaderTuple(b"authorization", authorization)]
    if token is not None:
        credentials.append(NeverIndexedHeaderTuple(b"x-amz-security-token", token))
    if not marked:
        credentials = [(name, value) for name, value in credentials]
    return [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":path", b"/v1/synthesisStream"),
        (b":authority", b"polly.us-east-1.amazonaws.com"),
        (b"content-type", b"application/vnd.amazon.eventstream"),
        date_header,
        (b"x-amzn-voiceid", voice),
        *credentials,
        (b"user-agent", b"amazon-polly-streaming/2"),
    ]


def sent_order(headers: list[Any]) -> list[tuple[bytes, bytes, bool]]:
    """What a decoder must read: the indexable headers in order, then the literals in order; and which are
    never indexed."""
    indexable = [h for h in headers if getattr(h, "indexable", True)]
    literals = [h for h in headers if not getattr(h, "indexable", True)]
    return [(h[0], h[1], isinstance(h, NeverIndexedHeaderTuple)) for h in indexable + literals]


def decoded(decoder: Decoder, block: bytes) -> list[tuple[bytes, bytes, bool]]:
    return [(h[0], h[1], isinstance(h, NeverIndexedHeaderTuple)) for h in decoder.decode(block, raw=True)]


# A step: maybe a new table size from the server's SETTINGS, then a request (date, signature, voice, a
# session token or not, whether the per-request headers are marked, Huffman).
_steps = st.lists(
    st.tuples(
        st.sampled_from([None] * 6 + [0, 256, 4096]),  # mostly none: a client sees few SETTINGS
        st.sampled_from([b"20261206T060000Z", b"20261206T060001Z", b"20261206T060002Z"]),
        st.sampled_from([b"aa" * 32, b"bb" * 32]),
        st.sampled_from([b"Matthew", b"x" * 300]),  # the long one does not fit a 256-byte table
        st.sampled_from([None, b"t" * 40, b"T" * 700]),
        st.booleans(),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(_steps)
def test_every_block_decodes_to_the_request_and_the_tables_agree(
    steps: list[tuple[int | None, bytes, bytes, bytes, bytes | None, bool, bool]],
) -> None:
    ours, plain, decoder = HeaderBlockEncoder(), Encoder(), Decoder()
    for size, date, signature, voice, token, marked, huffman in steps:
        if size is not None:
            ours.header_table_size = plain.header_table_size = size
        headers = request(date, signature, voice, marked=marked, token=token)
        block = ours.encode(headers, huffman=huffman)
        expected = plain.encode(headers, huffman=huffman)
        if not marked:
            assert block == expected  # nothing kept out of the table: hpack's own bytes
        assert decoded(decoder, block) == sent_order(headers)
        # The decoder's table is the encoder's: the next block's indexes mean the same to both.
        assert list(decoder.header_table.dynamic_entries) == list(ours.header_table.dynamic_entries)


def test_a_new_second_neither_grows_the_table_nor_runs_hpack(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, decoder = HeaderBlockEncoder(), Decoder()
    encoded: list[int] = []
    original = Encoder.encode

    def counting(self: Encoder, headers: object, huffman: bool = True) -> bytes:
        encoded.append(1)
        return original(self, headers, huffman)  # type: ignore[arg-type]

    monkeypatch.setattr(Encoder, "encode", counting)
    first = encoder.encode(request(b"20261206T060000Z", b"aa" * 32))  # indexes the headers that stay
    second = encoder.encode(request(b"20261206T060000Z", b"aa" * 32))  # all of those indexed now
    blocks = [encoder.encode(request(b"20261206T060000Z", b"aa" * 32)) for _ in range(10)]
    assert len(encoded) == 2
    assert first != second
    assert blocks == [second] * 10
    decoder.decode(first)
    decoder.decode(second)
    table = list(encoder.header_table.dynamic_entries)
    for second_of_minute in range(1, 60):  # a minute of new signatures
        date = b"20261206T0600%02dZ" % second_of_minute
        block = encoder.encode(request(date, b"%02d" % second_of_minute * 32))
        assert decoded(decoder, block)[-2:] == [
            (b"x-amz-date", date, False),
            (b"authorization", b"AWS4-HMAC-SHA256 Signature=" + b"%02d" % second_of_minute * 32, True),
        ]
    assert len(encoded) == 2  # the headers that stay the same were encoded once and remembered
    assert list(encoder.header_table.dynamic_entries) == table
    # With the date indexed, as hpack would have it, every new second adds to the table and runs hpack.
    for second_of_minute in range(2):
        encoder.encode(request(b"20261206T0601%02dZ" % second_of_minute, b"cc" * 32, marked=False))
    assert len(encoded) == 4
    assert len(encoder.header_table.dynamic_entries) == len(table) + 3
    encoder.header_table_size = 256  # the server's SETTINGS: the next block starts with a size update
    resized = encoder.encode(request(b"20261206T060001Z", b"bb" * 32))
    assert resized[0] & 0xE0 == 0x20
    assert "Signature" not in repr(encoder)


def test_the_literals_are_the_same_bytes_on_every_connection() -> None:
    # They name no dynamic entry, so a connection's history cannot change them.
    fresh, used = HeaderBlockEncoder(), HeaderBlockEncoder()
    used.encode([(b"x-amz-date", b"20261206T050000Z"), (b"authorization", b"old"), (b"x-amz-security-token", b"t")])
    headers = request(b"20261206T060000Z", b"aa" * 32, token=b"t" * 40)
    tail = b"".join(HeaderBlockEncoder().encode([h]) for h in headers if not getattr(h, "indexable", True))
    assert fresh.encode(headers).endswith(tail)
    assert used.encode(headers).endswith(tail)


@pytest.mark.parametrize("marked_first", [True, False])
def test_a_marked_header_and_the_same_header_unmarked_are_different_requests(marked_first: bool) -> None:
    marked = request(b"20261206T060000Z", b"aa" * 32)
    unmarked = request(b"20261206T060000Z", b"aa" * 32, marked=False)
    ours, decoder = HeaderBlockEncoder(), Decoder()
    order = [marked, marked, unmarked, unmarked] if marked_first else [unmarked, unmarked, marked, marked]
    for headers in order:
        assert decoded(decoder, ours.encode(headers)) == sent_order(headers)


def test_a_new_table_size_is_announced_in_the_next_block() -> None:
    headers = request(b"20261206T060000Z", b"aa" * 32, marked=False)
    ours, plain = HeaderBlockEncoder(), Encoder()
    for size in (None, None, 256, None, 4096, None):
        if size is not None:
            ours.header_table_size = plain.header_table_size = size
        assert ours.encode(headers) == plain.encode(headers)


def test_an_unindexed_header_is_a_header_tuple_that_h2_passes_on() -> None:
    from h2.utilities import utf8_encode_headers

    header = UnindexedHeaderTuple(b"x-amz-date", b"20261206T060000Z")
    assert isinstance(header, HeaderTuple)
    assert not header.indexable
    (passed,) = list(utf8_encode_headers([header]))
    assert type(passed) is UnindexedHeaderTuple
