"""A bare HTTP/2 client for requests our client would never send (malformed, mis-signed)."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

from amazon_polly_streaming._wire.eventstream import EventStreamDecoder, Message
from amazon_polly_streaming._wire.request import CLOSE_STREAM_EVENT, RequestSigner, synthesis_params, text_event
from amazon_polly_streaming.credentials import Credentials
from amazon_polly_streaming.emulator import Emulator


@dataclass
class RawResponse:
    status: int | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    reset_code: int | None = None
    ended: bool = False

    def messages(self) -> list[Message]:
        return EventStreamDecoder().feed(self.body)


def signed_headers(
    emulator: Emulator,
    *,
    secret: str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",  # noqa: S107 - AWS's documented example key
    when: float | None = None,
    **params: object,
) -> tuple[list[tuple[bytes, bytes]], object]:
    """Request headers signed as our client signs them, and the event signer."""
    params.setdefault("voice_id", "Matthew")
    params.setdefault("output_format", "pcm")
    params.setdefault("sample_rate", "16000")
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))
    headers, signer = RequestSigner("us-east-1").request_headers(
        synthesis_params(**params),  # type: ignore[arg-type]
        authority=emulator.endpoint_url.removeprefix("https://"),
        credentials=Credentials("AKIDEXAMPLE", secret),
        amz_date=amz_date,
        user_agent="raw-test",
    )
    return [(n.encode(), v.encode()) for n, v in headers], signer


def text_body(signer: object, *texts: str) -> bytes:
    """Envelopes for ``texts``, CloseStreamEvent and the final empty envelope."""
    now = int(time.time() * 1000)
    parts = [signer.sign(text_event(t), now) for t in texts]  # type: ignore[attr-defined]
    parts.append(signer.sign(CLOSE_STREAM_EVENT, now))  # type: ignore[attr-defined]
    parts.append(signer.sign(b"", now))  # type: ignore[attr-defined]
    return b"".join(parts)


async def raw_request(
    emulator: Emulator, headers: list[tuple[bytes, bytes]], body: bytes = b"", *, timeout: float = 5.0
) -> RawResponse:
    context = ssl.create_default_context(cafile=emulator.ca_file)
    context.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection("127.0.0.1", emulator.port, ssl=context)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False)
    )
    conn.initiate_connection()
    conn.send_headers(1, headers, end_stream=not body)
    if body:
        conn.send_data(1, body, end_stream=True)
    writer.write(conn.data_to_send())
    response = RawResponse()
    try:
        async with asyncio.timeout(timeout):
            while not (response.ended or response.reset_code is not None):
                data = await reader.read(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        response.headers = dict(event.headers)
                        response.status = int(response.headers[b":status"])
                    elif isinstance(event, h2.events.DataReceived):
                        response.body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    elif isinstance(event, h2.events.StreamEnded):
                        response.ended = True
                    elif isinstance(event, h2.events.StreamReset):
                        response.reset_code = int(event.error_code)
                writer.write(conn.data_to_send())
    finally:
        writer.close()
    return response
