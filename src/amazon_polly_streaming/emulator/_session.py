"""One synthesis: text events in, audio, StreamClosedEvent or an exception out; the stream's limits and faults.

The HTTP/2 shell feeds the request body in (``feed``, ``input_ended``) and
gives the session a ``StreamPort`` to answer through; the session knows
nothing of h2. It buffers text to natural boundaries, synthesizes, and sends
AudioEvents as the port's flow control allows, so a slow reader slows
synthesis instead of growing memory. The same holds for the text: the
flow-control credit of the bytes an event came in goes back to the client
(``StreamPort.consumed``) only when the session takes the event, so the
events waiting here never exceed the stream's window (64 KiB), and a client
that sends text faster than its audio is read is held back by HTTP/2.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ._config import EmulatorConfig, RequestRecord
from ._errors import ServiceError, invalid_event, quota_exceeded
from ._events import CloseInput, InboundEvents, TextInput, audio_event, stream_closed_event
from ._faults import EXCEPTION_KINDS, HEADER_KINDS, Fault, directive_error, parse_directives
from ._requests import SynthesisRequest
from ._text import SentenceBuffer, billed_characters

__all__ = ["StreamPort", "SynthesisSession"]

logger = logging.getLogger("amazon_polly_streaming.emulator")

#: How long the response headers wait for the client's first event.
_FIRST_EVENT_WAIT = 0.05
#: Seconds of tone audio per billed character in tone mode.
_TONE_SECONDS_PER_CHAR = 0.06
#: HTTP/2 error codes (RFC 9113 7).
INTERNAL_ERROR = 0x2
REFUSED_STREAM = 0x7


class StreamPort(Protocol):
    """What a session may do to its HTTP/2 stream and connection."""

    def send_headers(self, request_id: str) -> None: ...

    def consumed(self, credit: int) -> None:
        """Hand ``credit`` of the request's flow-control window back: its data has been taken."""

    def respond_error(self, error: ServiceError, request_id: str, *, end: bool = True) -> None: ...

    async def send(self, data: bytes, *, end_stream: bool = False) -> None:
        """As flow control allows; ``ConnectionError`` once the stream or connection is gone."""

    def send_now(self, data: bytes, *, end_stream: bool = False) -> None:
        """At once, ignoring flow control (faults)."""

    def end_stream(self) -> None: ...

    def reset(self, code: int) -> None: ...

    def abort_connection(self) -> None: ...

    def goaway(self, *, graceful: bool) -> None: ...


class _Idle:
    pass


class _End:
    pass


_IDLE, _END = _Idle(), _End()
Inbound = TextInput | CloseInput | ServiceError | _End | _Idle


class SynthesisSession:
    """One stream from its accepted request to its last message."""

    def __init__(
        self,
        request: SynthesisRequest,
        port: StreamPort,
        record: RequestRecord,
        config: EmulatorConfig,
        fault: Fault | None,
    ) -> None:
        self.request = request
        self.port = port
        self.record = record
        self.config = config
        self.fault = fault
        self._inbound = InboundEvents(request.chain)
        #: Events not taken yet, each with the credit to hand back when it is.
        self._inbox: asyncio.Queue[tuple[Inbound, int]] = asyncio.Queue()
        #: Credit of bytes that completed no event yet (part of an envelope).
        self._partial_credit = 0
        self._waiting = False
        from ._audio import StreamEncoder  # numpy and soundfile load with the first stream

        self._encoder = StreamEncoder(request.output_format, request.sample_rate)
        self._buffer = SentenceBuffer()
        self._input_closed = False
        self._first_text = True
        self._directives_applied = False
        self._audio_started: float | None = None
        self._audio_seconds = 0.0
        self._sent_audio = False
        self._audio_budget: int | None = None
        if fault is not None:
            record.fault = str(fault)

    # ------------------------------------------------------------ input from the shell

    def feed(self, data: bytes, credit: int) -> None:
        """Bytes of the request body; ``credit`` goes back once the events they complete are taken."""
        events = self._inbound.feed(data)
        self._partial_credit += credit
        if events:
            *first, last = events
            for event in first:
                self._inbox.put_nowait((event, 0))
            self._inbox.put_nowait((last, self._partial_credit))
            self._partial_credit = 0
        elif self._waiting and self._inbox.empty():
            self._take_partial()

    def _take_partial(self) -> None:
        # Waiting for input with none queued: take the part of an envelope in
        # hand, so that one larger than the window can still arrive whole (the
        # decoder bounds its size).
        credit, self._partial_credit = self._partial_credit, 0
        if credit:
            self.port.consumed(credit)

    def input_ended(self) -> None:
        self._inbox.put_nowait((_END, 0))

    def _take(self, item: tuple[Inbound, int]) -> Inbound:
        event, credit = item
        if credit:
            self.port.consumed(credit)
        return event

    async def _next(self, deadline: float | None) -> Inbound:
        if self._inbox.empty():
            self._take_partial()
        self._waiting = True
        try:
            async with asyncio.timeout_at(deadline):
                item = await self._inbox.get()
        except TimeoutError:
            return _IDLE
        finally:
            self._waiting = False
        return self._take(item)

    # ------------------------------------------------------------ the stream's life

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        try:
            async with asyncio.timeout_at(loop.time() + config.max_stream_duration):
                await self._serve(loop)
        except TimeoutError:
            await self._quota("input-stream-timeout", "Maximum stream duration exceeded")
        except ConnectionError:
            self.record.finish("connection-lost")

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        config = self.config
        # The response headers wait for the first event (briefly: a client may
        # wait for them before it sends), so that a fault chosen by a directive
        # in the text can still replace them.
        first = await self._next(loop.time() + _FIRST_EVENT_WAIT)
        if isinstance(first, TextInput):
            applied = self._apply_directives(first)
            if isinstance(applied, ServiceError):
                self._send_headers()
                await self._error(applied)
                return
            first = applied
        if await self._before_headers():
            return
        self._send_headers()
        if await self._phase("after_headers"):
            return
        last_input = loop.time()
        pending: Inbound | None = None if first is _IDLE else first
        while True:
            idle_deadline = None if self._input_closed else last_input + config.idle_timeout
            event = pending if pending is not None else await self._next(idle_deadline)
            pending = None
            if event is _IDLE:
                await self._quota("input-stream-inbound-event-timeout", "Input stream idle timeout exceeded")
                return
            last_input = loop.time()
            if isinstance(event, ServiceError):
                await self._error(event)
                return
            if isinstance(event, TextInput | CloseInput) and self._input_closed:
                await self._after_close()
                return
            if isinstance(event, TextInput):
                if await self._on_text(event):
                    return
            elif isinstance(event, CloseInput):
                self._input_closed = True
                if await self._speak(self._buffer.flush(), ssml=False) or await self._phase("after_close"):
                    return
                if self._late_input():
                    await self._after_close()
                    return
                await self._close_stream()
                return
            else:
                # Input ended without CloseStreamEvent: finish like a close.
                self._input_closed = True
                if await self._speak(self._buffer.flush(), ssml=False) or await self._phase("after_close"):
                    return
                await self._close_stream()
                return

    def _send_headers(self) -> None:
        self.record.status = 200
        self.port.send_headers(self.record.request_id)

    def _late_input(self) -> bool:
        """Events that arrived after CloseStreamEvent (the end of the body aside)."""
        while not self._inbox.empty():
            if self._take(self._inbox.get_nowait()) is not _END:
                return True
        return False

    async def _after_close(self) -> None:
        await self._error(invalid_event("Event received after CloseStreamEvent"))

    # ------------------------------------------------------------ text

    def _apply_directives(self, event: TextInput) -> TextInput | ServiceError:
        """Take ``{{fault:...}}`` / ``{{audio_bytes:N}}`` out of the first text."""
        self._directives_applied = True
        if "{{" not in event.text:
            return event
        try:
            directives = parse_directives(event.text)
        except ValueError as exc:
            return directive_error(exc)
        if directives.fault is not None:
            self.fault = directives.fault
            self.record.fault = str(directives.fault)
        self._audio_budget = directives.audio_bytes
        return event._replace(text=directives.text)

    async def _on_text(self, event: TextInput) -> bool:
        """Handle one TextEvent; True when the stream is over."""
        first, self._first_text = self._first_text, False
        if first and not self._directives_applied and "{{" in event.text:
            # The first text came after the headers: its directive strikes now,
            # a header-level fault as its nearest in-stream equivalent.
            applied = self._apply_directives(event)
            if isinstance(applied, ServiceError):
                await self._error(applied)
                return True
            event = applied
            fault = self.fault
            if fault is not None and fault.phase in ("before_headers", "after_headers"):
                self._record_text(event)
                return await self._phase(fault.phase)
        self._record_text(event)
        keepalive = not event.ssml and not event.text.strip()
        if not keepalive:
            self.record.billed_characters += billed_characters(event.text, ssml=event.ssml)
        if first and not self._input_closed and await self._phase("during_input"):
            return True
        if event.ssml:
            return await self._speak(self._buffer.flush(), ssml=False) or await self._speak(event.text, ssml=True)
        ready = "" if keepalive else self._buffer.add(event.text)
        if event.flush:
            ready += self._buffer.flush()
        return await self._speak(ready, ssml=False)

    def _record_text(self, event: TextInput) -> None:
        self.record.texts.append({"text": event.text, "ssml": event.ssml, "flush": event.flush})

    # ------------------------------------------------------------ audio

    async def _speak(self, text: str, *, ssml: bool) -> bool:
        """Synthesize ``text`` and send its audio; True when the stream is over."""
        if not text.strip() and self._audio_budget is None:
            return False
        request = self.request
        rate = request.sample_rate
        if self.config.audio == "tone":
            from ._audio import tone_pcm

            if self._audio_budget is not None:
                # The whole response is exactly the budget: it all goes now.
                budget, self._audio_budget = self._audio_budget, 0
                samples = budget if request.output_format in ("mulaw", "alaw") else budget // 2
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
                voice_id=request.voice.voice_id,
                language_code=request.language_code,
                sample_rate=rate,
                ssml=ssml,
            )
        if request.output_format in ("pcm", "mulaw", "alaw"):
            return await self._send_audio(self._encoder.encode(pcm), len(pcm) / 2 / rate)
        # Encode in slices of a fifth of a second so audio leaves as it is made.
        step = max(2, rate // 5 * 2)
        for start in range(0, len(pcm), step):
            piece = pcm[start : start + step]
            if await self._send_audio(self._encoder.encode(piece), len(piece) / 2 / rate):
                return True
        return False

    async def _send_audio(self, audio: bytes, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        config = self.config
        chunk = config.audio_chunk_bytes
        for start in range(0, len(audio), chunk):
            if self._audio_started is None:
                if config.first_audio_delay > 0:
                    await asyncio.sleep(config.first_audio_delay)
                self._audio_started = loop.time()
            payload = audio[start : start + chunk]
            record = self.record
            record.audio_bytes += len(payload)
            if config.record_audio:
                if record.audio is None:
                    record.audio = bytearray()
                record.audio += payload
            await self.port.send(audio_event(payload))
            if not self._sent_audio:
                self._sent_audio = True
                if await self._phase("after_first_audio"):
                    return True
        self._audio_seconds += seconds
        if config.real_time_factor > 0 and self._audio_started is not None:
            delay = self._audio_started + self._audio_seconds * config.real_time_factor - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        return False

    async def _flush_encoder(self) -> None:
        # Audio the encoder still holds (the last frames / Ogg page).
        tail = self._encoder.finish()
        if tail:
            await self._send_audio(tail, 0.0)

    async def _close_stream(self) -> None:
        await self._flush_encoder()
        await self._last_message(stream_closed_event(self.record.billed_characters), "ok")

    async def _error(self, error: ServiceError) -> None:
        await self._last_message(error.event(), f"error:{error.error_type}")

    async def _last_message(self, message: bytes, outcome: str) -> None:
        # Recorded before the bytes leave: a client that has read them may look at the record at once
        # (the emulator on another thread or in another process).
        self.record.finish(outcome)
        try:
            await self.port.send(message, end_stream=True)
        except ConnectionError:
            self.record.outcome = "connection-lost"
            raise

    async def _quota(self, quota_code: str, message: str) -> None:
        try:
            await self._error(quota_exceeded(quota_code, message))
        except ConnectionError:
            self.record.finish("connection-lost")

    # ------------------------------------------------------------ faults

    async def _before_headers(self) -> bool:
        """Strike a fault that replaces the response headers; True when the stream is over."""
        fault = self.fault
        if fault is None or fault.phase != "before_headers":
            return False
        if not fault.replaces_headers:
            self.fault = fault.after_headers()
            return False
        port, record = self.port, self.record
        kind = fault.kind
        record.finish(f"fault:{kind}")
        if kind in EXCEPTION_KINDS:
            error = EXCEPTION_KINDS[kind]
            record.status = error.status
            port.respond_error(error, record.request_id)
        elif kind.startswith("http_error"):
            status = int(fault.params.get("status", 500))
            record.status = status
            error = ServiceError(status, "InternalFailure", {"message": "Injected HTTP error"})
            port.respond_error(error, record.request_id, end=kind == "http_error")
            if kind == "http_error_rst":
                port.reset(INTERNAL_ERROR)
        elif kind == "refuse_stream":
            port.reset(REFUSED_STREAM)
        elif kind not in ("never_answer", "stall"):
            self._strike_on_stream(fault)
        if kind in ("never_answer", "stall"):
            await asyncio.Event().wait()  # until the client resets or the emulator stops
        return True

    async def _phase(self, phase: str) -> bool:
        """Strike the fault if its phase is now; True when the stream is over."""
        fault = self.fault
        if fault is None or fault.phase != phase:
            return False
        self.record.finish(f"fault:{fault.kind}")
        if fault.kind in EXCEPTION_KINDS:
            await self.port.send(EXCEPTION_KINDS[fault.kind].event(), end_stream=True)
            return True
        if fault.kind in ("stall", "never_answer"):
            await asyncio.Event().wait()  # until the client resets or the emulator stops
        if fault.kind == "goaway" and fault.params.get("graceful"):
            self.port.goaway(graceful=True)
            self.fault = None  # finish this stream normally
            self.record.outcome = "open"
            return False
        if fault.kind == "no_stream_closed":
            if phase == "after_close":
                await self._flush_encoder()
            self.port.end_stream()
            return True
        self._strike_on_stream(fault)
        return True

    def _strike_on_stream(self, fault: Fault) -> None:
        port = self.port
        kind = fault.kind
        self.record.finish(f"fault:{kind}")
        if kind == "drop":
            port.abort_connection()
        elif kind == "rst_stream":
            port.reset(INTERNAL_ERROR)
        elif kind == "goaway":
            port.goaway(graceful=False)
        elif kind == "corrupt_crc":
            corrupt = bytearray(audio_event(b"\x00" * 64))
            corrupt[-1] ^= 0xFF
            port.send_now(bytes(corrupt))
        elif kind == "truncate":
            message = audio_event(b"\x00" * 64)
            port.send_now(message[: len(message) // 2], end_stream=True)
        elif kind in EXCEPTION_KINDS:
            port.send_now(EXCEPTION_KINDS[kind].event(), end_stream=True)
        elif kind in HEADER_KINDS:
            # Header faults chosen after the headers went out: nearest meaning.
            port.reset(INTERNAL_ERROR)
        elif kind == "no_stream_closed":
            port.end_stream()
