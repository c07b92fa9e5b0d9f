"""Polly's bidirectional streaming as a pipecat text-to-speech service.

    pip install 'amazon-polly-streaming[pipecat]'

    tts = PollyStreamingTTSService(voice_id="Joanna", region="us-east-1")

Each pipecat audio context (an LLM reply, or a ``TTSSpeakFrame``) is one Polly
stream: the reply's tokens go up as TextEvents the moment they arrive, the end
of the reply closes the input, and the audio comes back as PCM resampled to the
pipeline's output rate while the LLM is still talking. An interruption resets
the stream (RST_STREAM) and hands its warm connection to the next reply.

Polly sends no word timings in this API, so each word's time is estimated from
the audio (:mod:`._word_timing`) and handed to pipecat's word-timestamp path, as
services with word timestamps do: words reach the conversation context as they
are played, and an interrupted reply keeps about what the caller heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

try:
    from loguru import logger
    from pipecat.audio.utils import create_stream_resampler
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InterruptionFrame,
        StartFrame,
        TTSAudioRawFrame,
        TTSSpeakFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
    from pipecat.services.settings import TTSSettings
    from pipecat.services.tts_service import TextAggregationMode, TTSService
    from pipecat.transcriptions.language import Language
    from pipecat.utils.errors import ErrorCategory
    from pipecat.utils.types import NOT_GIVEN, NotGiven
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"amazon_polly_streaming.integrations.pipecat needs pipecat: "
        f"pip install 'amazon-polly-streaming[pipecat]' ({exc})"
    ) from exc

from ..client import PollyStreamingClient
from ..exceptions import PollyStreamingError
from ._pipecat_errors import error_category
from ._word_timing import SpeakingRate, TimedWord, WordTimer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._cached_synthesis import CachedSpeech
    from .._session import SpeechStream

__all__ = ["PollyStreamingTTSService", "PollyStreamingTTSSettings"]

#: Keyword arguments that configure the client the service creates when it is
#: given none (``region``, ``endpoint_url``, ``credentials``, ...).
_CLIENT_OPTIONS = frozenset(inspect.signature(PollyStreamingClient).parameters)

#: Polly's PCM comes at 8 or 16 kHz (the SampleRate documentation of Polly's
#: service model, botocore ``polly/2016-06-10/service-2.json``).
_TELEPHONY_RATE = 8000
_WIDEBAND_RATE = 16000


def polly_sample_rate(output_rate: int) -> int:
    """The PCM rate to ask Polly for: 8 kHz for telephony pipelines, else 16 kHz."""
    return _TELEPHONY_RATE if output_rate <= _TELEPHONY_RATE else _WIDEBAND_RATE


@dataclass
class PollyStreamingTTSSettings(TTSSettings):
    """Runtime-updatable settings; a change applies from the next Polly stream.

    ``voice`` is Polly's voice id and ``language`` its language code (only for
    bilingual voices; ``None`` lets the voice decide).

    Parameters:
        engine: Polly's engine; the streaming API takes ``generative``.
        lexicon_names: Pronunciation lexicons to apply (at most 5).
    """

    engine: str | NotGiven = field(default_factory=lambda: NOT_GIVEN)
    lexicon_names: tuple[str, ...] | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)


class _PollyTurn:
    """One audio context's Polly stream, and the task that reads its audio."""

    def __init__(self, context_id: str, *, interruptible: bool, one_shot: bool, timer: WordTimer) -> None:
        self.context_id = context_id
        self.interruptible = interruptible
        #: A context outside any turn (a lone TextFrame) gets no flush: its
        #: text is all there is, so the input closes right after it.
        self.one_shot = one_shot
        self.session: SpeechStream | None = None
        self.opened = asyncio.Event()  # set once the stream opened or failed to
        self.task: asyncio.Task[None] | None = None
        self.aborted = False
        self.failed = False
        #: Estimated word times from the text sent and the audio received.
        self.timer = timer
        #: Seconds of the stream's audio before its current audio context:
        #: pipecat times words from the first audio of their context.
        self.audio_base = 0.0
        #: When the stream's first audio went to pipecat (loop time).
        self.first_audio_at: float | None = None

    @property
    def over(self) -> bool:
        """Failed or aborted: no more text goes up, no more audio comes out."""
        return self.aborted or self.failed

    async def ready(self) -> SpeechStream | None:
        """The open stream, or None when it failed or was aborted."""
        await self.opened.wait()
        return None if self.over else self.session


class PollyStreamingTTSService(TTSService):
    """A pipecat ``TTSService`` on Polly's bidirectional ``StartSpeechSynthesisStream``.

    Args:
        voice_id: Polly's voice (a generative one).
        client: A :class:`~amazon_polly_streaming.PollyStreamingClient` to share;
            the caller closes it. Without one, the service creates its own from
            ``region`` and any other client option passed here (``endpoint_url``,
            ``credentials``, ``pool_size``, ``keepalive_interval``, ...) and
            closes it with the pipeline.
        region: The AWS region of the client the service creates.
        engine: Polly's engine, ``generative``.
        language_code: Only for bilingual voices; by default the voice decides.
        lexicon_names: Pronunciation lexicons stored in Polly.
        sample_rate: The audio rate to produce; by default the pipeline's output
            rate. Polly's 16 kHz PCM (8 kHz for 8 kHz output) is resampled to it.
        text_aggregation_mode: ``TOKEN`` (the default) sends the LLM's tokens as
            they come, and Polly finds the sentence boundaries itself;
            ``SENTENCE`` makes pipecat wait for each sentence first.
        settings: A :class:`PollyStreamingTTSSettings` overriding the above.
        **kwargs: Client options when ``client`` is not given, and the rest to
            pipecat's ``TTSService``.
    """

    Settings = PollyStreamingTTSSettings
    _settings: PollyStreamingTTSSettings

    def __init__(
        self,
        *,
        voice_id: str = "Joanna",
        client: PollyStreamingClient | None = None,
        region: str | None = None,
        engine: str = "generative",
        language_code: str | None = None,
        lexicon_names: Iterable[str] | None = None,
        sample_rate: int | None = None,
        text_aggregation_mode: TextAggregationMode = TextAggregationMode.TOKEN,
        settings: PollyStreamingTTSSettings | None = None,
        **kwargs: Any,
    ) -> None:
        client_options = {name: kwargs.pop(name) for name in list(kwargs) if name in _CLIENT_OPTIONS}
        if client is not None and (region is not None or client_options):
            raise TypeError("pass either client= or the options of a client to create, not both")
        store = PollyStreamingTTSSettings(
            model=None,
            voice=voice_id,
            language=language_code,
            engine=engine,
            lexicon_names=tuple(lexicon_names) if lexicon_names is not None else None,
        )
        if settings is not None:
            store.apply_update(settings)
        super().__init__(
            text_aggregation_mode=text_aggregation_mode,
            # The base class opens each audio context with a TTSStartedFrame
            # (and starts TTFB), and ends one that goes quiet with a
            # TTSStoppedFrame; a finished stream ends its context at once.
            push_start_frame=True,
            push_stop_frames=True,
            # Words reach the context through add_word_timestamps as they are
            # played (estimated from the audio), not a whole sentence at once.
            push_text_frames=False,
            # Polly joins a stream's TextEvents as they are: in sentence mode,
            # pipecat's stripped sentences need a space between them.
            append_trailing_space=kwargs.pop("append_trailing_space", True),
            sample_rate=sample_rate,
            settings=store,
            **kwargs,
        )
        self._owns_client = client is None
        self._client = client if client is not None else PollyStreamingClient(region, **client_options)
        self._turns: dict[str, _PollyTurn] = {}
        # Contexts whose stream failed (and was reported): the rest of their
        # text is dropped, and their silence is not a second error.
        self._failed_contexts: deque[str] = deque(maxlen=16)
        # Each voice's seconds of audio per character, from its finished
        # streams: the prior of the next stream's word timer.
        self._speaking_rates: dict[tuple[str, str, str | None], SpeakingRate] = {}
        # With the client's phrase cache, a TTSSpeakFrame's text is whole: it
        # is gathered here and spoken in one call through the cache when its
        # context completes (an LLM turn's streamed tokens never are).
        self._in_speak_frame = False
        self._whole_texts: dict[str, list[str]] = {}

    @property
    def client(self) -> PollyStreamingClient:
        return self._client

    def can_generate_metrics(self) -> bool:
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        # Polly's codes are BCP 47 tags (en-US, de-DE), as pipecat's values are.
        return str(language.value)

    # ------------------------------------------------------------------ life cycle

    # pipecat's FrameProcessor.setup itself narrows BaseObject.setup's argument.
    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        # A warm connection (TLS, HTTP/2, credentials) for the first reply.
        try:
            await self._client.prewarm(1)
        except PollyStreamingError as exc:
            logger.warning(f"{self}: could not open a Polly connection ahead of time: {exc}")

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        logger.debug(
            f"{self}: Polly voice {self._settings.voice}, PCM at {polly_sample_rate(self.sample_rate)} Hz,"
            f" audio out at {self.sample_rate} Hz"
        )

    async def stop(self, frame: EndFrame) -> None:
        # A graceful end speaks the text already sent, then plays out.
        for turn in list(self._turns.values()):
            await self._close_input(turn)
        await super().stop(frame)
        await self._abort_all()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._abort_all()

    async def cleanup(self) -> None:
        await self._abort_all()
        await super().cleanup()  # type: ignore[no-untyped-call]  # unannotated in pipecat
        if self._owns_client:
            await self._client.close()

    # ------------------------------------------------------------------ text in

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        turn = self._turns.get(context_id)
        whole = self._whole_texts.get(context_id)
        if whole is not None:
            whole.append(text)  # spoken, whole, when its context completes
        elif turn is None and context_id in self._failed_contexts:
            logger.trace(f"{self}: dropping text of failed context {context_id}")
        else:
            await self._send(turn or self._open_turn(context_id), text)
        # The audio arrives on the turn's own task, into its audio context.
        yield None

    async def _send(self, turn: _PollyTurn, text: str) -> None:
        session = await turn.ready()
        if session is None:
            return  # failed (and reported) or interrupted
        if session.input_closed:
            # Text after the end of its turn (an EndFrame's last flush of
            # sentence aggregation): the turn's stream takes no more.
            logger.warning(f"{self}: {len(text)} characters after the end of context {turn.context_id} not spoken")
            return
        try:
            await session.send(text)
            turn.timer.add_text(text)
            if turn.one_shot:
                await session.close_input()
        except PollyStreamingError as exc:
            await self._fail(turn, exc)
            return
        await self.start_tts_usage_metrics(text)

    async def flush_audio(self, context_id: str | None = None) -> None:
        """End of the turn: close the stream's input; Polly speaks what is left."""
        context_id = context_id or self.get_active_audio_context_id()
        turn = self._turns.get(context_id) if context_id else None
        if turn is not None:
            await self._close_input(turn)

    async def on_turn_context_created(self, context_id: str) -> None:
        await super().on_turn_context_created(context_id)
        if self._in_speak_frame:
            self._whole_texts[context_id] = []

    async def on_turn_context_completed(self) -> None:
        context_id = self._turn_context_id
        whole = self._whole_texts.pop(context_id, None) if context_id else None
        if context_id and whole is not None and "".join(whole).strip():
            self._open_turn(context_id, "".join(whole))
        await super().on_turn_context_completed()  # type: ignore[no-untyped-call]  # unannotated in pipecat
        # pipecat flushes only a turn whose audio context is still open; one
        # that went quiet for stop_frame_timeout_s (the LLM paused before its
        # last words) still has text in Polly's buffer to speak.
        turn = self._turns.get(context_id) if context_id else None
        if turn is not None:
            await self._close_input(turn)

    async def _close_input(self, turn: _PollyTurn) -> None:
        session = await turn.ready()
        if session is None or session.input_closed:
            return
        try:
            await session.close_input()
        except PollyStreamingError as exc:
            await self._fail(turn, exc)

    # ------------------------------------------------------------------ interruptions

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        self._whole_texts.pop(context_id, None)
        turn = self._turns.get(context_id)
        if turn is not None:
            await self._abort(turn)
        await super().on_audio_context_interrupted(context_id)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame):
            # A stream whose audio context pipecat already closed (quiet for
            # stop_frame_timeout_s, as across an LLM pause) gets no
            # on_audio_context_interrupted, and must not speak on either.
            for turn in list(self._turns.values()):
                if turn.interruptible and not self.audio_context_available(turn.context_id):
                    await self._abort(turn)
        elif isinstance(frame, TTSSpeakFrame) and self._client.cache is not None:
            self._in_speak_frame = True
            try:
                await super().process_frame(frame, direction)
            finally:
                self._in_speak_frame = False
            return
        await super().process_frame(frame, direction)

    # ------------------------------------------------------------------ streams

    def _open_turn(self, context_id: str, whole_text: str | None = None) -> _PollyTurn:
        context = self._tts_contexts.get(context_id)
        turn = _PollyTurn(
            context_id,
            interruptible=context.interruptible if context is not None else True,
            one_shot=context_id != self._turn_context_id,
            timer=self._speaking_rate().timer(),
        )
        self._turns[context_id] = turn
        turn.task = self.create_task(self._run_turn(turn, whole_text), f"polly-{context_id}")
        return turn

    async def _run_turn(self, turn: _PollyTurn, whole_text: str | None = None) -> None:
        """Open the turn's stream and play its audio into the turn's audio context.

        ``whole_text``: the turn's only text, spoken in one call through the
        client's phrase cache (replayed when spoken before) instead of a session.
        """
        settings = self._settings
        polly_rate = polly_sample_rate(self.sample_rate)
        # None sends no LanguageCode: the voice's own language (Polly wants it
        # only for bilingual voices).
        language = str(settings.language) if settings.language else None
        options: dict[str, Any] = {
            "voice_id": str(settings.voice),
            "engine": str(settings.engine),
            "language_code": language,
            "lexicon_names": settings.lexicon_names if isinstance(settings.lexicon_names, tuple) else None,
            "output_format": "pcm",
            "sample_rate": str(polly_rate),
        }
        try:
            if whole_text is None:
                async with self._client.open_stream(**options) as session:
                    turn.session = session
                    turn.opened.set()
                    await self._play(turn, session, polly_rate)
            else:
                # With the client's cache, a whole text's call is a CachedSpeech.
                call = cast("CachedSpeech", self._client.start_speech_synthesis_stream(text=whole_text, **options))
                turn.opened.set()
                # Closed at once when the turn is cancelled (an interruption): the stream is reset.
                async with contextlib.aclosing(call):
                    await self._play(turn, call, polly_rate)
                if not call.cache_hit:
                    await self.start_tts_usage_metrics(whole_text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail(turn, exc)
        finally:
            turn.opened.set()
            if self._turns.get(turn.context_id) is turn:
                del self._turns[turn.context_id]

    async def _play(self, turn: _PollyTurn, session: SpeechStream | CachedSpeech, polly_rate: int) -> None:
        # Pipecat's own streaming resampler, one per stream so that its filter
        # history is this stream's. It keeps that history across gaps (an LLM
        # pause): clearing it would drop the samples it holds.
        resampler = create_stream_resampler(clear_after_secs=None)
        carry = b""  # an odd trailing byte waits for the rest of its sample
        async for chunk in session:
            data = carry + chunk if carry else chunk
            whole = len(data) & ~1
            carry = data[whole:]
            if whole:
                await self._deliver(turn, await resampler.resample(data[:whole], polly_rate, self.sample_rate))
                # PCM at a known rate: the seconds of audio are exact. The
                # time since the first audio bounds what has played, so words
                # far ahead of it wait for more of the stream.
                now = asyncio.get_running_loop().time()
                if turn.first_audio_at is None:
                    turn.first_audio_at = now
                played = now - turn.first_audio_at
                await self._add_words(turn, turn.timer.add_audio(whole / 2 / polly_rate, played=played))
        if carry:
            logger.warning(f"{self}: Polly's PCM ended on half a sample (request id {session.request_id})")
            await self._deliver(turn, await resampler.resample(carry + b"\x00", polly_rate, self.sample_rate))
        await self._deliver(turn, await resampler.flush())
        if not turn.over:
            timer = turn.timer
            await self._add_words(turn, timer.finish())
            self._speaking_rate().observe(timer)
        metrics = session.metrics
        if metrics is not None:
            source = "replayed from the phrase cache" if metrics.cache_hit else f"request id {session.request_id}"
            logger.debug(
                f"{self}: Polly stream for context {turn.context_id} done: {source},"
                f" {session.request_characters} characters billed, {metrics.audio_bytes} bytes of audio,"
                f" first audio after {_ms(metrics.time_to_first_audio)},"
                f" {'reused' if metrics.connection_reused else 'new'} connection after {_ms(metrics.connection_wait)}"
            )
        if not turn.over:
            await self._end_context(turn.context_id)

    async def _deliver(self, turn: _PollyTurn, audio: bytes) -> None:
        if not audio or turn.over:
            return
        context_id = turn.context_id
        if not self.audio_context_available(context_id):
            # Pipecat closes an audio context that stays quiet for
            # stop_frame_timeout_s (an LLM pause, a slow end of turn); Polly is
            # still speaking this turn, so open it again rather than drop audio.
            await self.create_audio_context(context_id)
            await self.append_to_audio_context(context_id, TTSStartedFrame(context_id=context_id))
            turn.audio_base = turn.timer.audio_seconds
        frame = TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
        await self.append_to_audio_context(context_id, frame)

    async def _add_words(self, turn: _PollyTurn, words: list[TimedWord]) -> None:
        """Hand estimated word times to pipecat, which pushes each word as its audio plays."""
        if not words or turn.over:
            return
        base = turn.audio_base
        # Clean words, as word-timestamp services give them: the context
        # aggregator joins them with one space (includes_inter_frame_spaces
        # left as it is), so an uninterrupted reply reads as the LLM wrote it.
        # Characters of Chinese or Japanese join with none, as pipecat's
        # Cartesia and ElevenLabs services mark theirs.
        for attached, group in itertools.groupby(words, key=lambda w: w.attached):
            await self.add_word_timestamps(
                [(w.word, max(0.0, w.start - base)) for w in group],
                turn.context_id,
                includes_inter_frame_spaces=True if attached else None,
            )

    def _speaking_rate(self) -> SpeakingRate:
        settings = self._settings
        key = (str(settings.voice), str(settings.engine), str(settings.language) if settings.language else None)
        rate = self._speaking_rates.get(key)
        if rate is None:
            rate = self._speaking_rates[key] = SpeakingRate()
        return rate

    async def _end_context(self, context_id: str) -> None:
        if self.audio_context_available(context_id):
            await self.append_to_audio_context(context_id, TTSStoppedFrame(context_id=context_id))
            await self.remove_audio_context(context_id)

    async def _fail(self, turn: _PollyTurn, exc: Exception) -> None:
        """Report a failed stream once, free it, and end its audio context."""
        if turn.over:
            return
        turn.failed = True
        self._failed_contexts.append(turn.context_id)
        session = turn.session
        request_id = getattr(exc, "request_id", None) or (session.request_id if session is not None else None)
        await self._stop_stream(turn)
        if session is None or session.metrics.time_to_first_audio is None:
            await self.cancel_ttfb_metrics()  # type: ignore[no-untyped-call]  # unannotated in pipecat
        message = f"Polly stream failed: {type(exc).__name__}: {exc}"
        if request_id and request_id not in message:
            message += f" (request id {request_id})"
        await self.push_error(error_msg=message, exception=exc)
        await self._end_context(turn.context_id)

    async def _abort(self, turn: _PollyTurn) -> None:
        """Stop the stream now: RST_STREAM, and its connection goes back to the pool."""
        if turn.aborted:
            return
        turn.aborted = True
        if turn.session is not None:
            logger.debug(f"{self}: resetting Polly stream {turn.session.request_id} (context {turn.context_id})")
        await self._stop_stream(turn)
        if self._turns.get(turn.context_id) is turn:
            del self._turns[turn.context_id]

    async def _stop_stream(self, turn: _PollyTurn) -> None:
        """RST_STREAM at once (unless it completed), then end the task that reads it."""
        if turn.session is not None:
            await turn.session.abort()
        task = turn.task
        if task is not None and task is not asyncio.current_task():
            await self.cancel_task(task)
        turn.opened.set()  # nothing waits for a stream that will not come

    async def _abort_all(self) -> None:
        self._whole_texts.clear()
        for turn in list(self._turns.values()):
            await self._abort(turn)

    async def _record_context_audio_outcome(self, context_id: str, received_audio: bool) -> None:
        # Pipecat counts contexts that end without audio as a provider gone
        # silent, and writes the service off after a few in a row. A context
        # whose stream failed was reported with its cause (a throttled turn is
        # a RATE_LIMIT, not a permanent failure): it must not count again.
        if not received_audio and context_id in self._failed_contexts:
            return
        await super()._record_context_audio_outcome(context_id, received_audio)

    # ------------------------------------------------------------------ errors

    def _classify_error(self, exception: Exception) -> ErrorCategory | None:
        return error_category(exception)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"
