"""The emulator's HTTP/2 server: connections, requests, and one task per stream.

A request is checked the way the service checks it (pseudo-headers, path,
signature, parameters) before the 200 headers go out; then the stream's task
reads signed envelopes, buffers text to natural boundaries, synthesizes,
and sends AudioEvents as the client's flow-control window allows, so a slow
reader slows synthesis instead of growing memory. Faults strike at named
phases of that life.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from .._eventstream import EventStreamDecoder, encode_headers, encode_message
from .._protocol import OUTPUT_FORMATS, PATH
from ..exceptions import EventStreamError
from ..voices import find_voice
from ._auth import AuthError, EventChain, verify_request
from ._faults import EXCEPTION_KINDS, HEADER_KINDS, Fault, parse_directives
from ._text import SentenceBuffer, billed_characters

__all__ = ["DEFAULT_CREDENTIALS", "Emulator", "EmulatorConfig", "EmulatorThread", "RequestRecord"]

logger = logging.getLogger("amazon_polly_streaming.emulator")

#: The AWS documentation's example key pair.
DEFAULT_CREDENTIALS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
_CONTENT_TYPE = "application/vnd.amazon.eventstream"
_AUDIO_HEADERS = encode_headers(
    ((":message-type", "event"), (":event-type", "AudioEvent"), (":content-type", "application/octet-stream"))
)
_CLOSED_HEADERS = encode_headers(
    ((":message-type", "event"), (":event-type", "StreamClosedEvent"), (":content-type", "application/json"))
)
#: How long the response headers wait for the client's first event.
_FIRST_EVENT_WAIT = 0.05
#: Seconds of tone audio per billed character in tone mode.
_TONE_SECONDS_PER_CHAR = 0.06
_PSEUDO = (b":method", b":scheme", b":path", b":authority")
#: Faults that can strike before any response headers exist.
_BEFORE_HEADER_KINDS = frozenset({*EXCEPTION_KINDS, *HEADER_KINDS, "stall", "drop", "rst_stream", "goaway"})


@dataclass
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    alpn: tuple[str, ...] = ("h2",)
    strict: bool = False
    verify_signatures: bool = True
    credentials: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CREDENTIALS))
    session_tokens: dict[str, str] = field(default_factory=dict)
    clock_skew: float = 300.0
    audio: str = "speech"
    first_audio_delay: float = 0.0
    real_time_factor: float = 0.0
    audio_chunk_bytes: int = 8192
    idle_timeout: float = 5.0
    max_stream_duration: float = 600.0
    max_concurrent_streams: int = 100
    max_active_streams: int | None = None
    record_audio: bool = False
    #: False: never hand flow-control window back for request data, so a
    #: client's text backs up (tests of its bounded send queue).
    ack_input: bool = True
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.audio not in ("speech", "tone"):
            raise ValueError("audio must be 'speech' or 'tone'")


@dataclass
class RequestRecord:
    """What the emulator saw and did for one request (never a secret)."""

    request_id: str
    connection_id: int
    stream_id: int
    started: float
    status: int | None = None
    voice_id: str | None = None
    output_format: str | None = None
    sample_rate: str | None = None
    language_code: str | None = None
    access_key_id: str | None = None
    authority: str | None = None
    texts: list[dict[str, Any]] = field(default_factory=list)
    billed_characters: int = 0
    audio_bytes: int = 0
    audio: bytearray | None = None
    fault: str | None = None
    outcome: str = "open"
    ended: float | None = None

    def finish(self, outcome: str) -> None:
        if self.outcome == "open":
            self.outcome = outcome
            self.ended = time.monotonic()


class _Refused(Exception):
    """Answer the request with an HTTP error instead of a stream."""

    def __init__(self, status: int, error_type: str, body: dict[str, Any]) -> None:
        super().__init__(error_type)
        self.status = status
        self.error_type = error_type
        self.body = body


def _validation(message: str, field_name: str | None = None) -> _Refused:
    body: dict[str, Any] = {"message": message, "reason": "fieldValidationFailed" if field_name else "other"}
    if field_name:
        body["fields"] = [{"name": field_name, "message": message}]
    return _Refused(400, "ValidationException", body)


def _exception_message(error_type: str, body: dict[str, Any]) -> bytes:
    headers = encode_headers(
        ((":message-type", "exception"), (":exception-type", error_type), (":content-type", "application/json"))
    )
    return encode_message(headers, json.dumps(body).encode())


def _language_ok(code: str) -> bool:
    parts = code.split("-")
    return (
        len(parts) == 2
        and len(parts[0]) in (2, 3)
        and parts[0].isalpha()
        and parts[0].islower()
        and len(parts[1]) == 2
        and parts[1].isalpha()
        and parts[1].isupper()
    )


class _Server(asyncio.Protocol):
    """One client connection."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.config = emulator.config
        self.id = next(emulator._connection_ids)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=False)
        )
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _StreamHandler] = {}
        self.closed = False
        self._writable: asyncio.Future[None] | None = None
        self._paused = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.emulator._connections.add(self)
        self.emulator.total_connections += 1
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.config.max_concurrent_streams},
        )
        self.h2.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.emulator._connections.discard(self)
        for handler in list(self.streams.values()):
            handler.cancel("connection-lost")
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            logger.debug("connection %d: protocol error %s", self.id, exc)
            self.flush()
            self.abort()
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                if event.flow_controlled_length and self.config.ack_input:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                handler = self.streams.get(event.stream_id)
                if handler is not None:
                    handler.on_data(event.data)
            elif isinstance(event, h2.events.RequestReceived):
                self._on_request(event.stream_id, event.headers or [], bool(event.stream_ended))
            elif isinstance(event, h2.events.StreamEnded):
                handler = self.streams.get(event.stream_id)
                if handler is not None:
                    handler.on_input_end()
            elif isinstance(event, h2.events.StreamReset):
                self.emulator.client_resets.append(int(event.error_code))
                handler = self.streams.get(event.stream_id)
                if handler is not None:
                    handler.cancel("client-reset")
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._wake()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.close()
        self.flush()

    # ------------------------------------------------------------ writing

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def _wake(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` as the client's flow-control window and the socket allow."""
        h2conn = self.h2
        while True:
            if self.closed:
                raise ConnectionError("connection closed")
            window = min(h2conn.local_flow_control_window(stream_id), h2conn.max_outbound_frame_size)
            if data and (window <= 0 or self._paused):
                if self._writable is None or self._writable.done():
                    self._writable = asyncio.get_running_loop().create_future()
                await self._writable
                continue
            size = min(len(data), window) if data else 0
            last = size == len(data)
            try:
                h2conn.send_data(stream_id, data[:size] if not last else data, end_stream=end_stream and last)
            except h2.exceptions.ProtocolError as exc:
                raise ConnectionError(f"stream {stream_id} is closed") from exc
            self.flush()
            if last:
                return
            data = data[size:]

    def end_stream(self, stream_id: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.end_stream(stream_id)
            self.flush()

    def reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.reset_stream(stream_id, code)
            self.flush()

    def respond_error(self, stream_id: int, refusal: _Refused, request_id: str, *, end: bool = True) -> None:
        body = json.dumps(refusal.body).encode()
        self.h2.send_headers(
            stream_id,
            [
                (b":status", str(refusal.status).encode()),
                (b"content-type", b"application/json"),
                (b"x-amzn-requestid", request_id.encode()),
                (b"x-amzn-errortype", refusal.error_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        )
        self.h2.send_data(stream_id, body, end_stream=end)
        self.flush()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # ------------------------------------------------------------ requests

    def _on_request(self, stream_id: int, raw: list[tuple[bytes, bytes]], ended: bool) -> None:
        emulator = self.emulator
        record = RequestRecord(uuid.uuid4().hex, self.id, stream_id, time.monotonic())
        emulator.requests.append(record)
        pseudo: dict[bytes, list[bytes]] = {}
        headers: list[tuple[str, str]] = []
        for name, value in raw:
            if name.startswith(b":"):
                pseudo.setdefault(name, []).append(value)
            else:
                headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
        if not self._well_formed(pseudo):
            record.status = None
            record.finish("malformed")
            self.reset(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        authority = pseudo[b":authority"][0].decode("latin-1") if b":authority" in pseudo else None
        record.authority = authority
        if authority is not None and not any(name == "host" for name, _ in headers):
            headers.append(("host", authority))
        # Some clients (the 1.1.0 release) also sign pseudo-headers; the
        # service accepts that, so they take part in verification when signed.
        headers.extend((name.decode("latin-1"), values[0].decode("latin-1")) for name, values in pseudo.items())
        fault = emulator._fault_for_request()
        handler = _StreamHandler(self, stream_id, record, fault)
        try:
            handler.accept(pseudo[b":method"][0].decode(), pseudo[b":path"][0].decode("latin-1"), headers, ended)
        except _Refused as refusal:
            record.status = refusal.status
            record.finish(f"error:{refusal.error_type}")
            self.respond_error(stream_id, refusal, record.request_id)

    def _well_formed(self, pseudo: dict[bytes, list[bytes]]) -> bool:
        for name in (b":method", b":path"):
            if len(pseudo.get(name, ())) == 0:
                return False
        if self.config.strict:
            # RFC 9113 8.3: each pseudo-header exactly once; none unknown.
            return all(len(pseudo.get(name, ())) == 1 for name in _PSEUDO) and set(pseudo) <= set(_PSEUDO)
        # What the service tolerates from existing clients: a repeated
        # pseudo-header with the same value.
        return all(len(set(values)) == 1 for values in pseudo.values())


class _StreamHandler:
    """One synthesis stream: validation, then a task that turns text into audio."""

    def __init__(self, server: _Server, stream_id: int, record: RequestRecord, fault: Fault | None) -> None:
        self.server = server
        self.emulator = server.emulator
        self.config = server.config
        self.id = stream_id
        self.record = record
        self.fault = fault
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.decoder = EventStreamDecoder()
        self.chain: EventChain | None = None
        self.task: asyncio.Task[None] | None = None
        self.input_closed = False
        self.first_text = True
        self.audio_started: float | None = None
        self.audio_seconds = 0.0
        self.sent_audio = False
        self.params: dict[str, str] = {}
        self.audio_budget: int | None = None
        self.directives_applied = False
        if fault is not None:
            record.fault = str(fault)

    # ------------------------------------------------------------ request checks

    def accept(self, method: str, path: str, headers: list[tuple[str, str]], ended: bool) -> None:
        config = self.config
        values = dict(headers)
        path_only, _, query = path.partition("?")
        if path_only != PATH:
            raise _Refused(404, "UnknownOperationException", {"message": f"Unknown operation for path {path_only}"})
        if method != "POST":
            raise _Refused(405, "MethodNotAllowedException", {"message": f"Method {method} is not allowed"})
        if config.verify_signatures:
            try:
                access_key, self.chain = verify_request(
                    method=method,
                    path=path_only,
                    query=query,
                    headers=headers,
                    credentials=config.credentials,
                    session_tokens=config.session_tokens,
                    clock_skew=config.clock_skew,
                    now=time.time(),
                )
            except AuthError as exc:
                raise _Refused(403, exc.error_type, {"message": exc.message}) from None
            self.record.access_key_id = access_key
        if not values.get("content-type", "").startswith(_CONTENT_TYPE):
            raise _Refused(
                400, "ValidationException", {"message": f"Content-Type must be {_CONTENT_TYPE}", "reason": "other"}
            )
        self._check_parameters(values)
        if ended:
            raise _validation("The request has no event stream body", None)
        active = self.emulator.active_streams
        if config.max_active_streams is not None and active >= config.max_active_streams:
            raise _Refused(
                400,
                "ThrottlingException",
                {
                    "message": "Too many concurrent streams",
                    "throttlingReasons": [{"reason": "ConcurrentStreamsExceeded", "resource": "synthesisStream"}],
                },
            )
        self._start()

    def _check_parameters(self, values: dict[str, str]) -> None:
        engine = values.get("x-amzn-engine", "")
        voice_id = values.get("x-amzn-voiceid", "")
        fmt = values.get("x-amzn-outputformat", "")
        rate = values.get("x-amzn-samplerate", "")
        language = values.get("x-amzn-languagecode")
        lexicons = values.get("x-amzn-lexiconnames")
        record = self.record
        record.voice_id, record.output_format, record.sample_rate = voice_id, fmt, rate
        record.language_code = language
        if engine != "generative":
            raise _validation(f"Engine {engine or '(missing)'} is not supported for this operation", "Engine")
        voice = find_voice(voice_id)
        if voice is None:
            raise _validation(f"Voice ID {voice_id or '(missing)'} is not supported", "VoiceId")
        if fmt not in OUTPUT_FORMATS:
            raise _validation(f"Output format {fmt or '(missing)'} is not supported", "OutputFormat")
        if not rate:
            rate = "48000" if fmt == "ogg_opus" else "8000" if fmt in ("mulaw", "alaw") else "24000"
            if fmt == "pcm":
                rate = "16000"
        if rate not in OUTPUT_FORMATS[fmt]:
            raise _validation(f"Sample rate {rate} is not valid for output format {fmt}", "SampleRate")
        if language is not None:
            if not _language_ok(language):
                raise _validation(f"Language code {language} is not valid", "LanguageCode")
            if voice.additional_language_codes and language not in voice.language_codes:
                raise _validation(f"Voice {voice_id} does not support language {language}", "LanguageCode")
        if lexicons is not None:
            names = lexicons.split(",")
            if len(names) > 5 or not all(1 <= len(n) <= 20 and n.isascii() and n.isalnum() for n in names):
                raise _validation("Lexicon names must be up to 5 names of 1-20 letters or digits", "LexiconNames")
        self.params = {"voice_id": voice_id, "format": fmt, "rate": rate, "language": language or ""}

    def _strike_before_headers(self, fault: Fault) -> None:
        server, record = self.server, self.record
        kind = fault.kind
        record.finish(f"fault:{kind}")
        if kind in EXCEPTION_KINDS:
            error_type, status, body = EXCEPTION_KINDS[kind]
            record.status = status
            server.respond_error(self.id, _Refused(status, error_type, body), record.request_id)
        elif kind.startswith("http_error"):
            status = int(fault.params.get("status", 500))
            refusal = _Refused(status, "InternalFailure", {"message": "Injected HTTP error"})
            record.status = status
            server.respond_error(self.id, refusal, record.request_id, end=kind == "http_error")
            if kind == "http_error_rst":
                server.reset(self.id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif kind == "refuse_stream":
            server.reset(self.id, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif kind not in ("never_answer", "stall"):
            self._strike_on_stream(fault)

    # ------------------------------------------------------------ the stream

    def _start(self) -> None:
        self.server.streams[self.id] = self
        self.emulator.active_streams += 1
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.emulator._tasks.add(self.task)
        self.task.add_done_callback(self._done)

    def _send_headers(self) -> None:
        server, record = self.server, self.record
        record.status = 200
        server.h2.send_headers(
            self.id,
            [
                (b":status", b"200"),
                (b"content-type", _CONTENT_TYPE.encode()),
                (b"x-amzn-requestid", record.request_id.encode()),
            ],
        )
        server.flush()

    def _done(self, task: asyncio.Task[None]) -> None:
        emulator, server = self.emulator, self.server
        emulator._tasks.discard(task)
        emulator.active_streams -= 1
        server.streams.pop(self.id, None)
        if server in emulator._closing and not server.streams:
            # A graceful GOAWAY promised this stream; now the connection may go.
            emulator._closing.discard(server)
            server.close()
        if not task.cancelled() and task.exception() is not None:
            logger.warning("stream %d failed: %r", self.id, task.exception())
            self.record.finish(f"crash:{type(task.exception()).__name__}")

    def cancel(self, outcome: str) -> None:
        self.record.finish(outcome)
        self.server.streams.pop(self.id, None)
        if self.task is not None:
            self.task.cancel()

    def on_data(self, data: bytes) -> None:
        try:
            envelopes = self.decoder.feed(data)
        except EventStreamError as exc:
            self.inbox.put_nowait(("invalid", f"Invalid event stream framing: {exc}"))
            return
        for envelope in envelopes:
            if self.chain is not None and not self.chain.verify(envelope):
                self.inbox.put_nowait(("invalid", "The event signature is invalid"))
                return
            if not envelope.payload:
                continue  # the final, empty envelope that closes the chain
            try:
                (inner,) = EventStreamDecoder().feed(envelope.payload)
            except (EventStreamError, ValueError):
                self.inbox.put_nowait(("invalid", "Invalid inbound event"))
                return
            event_type = inner.headers.get(":event-type")
            if event_type == "TextEvent":
                try:
                    body = json.loads(inner.payload)
                    text = body["Text"]
                    if not isinstance(text, str):
                        raise TypeError("Text")
                except (ValueError, KeyError, TypeError):
                    self.inbox.put_nowait(("invalid", "TextEvent payload is not valid"))
                    return
                self.inbox.put_nowait(("text", body))
            elif event_type == "CloseStreamEvent":
                self.inbox.put_nowait(("close", None))
            else:
                self.inbox.put_nowait(("invalid", f"Unknown event type {event_type!r}"))

    def on_input_end(self) -> None:
        self.inbox.put_nowait(("end", None))

    async def _next(self, deadline: float | None) -> tuple[str, Any]:
        if deadline is None:
            return await self.inbox.get()
        try:
            async with asyncio.timeout_at(deadline):
                return await self.inbox.get()
        except TimeoutError:
            return ("idle", None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        stream_deadline = loop.time() + config.max_stream_duration
        buffer = SentenceBuffer()
        from ._audio import StreamEncoder

        self.encoder = StreamEncoder(self.params["format"], int(self.params["rate"]))
        try:
            async with asyncio.timeout_at(stream_deadline):
                # The response headers wait for the first event (briefly: a client
                # may wait for them before it sends), so that a fault chosen by a
                # directive in the text can still replace them.
                first = await self._next(loop.time() + _FIRST_EVENT_WAIT)
                if first[0] == "text" and not self._apply_directives(first[1]):
                    self._send_headers()
                    await self._invalid("Invalid emulator directive")
                    return
                if await self._before_headers():
                    return
                self._send_headers()
                if await self._phase("after_headers"):
                    return
                last_input = loop.time()
                pending: tuple[str, Any] | None = None if first[0] == "idle" else first
                while True:
                    idle_deadline = None if self.input_closed else last_input + config.idle_timeout
                    kind, value = pending or await self._next(idle_deadline)
                    pending = None
                    if kind == "idle":
                        await self._quota("input-stream-inbound-event-timeout", "Input stream idle timeout exceeded")
                        return
                    last_input = loop.time()
                    if kind == "invalid":
                        await self._invalid(value)
                        return
                    if kind == "text":
                        if self.input_closed:
                            await self._invalid("Event received after CloseStreamEvent")
                            return
                        if await self._on_text(value, buffer):
                            return
                    elif kind == "close":
                        if self.input_closed:
                            await self._invalid("Event received after CloseStreamEvent")
                            return
                        self.input_closed = True
                        if await self._speak(buffer.flush(), ssml=False):
                            return
                        if await self._phase("after_close"):
                            return
                        if self._late_input():
                            await self._invalid("Event received after CloseStreamEvent")
                            return
                        await self._close_stream()
                        return
                    elif kind == "end":
                        # Input ended without CloseStreamEvent: finish like a close.
                        self.input_closed = True
                        if await self._speak(buffer.flush(), ssml=False) or await self._phase("after_close"):
                            return
                        await self._close_stream()
                        return
        except TimeoutError:
            await self._quota("input-stream-timeout", "Maximum stream duration exceeded")
        except ConnectionError:
            self.record.finish("connection-lost")

    def _apply_directives(self, body: dict[str, Any]) -> bool:
        """Take ``{{fault:...}}`` / ``{{audio_bytes:N}}`` out of the first text; False if invalid."""
        self.directives_applied = True
        text: str = body["Text"]
        if "{{" not in text:
            return True
        try:
            directives = parse_directives(text)
        except ValueError:
            return False
        body["Text"] = directives.text
        if directives.fault is not None:
            self.fault = directives.fault
            self.record.fault = str(directives.fault)
        self.audio_budget = directives.audio_bytes
        return True

    async def _before_headers(self) -> bool:
        """Strike a fault that replaces the response headers; True when the stream is over."""
        fault = self.fault
        if fault is None or fault.phase != "before_headers":
            return False
        if fault.kind not in _BEFORE_HEADER_KINDS:
            # Faults that need a response in progress strike right after its headers.
            self.fault = Fault(fault.kind, "after_headers", fault.params)
            return False
        self._strike_before_headers(fault)
        if fault.kind in ("never_answer", "stall"):
            await asyncio.Event().wait()  # until the client resets or the emulator stops
        return True

    def _late_input(self) -> bool:
        """Events that arrived after CloseStreamEvent (the final empty envelope aside)."""
        while not self.inbox.empty():
            kind, _ = self.inbox.get_nowait()
            if kind != "end":
                return True
        return False

    async def _on_text(self, body: dict[str, Any], buffer: SentenceBuffer) -> bool:
        """Handle one TextEvent; True when the stream is over."""
        text: str = body["Text"]
        ssml = body.get("TextType") == "ssml"
        flush = bool((body.get("FlushStreamConfiguration") or {}).get("Force"))
        first, self.first_text = self.first_text, False
        if first and not self.directives_applied and "{{" in text:
            # The first text came after the headers: its directive strikes now,
            # a header-level fault as its nearest in-stream equivalent.
            if not self._apply_directives(body):
                await self._invalid("Invalid emulator directive")
                return True
            text = body["Text"]
            fault = self.fault
            if fault is not None and fault.phase in ("before_headers", "after_headers"):
                self.record.texts.append({"text": text, "ssml": ssml, "flush": flush})
                return await self._phase(fault.phase)
        self.record.texts.append({"text": text, "ssml": ssml, "flush": flush})
        keepalive = not ssml and not text.strip()
        if not keepalive:
            self.record.billed_characters += billed_characters(text, ssml=ssml)
        if first and not self.input_closed and await self._phase("during_input"):
            return True
        if ssml:
            return await self._speak(buffer.flush(), ssml=False) or await self._speak(text, ssml=True)
        ready = "" if keepalive else buffer.add(text)
        if flush:
            ready += buffer.flush()
        return await self._speak(ready, ssml=False)

    async def _speak(self, text: str, *, ssml: bool) -> bool:
        """Synthesize ``text`` and send its audio; True when the stream is over."""
        if not text.strip() and self.audio_budget is None:
            return False
        params = self.params
        rate = int(params["rate"])
        config = self.config
        if config.audio == "tone":
            from ._audio import tone_pcm

            if self.audio_budget is not None:
                # The whole response is exactly the budget: it all goes now.
                budget, self.audio_budget = self.audio_budget, 0
                samples = budget if params["format"] in ("mulaw", "alaw") else budget // 2
                if not samples:
                    return False
            else:
                samples = int(billed_characters(text, ssml=ssml) * _TONE_SECONDS_PER_CHAR * rate)
            pcm = tone_pcm(samples, rate)
        else:
            from ._audio import synthesize_pcm

            pcm = await asyncio.to_thread(
                synthesize_pcm,
                text,
                voice_id=params["voice_id"],
                language_code=params["language"] or None,
                sample_rate=rate,
                ssml=ssml,
            )
        if params["format"] == "pcm" or params["format"] in ("mulaw", "alaw"):
            return await self._send_audio(self.encoder.encode(pcm), len(pcm) / 2 / rate)
        # Encode in slices of a fifth of a second so audio leaves as it is made.
        step = max(2, rate // 5 * 2)
        for start in range(0, len(pcm), step):
            piece = pcm[start : start + step]
            if await self._send_audio(self.encoder.encode(piece), len(piece) / 2 / rate):
                return True
        return False

    async def _send_audio(self, audio: bytes, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        config = self.config
        chunk = config.audio_chunk_bytes
        for start in range(0, len(audio), chunk):
            if self.audio_started is None:
                if config.first_audio_delay > 0:
                    await asyncio.sleep(config.first_audio_delay)
                self.audio_started = loop.time()
            payload = audio[start : start + chunk]
            await self._send_event(encode_message(_AUDIO_HEADERS, payload), audio=payload)
            if not self.sent_audio:
                self.sent_audio = True
                if await self._phase("after_first_audio"):
                    return True
        self.audio_seconds += seconds
        if config.real_time_factor > 0 and self.audio_started is not None:
            due = self.audio_started + self.audio_seconds * config.real_time_factor
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        return False

    async def _send_event(self, message: bytes, *, audio: bytes = b"", end: bool = False) -> None:
        if audio:
            record = self.record
            record.audio_bytes += len(audio)
            if self.config.record_audio:
                if record.audio is None:
                    record.audio = bytearray()
                record.audio += audio
        await self.server.send(self.id, message, end_stream=end)

    async def _close_stream(self) -> None:
        # Audio the encoder still holds (the last frames / Ogg page).
        tail = self.encoder.finish()
        if tail:
            await self._send_audio(tail, 0.0)
        chars = self.record.billed_characters
        await self._send_event(encode_message(_CLOSED_HEADERS, json.dumps({"RequestCharacters": chars}).encode()))
        self.server.end_stream(self.id)
        self.record.finish("ok")

    async def _exception(self, error_type: str, body: dict[str, Any], outcome: str) -> None:
        await self._send_event(_exception_message(error_type, body), end=True)
        self.record.finish(outcome)

    async def _invalid(self, message: str) -> None:
        body = {"Message": message, "reason": "invalidInboundEvent", "fields": []}
        await self._exception("ValidationException", body, "error:ValidationException")

    async def _quota(self, quota_code: str, message: str) -> None:
        body = {"Message": message, "quotaCode": quota_code, "serviceCode": "polly"}
        with contextlib.suppress(ConnectionError):
            await self._exception("ServiceQuotaExceededException", body, "error:ServiceQuotaExceededException")

    # ------------------------------------------------------------ faults

    async def _phase(self, phase: str) -> bool:
        """Strike the fault if its phase is now; True when the stream is over."""
        fault = self.fault
        if fault is None or fault.phase != phase:
            return False
        self.record.finish(f"fault:{fault.kind}")
        if fault.kind in EXCEPTION_KINDS:
            error_type, _, body = EXCEPTION_KINDS[fault.kind]
            await self._send_event(_exception_message(error_type, body), end=True)
            return True
        if fault.kind in ("stall", "never_answer"):
            await asyncio.Event().wait()  # until the client resets or the emulator stops
        if fault.kind == "goaway" and fault.params.get("graceful"):
            self._goaway(graceful=True)
            self.fault = None  # finish this stream normally
            self.record.outcome = "open"
            return False
        if fault.kind == "no_stream_closed":
            if phase == "after_close":
                tail = self.encoder.finish()
                if tail:
                    await self._send_audio(tail, 0.0)
            self.server.end_stream(self.id)
            return True
        self._strike_on_stream(fault)
        return True

    def _strike_on_stream(self, fault: Fault) -> None:
        server = self.server
        kind = fault.kind
        self.record.finish(f"fault:{kind}")
        if kind == "drop":
            server.abort()
        elif kind == "rst_stream":
            server.reset(self.id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif kind == "goaway":
            self._goaway(graceful=False)
        elif kind == "corrupt_crc":
            corrupt = bytearray(encode_message(_AUDIO_HEADERS, b"\x00" * 64))
            corrupt[-1] ^= 0xFF
            with contextlib.suppress(h2.exceptions.ProtocolError):
                server.h2.send_data(self.id, bytes(corrupt))
                server.flush()
        elif kind == "truncate":
            message = encode_message(_AUDIO_HEADERS, b"\x00" * 64)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                server.h2.send_data(self.id, message[: len(message) // 2], end_stream=True)
                server.flush()
        elif kind in EXCEPTION_KINDS:
            error_type, _, body = EXCEPTION_KINDS[kind]
            with contextlib.suppress(h2.exceptions.ProtocolError):
                server.h2.send_data(self.id, _exception_message(error_type, body), end_stream=True)
                server.flush()
        elif kind in HEADER_KINDS:
            # Header faults chosen after the headers went out: nearest meaning.
            server.reset(self.id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif kind == "no_stream_closed":
            server.end_stream(self.id)

    def _goaway(self, *, graceful: bool) -> None:
        server = self.server
        last = self.id if graceful else self.id - 2 if self.id > 2 else 0
        server.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=last)
        server.flush()
        if graceful:
            # h2 stops sending after its own GOAWAY; the promised stream must
            # still be served, so reopen the state machine for it.
            server.h2.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
            self.emulator._closing.add(server)
        else:
            server.close()


class Emulator:
    """A local Polly ``StartSpeechSynthesisStream`` endpoint over HTTP/2 and TLS.

    ``async with Emulator(audio="tone") as emulator:`` then point a client at
    ``emulator.endpoint_url`` with ``verify=emulator.ca_file``.
    """

    def __init__(self, config: EmulatorConfig | None = None, **fields: Any) -> None:
        if config is not None and fields:
            raise TypeError("pass an EmulatorConfig or keyword fields, not both")
        self.config = config or EmulatorConfig(**fields)
        self.requests: list[RequestRecord] = []
        self.client_resets: list[int] = []
        self.active_streams = 0
        self.total_connections = 0
        self._connection_ids = itertools.count(1)
        self._connections: set[_Server] = set()
        self._closing: set[_Server] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._faults: list[tuple[Fault, int | None]] = []
        self._faults_lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0
        self.ca_file = ""

    def __repr__(self) -> str:
        return f"<Emulator {self.endpoint_url} active_streams={self.active_streams}>"

    @property
    def endpoint_url(self) -> str:
        return f"https://{self.config.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def inject(self, fault: Fault | str, count: int | None = 1) -> None:
        """The next ``count`` requests (every one with None) get ``fault``."""
        if isinstance(fault, str):
            fault = Fault.parse(fault)
        with self._faults_lock:
            self._faults.append((fault, count))

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def _fault_for_request(self) -> Fault | None:
        with self._faults_lock:
            if self._faults:
                fault, count = self._faults[0]
                if count is not None:
                    if count <= 1:
                        self._faults.pop(0)
                    else:
                        self._faults[0] = (fault, count - 1)
                return fault
        return self.config.faults[0] if self.config.faults else None

    def _ssl_context(self) -> ssl.SSLContext:
        config = self.config
        if config.cert_file and config.key_file:
            cert, key = config.cert_file, config.key_file
            self.ca_file = config.ca_file or config.cert_file
        else:
            from ._certs import make_certificates

            self._tempdir = tempfile.TemporaryDirectory(prefix="polly-emulator-")
            paths = make_certificates(Path(self._tempdir.name))
            cert, key, self.ca_file = paths.cert_file, paths.key_file, paths.ca_file
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(list(config.alpn))
        return context

    async def start(self) -> Emulator:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Server(self), self.config.host, self.config.port, ssl=self._ssl_context()
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("emulator listening on %s", self.endpoint_url)
        return self

    async def stop(self) -> None:
        """Close the listener, every connection and every stream task."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        await asyncio.sleep(0)
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll ``predicate`` until true; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - state changes in many places; polling is simplest here
                await asyncio.sleep(0.005)

    @classmethod
    def start_in_thread(cls, config: EmulatorConfig | None = None, **fields: Any) -> EmulatorThread:
        return EmulatorThread(cls(config, **fields))


class EmulatorThread:
    """An emulator running in its own event loop on a daemon thread."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(emulator.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="polly-emulator", daemon=True)
        self.thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]

    @property
    def endpoint_url(self) -> str:
        return self.emulator.endpoint_url

    @property
    def ca_file(self) -> str:
        return self.emulator.ca_file

    def inject(self, fault: Fault | str, count: int | None = 1) -> None:
        self.emulator.inject(fault, count)

    def stop(self) -> None:
        if not self.loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def __enter__(self) -> EmulatorThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
