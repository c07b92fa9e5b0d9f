"""The emulator over real HTTP/2+TLS with requests AWS's SDKs send and ours never does.

A small HTTP/2 client of its own here, because these tests need what no ordinary client does: a host signed
as ``:authority`` (AWS's JS SDK v3), a GOAWAY sent while the request body is still to come (the JS SDK
again), an event chain that crosses midnight, lexicon names in one field each (Go v2).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import GoAwayFrame

from amazon_polly_streaming._wire.eventstream import EventStreamDecoder, Message, encode_headers, encode_message
from amazon_polly_streaming.emulator import Emulator, EmulatorConfig
from emulator_signing import BEFORE_MIDNIGHT, KEY, ChainSigner, amz_date, signed_request

pytestmark = pytest.mark.timeout(60)
REFUSED_STREAM = 0x7
#: HTTP/2's initial stream window (RFC 9113 6.9.2), which the emulator keeps.
STREAM_WINDOW = 65535


def _inner(event_type: str, body: dict[str, Any]) -> bytes:
    headers = encode_headers(
        ((":event-type", event_type), (":content-type", "application/json"), (":message-type", "event"))
    )
    return encode_message(headers, json.dumps(body).encode())


def body(signer: ChainSigner, texts: Sequence[tuple[float, dict[str, Any]]], close_at: float) -> bytes:
    """Signed envelopes: each TextEvent body at its time, then CloseStreamEvent and the final empty envelope."""
    parts = [signer.sign(_inner("TextEvent", text), int(when * 1000)) for when, text in texts]
    parts.append(signer.sign(_inner("CloseStreamEvent", {}), int(close_at * 1000)))
    parts.append(signer.sign(b"", int(close_at * 1000)))
    return b"".join(parts)


@dataclass
class Response:
    status: int | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytes = b""
    ended: bool = False
    reset: int | None = None

    def messages(self) -> list[Message]:
        return EventStreamDecoder().feed(self.data)

    def last(self) -> tuple[str, dict[str, Any]]:
        message = self.messages()[-1]
        kind = message.headers.get(":event-type") or message.headers.get(":exception-type")
        return str(kind), json.loads(message.payload or b"{}")


class RawClient:
    """One HTTP/2 connection whose frames the test orders itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False)
        )
        self.responses: dict[int, Response] = {}
        self.eof = False
        #: Flow-controlled bytes received and not yet handed back, per stream (``until(ack=False)``).
        self.unacked: dict[int, int] = {}
        self.h2.initiate_connection()
        self.flush()

    @classmethod
    async def connect(cls, emulator: Emulator) -> RawClient:
        context = ssl.create_default_context(cafile=emulator.ca_file)
        context.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection("127.0.0.1", emulator.port, ssl=context)
        return cls(reader, writer)

    def flush(self) -> None:
        self.writer.write(self.h2.data_to_send())

    def request(self, fields: list[tuple[str, str]], data: bytes = b"", *, end: bool = True) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.responses[stream_id] = Response()
        self.h2.send_headers(stream_id, [(n.encode(), v.encode()) for n, v in fields], end_stream=not data and end)
        if data:
            self.send(stream_id, data, end=end)
        self.flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, *, end: bool = True) -> None:
        self.h2.send_data(stream_id, data, end_stream=end)
        self.flush()

    def goaway(self) -> None:
        """A graceful GOAWAY, written past h2 (which would stop this side sending anything more)."""
        self.writer.write(GoAwayFrame(0, last_stream_id=0, error_code=0).serialize())

    async def until(self, done: Callable[[], bool], timeout: float = 10.0, *, ack: bool = True) -> None:
        """Read frames until ``done()``; ``ack=False`` keeps the window shut (a client that never reads)."""
        if ack:
            for stream_id, size in self.unacked.items():
                self.h2.acknowledge_received_data(size, stream_id)
            self.unacked.clear()
            self.flush()
        async with asyncio.timeout(timeout):
            while not done() and not self.eof:
                data = await self.reader.read(65536)
                if not data:
                    self.eof = True
                    break
                for event in self.h2.receive_data(data):
                    response = self.responses.get(getattr(event, "stream_id", 0) or 0)
                    if response is None:
                        continue
                    if isinstance(event, h2.events.ResponseReceived):
                        response.headers = dict(event.headers or [])
                        response.status = int(response.headers[b":status"])
                    elif isinstance(event, h2.events.DataReceived):
                        response.data += event.data or b""
                        size, stream_id = event.flow_controlled_length or 0, event.stream_id or 0
                        if ack:
                            self.h2.acknowledge_received_data(size, stream_id)
                        else:
                            self.unacked[stream_id] = self.unacked.get(stream_id, 0) + size
                    elif isinstance(event, h2.events.StreamEnded):
                        response.ended = True
                    elif isinstance(event, h2.events.StreamReset):
                        response.reset = int(event.error_code or 0)
                with contextlib.suppress(Exception):
                    self.flush()

    async def finished(self, stream_id: int) -> Response:
        response = self.responses[stream_id]
        await self.until(lambda: response.ended or response.reset is not None)
        return response

    def close(self) -> None:
        self.writer.close()


def _authority(emulator: Emulator) -> str:
    return emulator.endpoint_url.removeprefix("https://")


async def exchange(emulator: Emulator, fields: list[tuple[str, str]], data: bytes) -> Response:
    client = await RawClient.connect(emulator)
    try:
        return await client.finished(client.request(fields, data))
    finally:
        client.close()


# ------------------------------------------------------------------ SigV4 over HTTP/2


@pytest.mark.parametrize("host_name", ["host", ":authority"])
async def test_the_host_may_be_signed_as_authority_as_the_js_sdk_does(host_name: str) -> None:
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT) as emulator:
        fields, seed = signed_request(authority=_authority(emulator), host_name=host_name)
        text = [(BEFORE_MIDNIGHT, {"Text": "Hello."})]
        response = await exchange(emulator, fields, body(ChainSigner(seed), text, BEFORE_MIDNIGHT))
        assert response.status == 200, response
        assert response.last()[0] == "StreamClosedEvent"
        assert emulator.requests[-1].access_key_id == KEY


async def test_an_event_chain_that_crosses_midnight() -> None:
    # The request is signed two seconds before midnight (by the emulator's clock); its events after it.
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT) as emulator:
        texts = [(BEFORE_MIDNIGHT + 1, {"Text": "Before midnight. "}), (BEFORE_MIDNIGHT + 3, {"Text": "After it."})]
        fields, seed = signed_request(authority=_authority(emulator))
        response = await exchange(emulator, fields, body(ChainSigner(seed), texts, BEFORE_MIDNIGHT + 4))
        assert response.status == 200
        assert response.last() == ("StreamClosedEvent", {"RequestCharacters": len("Before midnight. After it.")})
        # A client that keeps the request's day for its events after midnight is refused.
        fields, seed = signed_request(authority=_authority(emulator))
        stale = ChainSigner(seed, fixed_day=amz_date(BEFORE_MIDNIGHT)[:8])
        response = await exchange(emulator, fields, body(stale, texts, BEFORE_MIDNIGHT + 4))
        kind, error = response.last()
        assert (kind, error["reason"]) == ("ValidationException", "invalidInboundEvent")
        assert error["message"] == "The event signature is invalid"


async def test_lexicon_names_in_one_field_each_as_go_v2_sends_them() -> None:
    # All fields count: five names are the model's limit, a sixth field makes six.
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT) as emulator:
        for count, status in ((5, 200), (6, 400)):
            names = [("x-amzn-lexiconnames", f"lexicon{n}") for n in range(count)]
            fields, seed = signed_request(authority=_authority(emulator), extra=names)
            response = await exchange(emulator, fields, body(ChainSigner(seed), [], BEFORE_MIDNIGHT))
            assert response.status == status
        assert json.loads(response.data)["fields"][0]["name"] == "LexiconNames"


async def test_a_key_without_the_permission_is_refused() -> None:
    for error_type in ("ValidationException", "AccessDeniedException"):
        config = EmulatorConfig(
            unauthorized_keys={KEY}, unauthorized_error=error_type, clock=lambda: float(BEFORE_MIDNIGHT)
        )
        async with Emulator(config) as emulator:
            fields, seed = signed_request(authority=_authority(emulator))
            response = await exchange(emulator, fields, body(ChainSigner(seed), [], BEFORE_MIDNIGHT))
            assert (response.status, response.headers[b"x-amzn-errortype"].decode()) == (400, error_type)
            assert "polly:StartSpeechSynthesisStream" in json.loads(response.data)["message"]


# ------------------------------------------------------------------ a client's GOAWAY


async def test_a_clients_goaway_ends_no_stream_it_opened() -> None:
    # AWS's JS SDK sends GOAWAY right after the response headers of its only stream, then keeps sending
    # events and reading audio (RFC 9113 6.8: the GOAWAY ends no stream already opened).
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT) as emulator:
        fields, seed = signed_request(authority=_authority(emulator))
        signer = ChainSigner(seed)
        client = await RawClient.connect(emulator)
        try:
            first = client.request(
                fields, signer.sign(_inner("TextEvent", {"Text": "Hello. "}), BEFORE_MIDNIGHT * 1000), end=False
            )
            await client.until(lambda: client.responses[first].status is not None)
            assert client.responses[first].status == 200
            client.goaway()
            # A stream opened after the GOAWAY is refused, unprocessed.
            late_fields, late_seed = signed_request(authority=_authority(emulator))
            late = client.request(late_fields, body(ChainSigner(late_seed), [], BEFORE_MIDNIGHT))
            rest = body(signer, [(BEFORE_MIDNIGHT, {"Text": "Still here."})], BEFORE_MIDNIGHT)
            client.send(first, rest)
            response = await client.finished(first)
            assert response.last() == ("StreamClosedEvent", {"RequestCharacters": len("Hello. Still here.")})
            assert client.responses[late].reset == REFUSED_STREAM
            # With its last stream over, the connection closes.
            await client.until(lambda: False)
            assert client.eof
        finally:
            client.close()
        assert [r.outcome for r in emulator.requests] == ["ok"]


# ------------------------------------------------------------------ errors carry ``message``


async def test_exceptions_carry_message_before_and_after_the_headers() -> None:
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT) as emulator:
        authority = _authority(emulator)
        for phase, status in (("before_headers", 400), ("after_headers", 200)):
            fields, seed = signed_request(authority=authority)
            text = [(BEFORE_MIDNIGHT, {"Text": f"{{{{fault:throttling@{phase}}}}} Hi."})]
            response = await exchange(emulator, fields, body(ChainSigner(seed), text, BEFORE_MIDNIGHT))
            assert response.status == status
            payload = json.loads(response.data) if status != 200 else response.last()[1]
            assert payload["message"] == "Rate exceeded"
            assert "Message" not in payload


@pytest.mark.parametrize(
    ("directive", "listed"),
    [
        ("{{fault:bogus}}", "one of corrupt_crc, drop,"),
        ("{{fault:drop@later}}", "one of before_headers, after_headers"),
    ],
)
async def test_an_invalid_directive_lists_what_is_valid(directive: str, listed: str) -> None:
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT) as emulator:
        fields, seed = signed_request(authority=_authority(emulator))
        text = [(BEFORE_MIDNIGHT, {"Text": f"{directive} Hi."})]
        response = await exchange(emulator, fields, body(ChainSigner(seed), text, BEFORE_MIDNIGHT))
        kind, error = response.last()
        assert kind == "ValidationException"
        assert error["message"].startswith("Invalid emulator directive: ")
        assert listed in error["message"]


@pytest.mark.parametrize(
    ("event", "field_name"),
    [
        ({"Text": "Hi", "TextType": "markdown"}, "TextType"),
        ({"Text": "<speak>Unclosed", "TextType": "ssml"}, "Text"),
        ({"Text": "x" * 3001}, "Text"),
    ],
    ids=["text-type", "malformed-ssml", "over-3000-billed"],
)
async def test_invalid_text_events_end_the_stream_with_a_validation_exception(
    event: dict[str, Any], field_name: str
) -> None:
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT) as emulator:
        fields, seed = signed_request(authority=_authority(emulator))
        response = await exchange(
            emulator, fields, body(ChainSigner(seed), [(BEFORE_MIDNIGHT, event)], BEFORE_MIDNIGHT)
        )
        kind, error = response.last()
        assert (kind, error["fields"][0]["name"]) == ("ValidationException", field_name)
        assert emulator.requests[-1].outcome == "error:ValidationException"


async def test_a_close_with_no_text_before_it_closes_the_stream_at_once() -> None:
    # The CloseStreamEvent alone, the request body left open: the stream ends now, not at the idle limit.
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT, idle_timeout=3.0) as emulator:
        fields, seed = signed_request(authority=_authority(emulator))
        close = ChainSigner(seed).sign(_inner("CloseStreamEvent", {}), BEFORE_MIDNIGHT * 1000)
        client = await RawClient.connect(emulator)
        try:
            stream = client.request(fields, close, end=False)
            response = client.responses[stream]
            await client.until(lambda: response.ended or response.reset is not None, timeout=2.0)
            assert response.last() == ("StreamClosedEvent", {"RequestCharacters": 0})
        finally:
            client.close()


# ------------------------------------------------------------------ flow control of the request's text


def _window_at_least(client: RawClient, stream_id: int, size: int) -> bool:
    return bool(client.h2.local_flow_control_window(stream_id) >= size)


@pytest.mark.all_loops
async def test_text_sent_by_a_client_that_never_reads_its_audio_backs_up() -> None:
    # RFC 9113 5.2: window credit for the request's DATA comes back as the session takes the text, not
    # as it arrives; a session blocked on audio its client does not read takes none, so the client's
    # send backs up at about one stream window instead of the emulator buffering all it is sent.
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT) as emulator:
        fields, seed = signed_request(authority=_authority(emulator), params={"x-amzn-outputformat": "mulaw"})
        signer = ChainSigner(seed)
        text = {"Text": "Hello. "}
        client = await RawClient.connect(emulator)
        try:
            stream = client.request(fields, end=False)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 1.0
            sent = events = 0
            envelope = signer.sign(_inner("TextEvent", text), BEFORE_MIDNIGHT * 1000)
            while loop.time() < deadline and sent < 8 * 1024 * 1024:
                if client.h2.local_flow_control_window(stream) >= len(envelope):
                    client.send(stream, envelope, end=False)
                    await client.writer.drain()
                    sent, events = sent + len(envelope), events + 1
                    envelope = signer.sign(_inner("TextEvent", text), BEFORE_MIDNIGHT * 1000)
                    continue
                with contextlib.suppress(TimeoutError):  # window updates, if any; the audio stays unread
                    opened = functools.partial(_window_at_least, client, stream, len(envelope))
                    await client.until(opened, 0.1, ack=False)
            assert sent < STREAM_WINDOW + 16 * 1024, f"{sent} bytes of text accepted from a client that reads nothing"
            # The connection has room for another stream's text while this one holds its window.
            other_fields, other_seed = signed_request(authority=_authority(emulator))
            meanwhile = [(BEFORE_MIDNIGHT, {"Text": "Meanwhile."})]
            other = client.request(other_fields, body(ChainSigner(other_seed), meanwhile, BEFORE_MIDNIGHT))
            assert (await client.finished(other)).last() == ("StreamClosedEvent", {"RequestCharacters": 10})
            # Once the client reads its audio the session takes the rest: nothing was lost.
            rest = envelope + body(signer, [], BEFORE_MIDNIGHT)  # the envelope signed last, then the close
            events += 1
            await client.until(functools.partial(_window_at_least, client, stream, len(rest)))
            client.send(stream, rest)
            response = await client.finished(stream)
            assert response.last() == ("StreamClosedEvent", {"RequestCharacters": events * len(text["Text"])})
        finally:
            client.close()
        assert len(emulator.requests[0].texts) == events


async def test_one_envelope_larger_than_the_stream_window_still_arrives_whole() -> None:
    # Credit for part of an envelope comes back while the session waits for input: an envelope larger
    # than the window (no client of ours sends one) is decoded and answered, not left to the idle limit.
    async with Emulator(audio="tone", clock=lambda: BEFORE_MIDNIGHT, idle_timeout=3.0) as emulator:
        fields, seed = signed_request(authority=_authority(emulator))
        data = body(
            ChainSigner(seed), [(BEFORE_MIDNIGHT, {"Text": "x" * 300, "Padding": " " * 90_000})], BEFORE_MIDNIGHT
        )
        assert len(data) > STREAM_WINDOW + 16384
        client = await RawClient.connect(emulator)
        try:
            stream = client.request(fields, end=False)
            while data:
                await client.until(functools.partial(_window_at_least, client, stream, 1), 2.0)
                size = min(len(data), client.h2.local_flow_control_window(stream), 16384)
                client.send(stream, data[:size], end=size == len(data))
                data = data[size:]
            response = await client.finished(stream)
            assert response.last() == ("StreamClosedEvent", {"RequestCharacters": 300})
        finally:
            client.close()
