"""Polly's bidirectional streaming as a LiveKit Agents TTS: ``TTS(voice_id="Joanna")``.

Needs the extra: ``pip install 'amazon-polly-streaming[livekit]'`` (livekit-agents >= 1.8.9, < 2).

Each ``SynthesizeStream`` (one agent turn) is one Polly stream. LLM tokens go up as
TextEvents the moment LiveKit pushes them -- no sentence tokenizer, Polly reassembles
text itself -- and LiveKit's flush or ``end_input`` closes the input; the client's
keep-alive carries the stream over pauses of the model in between. Audio comes back
while the model still talks, as PCM at 16 kHz (8 kHz for telephony rates) turned into
LiveKit frames at the TTS's sample rate. ``aclose()`` of a stream (barge-in) resets its
Polly stream at once and the warm connection serves the next turn. Failures become
LiveKit's ``APIStatusError``/``APIConnectionError``/``APITimeoutError``, retryable
exactly when a retry can neither fail the same way nor repeat audio, so LiveKit's own
retry sends the turn's text again.

Polly sends no word timings in this API; the TTS offers LiveKit an aligned
transcript all the same (``TTSCapabilities.aligned_transcript``): each word as a
``TimedString`` whose times are estimated from the audio (:mod:`._word_timing`).
With ``AgentSession(use_tts_aligned_transcript=True)`` LiveKit then syncs its
transcript, and the chat context of an interrupted turn, to those times instead
of its generic speaking-rate guess.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, aclosing
from typing import TYPE_CHECKING, Any, Never, Protocol, cast

try:
    from livekit import rtc
    from livekit.agents import (
        DEFAULT_API_CONNECT_OPTIONS,
        APIConnectionError,
        APIConnectOptions,
        APIError,
        APIStatusError,
        APITimeoutError,
        tts,
        utils,
    )
    from livekit.agents.voice import io
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "amazon_polly_streaming.integrations.livekit needs LiveKit Agents: "
        f"pip install 'amazon-polly-streaming[livekit]' ({exc})"
    ) from exc

from ..client import PollyStreamingClient
from ..exceptions import HTTPStatusError, PollyStreamingError, ServiceException
from ._word_timing import SpeakingRate, TimedWord

if TYPE_CHECKING:
    from .._cached_synthesis import CachedSpeech

__all__ = ["TTS", "ChunkedStream", "SynthesizeStream"]

logger = logging.getLogger("amazon_polly_streaming.integrations.livekit")

#: Polly's PCM comes at 8000 or 16000 Hz (service model, SampleRate); the
#: rest is resampled to the rate the TTS announces.
_TELEPHONY_RATE = 8000
_WIDEBAND_RATE = 16000


class _Metrics(Protocol):
    @property
    def connection_wait(self) -> float | None: ...
    @property
    def connection_reused(self) -> bool | None: ...


class _Audio(Protocol):
    """What the sink reads: a session, or a whole-text call (cached or not)."""

    @property
    def request_id(self) -> str | None: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...


class _Session(Protocol):
    """What a turn uses of the client's ``open_stream`` session."""

    @property
    def request_id(self) -> str | None: ...
    @property
    def request_characters(self) -> int | None: ...
    @property
    def metrics(self) -> _Metrics: ...
    async def send(self, text: str, *, flush: bool = False) -> None: ...
    async def close_input(self) -> None: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...


class TTS(tts.TTS[Never]):  # no events beyond LiveKit's own
    """A streaming LiveKit TTS on Polly's ``StartSpeechSynthesisStream``.

    ``client`` is a :class:`~amazon_polly_streaming.PollyStreamingClient` to
    share (its pool, credentials and options); without one, a client is made
    from ``region`` and ``client_options`` (any other keyword of the client,
    e.g. ``endpoint_url``, ``credentials``, ``pool_size``,
    ``keepalive_interval``) and closed with the TTS. ``sample_rate`` is the
    rate of the frames LiveKit gets; Polly is asked for 16 kHz PCM, or 8 kHz
    when ``sample_rate`` is 8000 or less, and LiveKit's resampler makes up
    the difference.
    """

    def __init__(
        self,
        *,
        voice_id: str = "Joanna",
        client: PollyStreamingClient | None = None,
        region: str | None = None,
        engine: str = "generative",
        language_code: str | None = None,
        lexicon_names: Iterable[str] | None = None,
        sample_rate: int = _WIDEBAND_RATE,
        **client_options: Any,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int of Hz, not {sample_rate!r}")
        if not isinstance(voice_id, str) or not voice_id:
            raise ValueError("voice_id must be a non-empty str")
        super().__init__(
            # Word times estimated from the audio, offered as LiveKit's TimedStrings.
            capabilities=tts.TTSCapabilities(streaming=True, aligned_transcript=True),
            sample_rate=sample_rate,
            num_channels=1,
        )
        if client is None:
            client = PollyStreamingClient(region=region, **client_options)
            self._owns_client = True
        elif region is not None or client_options:
            raise TypeError("pass client= or the options to create one (region=, ...), not both")
        else:
            self._owns_client = False
        self._client = client
        self._engine = engine
        self._polly_rate = _TELEPHONY_RATE if sample_rate <= _TELEPHONY_RATE else _WIDEBAND_RATE
        options: dict[str, Any] = {
            "voice_id": voice_id,
            "engine": engine,
            "output_format": "pcm",
            "sample_rate": str(self._polly_rate),
            "lexicon_names": None if lexicon_names is None else tuple(lexicon_names),
            # Polly wants LanguageCode only for bilingual voices (service model):
            # None sends no header, and the voice's own language applies.
            "language_code": language_code,
        }
        self._stream_options = options
        self._streams: weakref.WeakSet[SynthesizeStream] = weakref.WeakSet()
        self._prewarm_task: asyncio.Task[None] | None = None
        # The voice's seconds of audio per character, from its finished streams.
        self._speaking_rate = SpeakingRate()

    @property
    def client(self) -> PollyStreamingClient:
        return self._client

    @property
    def model(self) -> str:
        return self._engine

    @property
    def provider(self) -> str:
        return "Amazon Polly"

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> ChunkedStream:
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> SynthesizeStream:
        stream = SynthesizeStream(tts=self, conn_options=conn_options)
        self._streams.add(stream)
        return stream

    def prewarm(self) -> None:
        """Open a pooled connection (and resolve credentials) ahead of the first turn."""
        if self._prewarm_task is not None and not self._prewarm_task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            logger.debug("prewarm() outside an event loop: nothing to do")
            return
        self._prewarm_task = loop.create_task(self._prewarm(), name="polly.prewarm")

    async def _prewarm(self) -> None:
        try:
            await self._client.prewarm(1)
        except PollyStreamingError as exc:
            # The first turn will try again and report the error where it belongs.
            logger.warning("prewarming the Polly connection failed: %s", exc)

    async def aclose(self) -> None:
        if self._prewarm_task is not None:
            await utils.aio.cancel_and_wait(self._prewarm_task)
            self._prewarm_task = None
        for stream in list(self._streams):
            await stream.aclose()
        self._streams.clear()
        if self._owns_client:
            await self._client.close()

    async def _speak(
        self,
        owner: tts.SynthesizeStream | tts.ChunkedStream,
        sink: _AudioSink,
        send: Callable[[_Session], Awaitable[None]],
        *,
        timeout: float,
    ) -> None:
        """One Polly stream: open it (within ``timeout``), send with ``send``, play into ``sink``."""
        session: _Session | None = None
        try:
            async with AsyncExitStack() as stack:
                async with asyncio.timeout(timeout):
                    session = await stack.enter_async_context(self._client.open_stream(**self._stream_options))
                metrics = session.metrics
                owner._acquire_time = metrics.connection_wait or 0.0
                owner._connection_reused = bool(metrics.connection_reused)
                await _duplex(send(session), sink.play(session))
                self._speaking_rate.observe(sink.timer)
                logger.debug(
                    "Polly request %s: %s billed characters, connection %s after %.1f ms",
                    session.request_id,
                    session.request_characters,
                    "reused" if metrics.connection_reused else "new",
                    (metrics.connection_wait or 0.0) * 1000,
                )
        except PollyStreamingError as exc:
            request_id = None if session is None else session.request_id
            raise _livekit_error(exc, audio_seen=sink.audio_seen, request_id=request_id) from exc
        except TimeoutError as exc:
            raise APITimeoutError(f"no Polly stream within {timeout:g} s") from exc

    async def _say(self, owner: tts.ChunkedStream, sink: _AudioSink, text: str) -> None:
        """A whole text in one call through the client's phrase cache: replayed when spoken before."""
        # With the client's cache, a whole text's call is a CachedSpeech.
        call = cast("CachedSpeech", self._client.start_speech_synthesis_stream(text=text, **self._stream_options))
        try:
            # Closed at once when LiveKit cancels the task: a live stream is reset.
            async with aclosing(call):
                await sink.play(call)
        except PollyStreamingError as exc:
            raise _livekit_error(exc, audio_seen=sink.audio_seen, request_id=call.request_id) from exc
        metrics = call.metrics
        if metrics is not None:
            owner._acquire_time = metrics.connection_wait or 0.0
            owner._connection_reused = bool(metrics.connection_reused or metrics.cache_hit)


class SynthesizeStream(tts.SynthesizeStream):
    """One agent turn: one Polly stream, opened when the first token arrives."""

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        self._polly = tts  # before the base class starts the task that runs _run
        super().__init__(tts=tts, conn_options=conn_options)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        polly = self._polly
        sink = _AudioSink(
            output_emitter, polly._polly_rate, polly.sample_rate, streaming=True, rate=polly._speaking_rate
        )
        # Read the channel of this attempt: a retry replays the text into a new one.
        input_ch = self._input_ch
        first = await _first_text(input_ch)
        if first is None:
            sink.start(None, segment=False)  # no text, nothing to say: no Polly stream
            return
        self._mark_started()

        async def send(session: _Session) -> None:
            await session.send(first)
            sink.timer.add_text(first)
            async for item in input_ch:
                if not isinstance(item, str):
                    # LiveKit's flush ends the turn's only segment (it drops text after one).
                    break
                await session.send(item)
                sink.timer.add_text(item)
            await session.close_input()

        await polly._speak(self, sink, send, timeout=self._conn_options.timeout)


class ChunkedStream(tts.ChunkedStream):
    """``synthesize(text)`` (``session.say("...")``): the whole text in one Polly stream, audio as it comes.

    With a client made with ``cache=``, a text spoken before is replayed from
    the phrase cache instead; streamed turns (``stream()``) never are.
    """

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        self._polly = tts  # before the base class starts the task that runs _run
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        polly = self._polly
        sink = _AudioSink(
            output_emitter, polly._polly_rate, polly.sample_rate, streaming=False, rate=polly._speaking_rate
        )
        text = self._input_text
        if not text.strip():
            sink.start(None, segment=False)
            return

        if polly.client.cache is not None:
            await polly._say(self, sink, text)
            return

        async def send(session: _Session) -> None:
            await session.send(text)
            sink.timer.add_text(text)
            await session.close_input()

        await polly._speak(self, sink, send, timeout=self._conn_options.timeout)


async def _first_text(input_ch: utils.aio.Chan[str | tts.SynthesizeStream._FlushSentinel]) -> str | None:
    """The first token of the turn; None when the input ends without one."""
    async for item in input_ch:
        if isinstance(item, str) and item:
            return item
    return None


async def _duplex(send: Awaitable[None], receive: Awaitable[None]) -> None:
    """Run both directions of a stream; the first failure ends both, the audio side's error first."""
    sender = asyncio.ensure_future(send)
    receiver = asyncio.ensure_future(receive)
    try:
        done, _ = await asyncio.wait((sender, receiver), return_when=asyncio.FIRST_COMPLETED)
        if receiver not in done and sender.exception() is None:
            await receiver  # the input is closed; the rest of the audio follows
    finally:
        # Once the audio ended (or failed) nothing more can be spoken.
        await utils.aio.cancel_and_wait(sender, receiver)
    for task in (receiver, sender):
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


class _AudioSink:
    """One attempt's audio: Polly's PCM bytes in, whole samples at the TTS's rate to LiveKit.

    Polly's chunks need not end on a sample boundary, so an odd trailing byte is
    kept for the next chunk. The emitter is started with Polly's request id
    (known once audio flows) so that it reaches LiveKit's frames, metrics and spans.
    """

    def __init__(
        self, emitter: tts.AudioEmitter, polly_rate: int, sample_rate: int, *, streaming: bool, rate: SpeakingRate
    ) -> None:
        self._emitter = emitter
        self._polly_rate = polly_rate
        #: Word times estimated from the text sent and the audio received.
        self.timer = rate.timer()
        self._first_audio_at: float | None = None
        self._sample_rate = sample_rate
        self._streaming = streaming
        self._pcm = _PcmResampler(polly_rate, sample_rate)
        self._started = False
        self._segment = False
        self.audio_seen = False

    def start(self, request_id: str | None, *, segment: bool = True) -> None:
        if self._started:
            return
        self._started = True
        request_id = request_id or utils.shortuuid()
        self._emitter.initialize(
            request_id=request_id,
            sample_rate=self._sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
            stream=self._streaming,
        )
        if self._streaming and segment:
            self._emitter.start_segment(segment_id=request_id)
            self._segment = True

    async def play(self, session: _Audio) -> None:
        async for chunk in session:
            self.audio_seen = True
            self.start(session.request_id)
            pcm = self._pcm.push(chunk)
            if pcm:
                self._emitter.push(pcm)
            # PCM at a known rate: its seconds are exact (an odd byte is half a
            # sample). The time since the first audio bounds what has played,
            # so words far ahead of it wait for more of the stream.
            now = asyncio.get_running_loop().time()
            if self._first_audio_at is None:
                self._first_audio_at = now
            self._words(self.timer.add_audio(len(chunk) / 2 / self._polly_rate, played=now - self._first_audio_at))
        self.start(session.request_id)
        pcm = self._pcm.flush()
        if pcm:
            self._emitter.push(pcm)
        self._words(self.timer.finish())
        if self._segment:
            self._emitter.end_segment()

    def _words(self, words: list[TimedWord]) -> None:
        """Words with their times, as LiveKit's aligned transcript (its spaces included)."""
        if words:
            self._emitter.push_timed_transcript(
                # LiveKit counts a word as played as its time runs from start to
                # end; the context should hold a word once it started, so its
                # span is its start.
                [io.TimedString(w.space + w.word, start_time=w.start, end_time=w.start) for w in words]
            )


class _PcmResampler:
    """16-bit mono PCM bytes of any chunking in, whole samples at ``output_rate`` out.

    Uses LiveKit's own resampler when the rates differ; an odd trailing byte
    waits for the rest of its sample in the next chunk.
    """

    def __init__(self, input_rate: int, output_rate: int) -> None:
        self.input_rate = input_rate
        self.output_rate = output_rate
        self._carry = b""
        self._resampler = None if input_rate == output_rate else rtc.AudioResampler(input_rate, output_rate)

    def push(self, chunk: bytes) -> bytes:
        data = self._carry + chunk if self._carry else chunk
        whole = len(data) & ~1
        self._carry = data[whole:]
        if self._resampler is None or not whole:
            return data[:whole]
        return b"".join(frame.data.tobytes() for frame in self._resampler.push(bytearray(data[:whole])))

    def flush(self) -> bytes:
        """The resampler's tail at the end of the audio."""
        if self._carry:
            logger.warning("Polly's PCM ended inside a sample; dropped its last byte")
            self._carry = b""
        if self._resampler is None:
            return b""
        return b"".join(frame.data.tobytes() for frame in self._resampler.flush())


def _livekit_error(exc: PollyStreamingError, *, audio_seen: bool, request_id: str | None = None) -> APIError:
    """LiveKit's error for one of ours, with its retry verdict and Polly's request id."""
    error: APIError
    request_id = getattr(exc, "request_id", None) or request_id
    if isinstance(exc, ServiceException | HTTPStatusError):
        status = exc.status_code
        body = exc.details if isinstance(exc, ServiceException) else {"error_type": exc.error_type}
        name = exc.error_type or type(exc).__name__
        message = exc.message if isinstance(exc, ServiceException) else str(exc)
        error = APIStatusError(
            f"Polly {name}: {message}",
            status_code=status if status is not None else -1,
            request_id=request_id,
            body=body,
        )
    else:
        message = f"Polly: {exc}" + (f" (request id {request_id})" if request_id else "")
        error = APITimeoutError(message) if isinstance(exc, TimeoutError) else APIConnectionError(message)
    # Our verdict, not LiveKit's guess from the status: Polly throttles with
    # HTTP 400, which APIStatusError would call final. A retry must also not
    # repeat audio, and audio may have arrived before a send failed.
    error.retryable = exc.retry_safe and not audio_seen
    return error
