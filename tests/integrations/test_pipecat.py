"""The pipecat TTS service, driven by pipecat's own ``run_test`` against the emulator.

These tests need pipecat; ``bash scripts/test`` runs them in ``.venv-pipecat``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pipecat", reason="pipecat is not installed here (scripts/test runs this in .venv-pipecat)")

from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    OutputAudioRawFrame,
    StartFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData, TTSUsageMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.tts_service import TextAggregationMode
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.utils.errors import ErrorCategory
from pipecat.workers.runner import WorkerRunner

from amazon_polly_streaming import PollyStreamingClient, ThrottlingException
from amazon_polly_streaming.emulator import Emulator, RequestRecord
from amazon_polly_streaming.exceptions import ConnectError
from amazon_polly_streaming.integrations.pipecat import PollyStreamingTTSService, polly_sample_rate
from support import KEY, SECRET, heard_text, make_client, spoken_words

ROOT = Path(__file__).resolve().parents[2]
TOKENS = ["Hello", " there,", " this", " is", " a", " streaming", " test", " of", " Polly", "."]
#: RST_STREAM's CANCEL error code (RFC 9113 section 7).
CANCEL = 8


def make_service(emulator: Emulator, **options: Any) -> PollyStreamingTTSService:
    return PollyStreamingTTSService(
        voice_id=options.pop("voice_id", "Joanna"),
        region="us-east-1",
        endpoint_url=emulator.endpoint_url,
        verify=emulator.ca_file,
        credentials=(KEY, SECRET),
        read_timeout=5.0,
        connect_timeout=5.0,
        **options,
    )


async def speak(
    tts: PollyStreamingTTSService, frames: Sequence[Frame], *, rate: int = 24000, metrics: bool = False
) -> tuple[list[Frame], list[Frame]]:
    params = PipelineParams(audio_out_sample_rate=rate, enable_metrics=metrics, enable_usage_metrics=metrics)
    down, up = await run_test(tts, frames_to_send=frames, pipeline_params=params, start_timeout=10.0)
    return list(down), list(up)


def llm_turn(*tokens: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(token) for token in tokens), LLMFullResponseEndFrame()]


def audio_of(frames: Sequence[Frame], context_id: str | None = None) -> bytes:
    return b"".join(
        f.audio
        for f in frames
        if isinstance(f, TTSAudioRawFrame) and (context_id is None or f.context_id == context_id)
    )


def spoken_texts(record: RequestRecord) -> list[str]:
    """The TextEvents of a request, without the stream's white-space keep-alives."""
    return [event["text"] for event in record.texts if event["text"].strip()]


def check_framing(frames: Sequence[Frame], rate: int) -> None:
    """Every audio frame at ``rate`` and inside a TTSStartedFrame ... TTSStoppedFrame of its context."""
    open_context: str | None = None
    for frame in frames:
        if isinstance(frame, TTSStartedFrame):
            assert open_context is None, "TTSStartedFrame inside another context"
            open_context = frame.context_id
        elif isinstance(frame, TTSAudioRawFrame):
            assert frame.sample_rate == rate
            assert frame.num_channels == 1
            assert len(frame.audio) % 2 == 0
            assert frame.context_id == open_context, "audio outside its TTSStartedFrame/TTSStoppedFrame"
        elif isinstance(frame, TTSStoppedFrame):
            assert frame.context_id == open_context
            open_context = None
    assert open_context is None, "a TTSStartedFrame without its TTSStoppedFrame"


def assert_resampled(audio: bytes, polly_bytes: int, rate: int, polly_rate: int = 16000) -> None:
    """``audio`` is all of Polly's ``polly_bytes``, resampled (to within the rounding of one sample)."""
    expected = polly_bytes // 2 * rate / polly_rate
    assert abs(len(audio) // 2 - expected) <= 1, (len(audio) // 2, expected)


def assert_one_complete_stream(
    emulator: Emulator, down: Sequence[Frame], up: Sequence[Frame], texts: list[str], rate: int = 24000
) -> RequestRecord:
    """One Polly stream saw ``texts`` and completed; all its audio came out, framed, with no error."""
    (record,) = emulator.requests
    assert record.outcome == "ok"
    assert spoken_texts(record) == texts
    assert not [f for f in up if isinstance(f, ErrorFrame)]
    check_framing(down, rate)
    assert_resampled(audio_of(down), record.audio_bytes, rate)
    return record


@pytest.mark.timeout(60)
async def test_llm_tokens_stream_as_text_events_in_one_stream() -> None:
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator)
        down, up = await speak(tts, llm_turn(*TOKENS), metrics=True)

        # pipecat's own order: started, audio at the pipeline's rate, stopped.
        kinds = [type(f) for f in down if isinstance(f, TTSStartedFrame | TTSAudioRawFrame | TTSStoppedFrame)]
        assert kinds[0] is TTSStartedFrame
        assert kinds[-1] is TTSStoppedFrame
        assert set(kinds[1:-1]) == {TTSAudioRawFrame}
        # One stream, each token its own TextEvent, as it came; every byte
        # Polly sent, resampled from 16 to 24 kHz: nothing dropped or repeated.
        record = assert_one_complete_stream(emulator, down, up, TOKENS)
        assert record.sample_rate == "16000"

        # TTFB and characters through pipecat's metrics frames.
        metrics = [d for f in down if isinstance(f, MetricsFrame) for d in f.data]
        assert any(isinstance(d, TTFBMetricsData) and d.value > 0 for d in metrics)
        usage = [d.value for d in metrics if isinstance(d, TTSUsageMetricsData)]
        assert usage == [len("".join(TOKENS))]

        # The service created its client, and closed it with the pipeline.
        await emulator.wait_for(lambda: emulator.open_connections == 0)
        assert emulator.total_connections == 1  # the prewarmed one


@pytest.mark.timeout(60)
async def test_sentence_mode_stays_a_choice() -> None:
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator, text_aggregation_mode=TextAggregationMode.SENTENCE)
        down, up = await speak(tts, llm_turn("Hello", " there.", " How", " are", " you?"))
        # pipecat gathers the sentences; they still share the reply's one stream.
        assert_one_complete_stream(emulator, down, up, ["Hello there. ", "How are you? "])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rate", [16000, 8000, 24000])
async def test_audio_is_polly_bytes_exactly_across_odd_chunks(rate: int) -> None:
    # 4095-byte audio events split samples: an odd byte must wait for its other half.
    async with Emulator(audio="tone", audio_chunk_bytes=4095, record_audio=True) as emulator:
        tts = make_service(emulator)
        speech = TTSSpeakFrame("One sentence to say. And then a second one, a little longer.")
        down, _ = await speak(tts, [speech], rate=rate)
        (record,) = emulator.requests
        assert record.sample_rate == str(polly_sample_rate(rate))
        assert record.audio is not None
        assert len(record.audio) > 3 * 4095
        if rate == polly_sample_rate(rate):
            # No resampling at Polly's own rate: the frames are Polly's bytes, in order.
            assert audio_of(down) == bytes(record.audio)
        else:
            assert_resampled(audio_of(down), len(record.audio), rate)
        check_framing(down, rate)


@pytest.mark.timeout(60)
async def test_interruption_resets_the_stream_and_the_next_turn_reuses_the_connection() -> None:
    async with Emulator(audio="tone", real_time_factor=1.0) as emulator:
        tts = make_service(emulator)
        frames: list[Frame] = [
            LLMFullResponseStartFrame(),
            LLMTextFrame("Hello there."),
            LLMTextFrame(" This reply goes on and on"),
            SleepFrame(0.5),
            InterruptionFrame(),
            SleepFrame(0.3),
            TTSSpeakFrame("Sorry, go ahead."),
        ]
        down, up = await speak(tts, frames)

        first, second = emulator.requests
        assert first.outcome != "ok"  # reset mid-turn, while its input was open
        assert emulator.client_resets == [CANCEL]
        assert second.outcome == "ok"
        assert spoken_texts(second) == ["Sorry, go ahead."]
        assert emulator.total_connections == 1
        assert second.connection_id == first.connection_id

        barge_in = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
        before, after = down[:barge_in], down[barge_in:]
        interrupted = next(f.context_id for f in before if isinstance(f, TTSStartedFrame))
        assert audio_of(before, interrupted), "the reply spoke before the barge-in"
        assert not audio_of(after, interrupted), "audio of the interrupted reply after the barge-in"
        next_turn = [f for f in after if isinstance(f, TTSStartedFrame)]
        assert len(next_turn) == 1
        assert_resampled(audio_of(after, next_turn[0].context_id), second.audio_bytes, 24000)
        check_framing(after[1:], 24000)
        assert not [f for f in up if isinstance(f, ErrorFrame)]


@pytest.mark.timeout(60)
async def test_uninterruptible_speech_keeps_speaking_through_an_interruption() -> None:
    async with Emulator(audio="tone", real_time_factor=1.0) as emulator:
        tts = make_service(emulator)
        speech = TTSSpeakFrame("Please hold. Your call is important to us.")
        speech.interruptible = False
        down, up = await speak(tts, [speech, SleepFrame(0.5), InterruptionFrame(), SleepFrame(0.2)])
        assert_one_complete_stream(emulator, down, up, [speech.text])
        assert emulator.client_resets == []


@pytest.mark.timeout(60)
async def test_a_pause_in_the_llm_keeps_one_stream_alive() -> None:
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator)
        frames: list[Frame] = [
            LLMFullResponseStartFrame(),
            LLMTextFrame("Let me think."),
            LLMTextFrame(" The answer"),
            SleepFrame(6.0),  # past Polly's 5 s input idle limit
            LLMTextFrame(" is forty two."),
            LLMFullResponseEndFrame(),
        ]
        down, up = await speak(tts, frames)
        # pipecat may close the audio context during the pause and open it
        # again; the audio is still all there, each part framed.
        record = assert_one_complete_stream(emulator, down, up, ["Let me think.", " The answer", " is forty two."])
        assert len(record.texts) > 3, "the stream's keep-alive went up during the pause"


@pytest.mark.timeout(60)
async def test_last_words_after_a_pause_are_spoken() -> None:
    # pipecat closes the audio context after 3 s without audio and then skips
    # flush_audio at the end of the turn; the words still in Polly's buffer
    # must be spoken all the same, in a context of their own.
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator)
        frames: list[Frame] = [
            LLMFullResponseStartFrame(),
            LLMTextFrame("Here it comes."),
            LLMTextFrame(" And the last words"),
            SleepFrame(3.8),
            LLMFullResponseEndFrame(),
            SleepFrame(3.0),  # the pipeline ends after this
        ]
        started = asyncio.get_running_loop().time()
        down, up = await speak(tts, frames)
        record = assert_one_complete_stream(emulator, down, up, ["Here it comes.", " And the last words"])
        assert record.ended is not None
        assert record.ended - started < 5.5, "the input closed at the end of the turn, not at the end of the pipeline"


@pytest.mark.timeout(60)
async def test_interruption_resets_a_stream_whose_audio_context_went_quiet() -> None:
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator)
        frames: list[Frame] = [
            LLMFullResponseStartFrame(),
            LLMTextFrame("Hello there."),
            LLMTextFrame(" And then"),
            SleepFrame(3.8),  # pipecat ends the quiet audio context
            InterruptionFrame(),
            SleepFrame(0.3),
            LLMFullResponseEndFrame(),
            TTSSpeakFrame("Yes?"),
        ]
        down, _ = await speak(tts, frames)
        first, second = emulator.requests
        assert emulator.client_resets == [CANCEL]
        assert spoken_texts(first) == ["Hello there.", " And then"]
        assert second.outcome == "ok"
        barge_in = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
        interrupted = next(f.context_id for f in down if isinstance(f, TTSStartedFrame))
        assert not audio_of(down[barge_in:], interrupted)
        check_framing(down, 24000)


@pytest.mark.timeout(60)
async def test_a_lone_text_frame_is_spoken_at_once() -> None:
    # Text outside any LLM reply gets no end of turn: its stream closes right away.
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator)
        started = asyncio.get_running_loop().time()
        down, up = await speak(tts, [TextFrame("Just this."), SleepFrame(3.0)])
        record = assert_one_complete_stream(emulator, down, up, ["Just this."])
        assert record.ended is not None
        assert record.ended - started < 2.0, "the input closed when the pipeline ended, not at once"


@pytest.mark.timeout(60)
async def test_throttled_turns_become_error_frames_and_the_next_turn_speaks() -> None:
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator)
        # Three in a row: pipecat writes a TTS service off after three silent
        # contexts, or at once for an error it deems permanent (HTTP 400).
        emulator.inject("throttling@before_headers", count=3)
        frames: list[Frame] = []
        for n in range(3):
            frames += [TTSSpeakFrame(f"Attempt {n}."), SleepFrame(0.3)]
        frames.append(TTSSpeakFrame("This one works."))
        down, up = await speak(tts, frames)

        errors = [f for f in up if isinstance(f, ErrorFrame)]
        assert len(errors) == 3
        for error in errors:
            assert isinstance(error.exception, ThrottlingException)
            assert error.category is ErrorCategory.RATE_LIMIT
            assert "ThrottlingException" in error.error
        assert tts.is_usable

        *throttled, last = emulator.requests
        assert len(throttled) == 3
        assert last.outcome == "ok"
        assert spoken_texts(last) == ["This one works."]
        assert_resampled(audio_of(down), last.audio_bytes, 24000)
        check_framing(down, 24000)


@pytest.mark.timeout(60)
async def test_a_stream_failing_mid_turn_is_one_error_and_the_rest_of_the_turn_is_dropped() -> None:
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator)
        emulator.inject("rst_stream@after_first_audio")
        frames = [*llm_turn("First sentence.", " Second", " sentence."), *llm_turn("Next", " turn.")]
        down, up = await speak(tts, frames)
        errors = [f for f in up if isinstance(f, ErrorFrame)]
        assert len(errors) == 1, [e.error for e in errors]
        assert "StreamResetError" in errors[0].error
        _failed, last = emulator.requests
        assert last.outcome == "ok"
        assert spoken_texts(last) == ["Next", " turn."]
        check_framing(down, 24000)
        assert tts.is_usable


@pytest.mark.timeout(60)
async def test_a_shared_client_stays_open_and_polly_request_ids_reach_the_log() -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}")
    try:
        async with Emulator(audio="tone") as emulator:
            client = make_client(emulator)
            async with client:
                tts = PollyStreamingTTSService(client=client, voice_id="Matthew")
                await speak(tts, [TTSSpeakFrame("Shared.")])
                (record,) = emulator.requests
                assert record.voice_id == "Matthew"
                assert any(record.request_id in line for line in lines)
                # The pipeline ended; the caller's client still works.
                audio = bytearray()
                async for chunk in client.start_speech_synthesis_stream(text="Again.", voice_id="Joanna"):
                    audio += chunk
                assert audio
    finally:
        logger.remove(sink)


@pytest.mark.timeout(60)
async def test_an_unreachable_endpoint_is_an_error_frame_not_a_hang() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tts = PollyStreamingTTSService(
        region="us-east-1", endpoint_url=f"https://127.0.0.1:{port}", credentials=(KEY, SECRET), connect_timeout=2.0
    )
    down, up = await speak(tts, [TTSSpeakFrame("Anyone there?")])
    (error,) = [f for f in up if isinstance(f, ErrorFrame)]
    assert isinstance(error.exception, ConnectError)
    assert error.category is ErrorCategory.CONNECTIVITY
    assert tts.is_usable
    assert not audio_of(down)


@pytest.mark.timeout(60)
async def test_settings_reach_polly_and_updates_apply_to_the_next_reply() -> None:
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator, language_code="en-US")
        update = TTSUpdateSettingsFrame(delta=PollyStreamingTTSService.Settings(voice="Matthew"))
        _, up = await speak(tts, [TTSSpeakFrame("First."), update, TTSSpeakFrame("Second.")])
        first, second = emulator.requests
        assert (first.voice_id, first.language_code, first.output_format) == ("Joanna", "en-US", "pcm")
        assert (second.voice_id, second.language_code) == ("Matthew", "en-US")
        assert not [f for f in up if isinstance(f, ErrorFrame)]


def test_client_and_client_options_are_exclusive() -> None:
    with pytest.raises(TypeError, match="client"):
        PollyStreamingTTSService(client=PollyStreamingClient("us-east-1"), region="us-west-2")


def test_importing_the_package_loads_no_framework() -> None:
    code = (
        "import sys, amazon_polly_streaming, amazon_polly_streaming.integrations; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('pipecat', 'livekit', 'loguru')]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_importing_without_pipecat_names_the_extra() -> None:
    # sys.modules[name] = None makes that import fail, as if not installed.
    code = "import sys; sys.modules['pipecat'] = None; import amazon_polly_streaming.integrations.pipecat"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "pip install 'amazon-polly-streaming[pipecat]'" in out.stderr


@pytest.mark.timeout(120)
def test_readme_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pipecat_agent.py")],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "first audio" in out.stdout


def test_polly_rate_for_the_pipeline_rate() -> None:
    assert polly_sample_rate(8000) == 8000
    assert [polly_sample_rate(rate) for rate in (16000, 22050, 24000, 44100, 48000)] == [16000] * 5


# ---------------------------------------------------------------- the conversation context

FIRST = "Hello! I can help with buses, trains and the ferry timetable today."
ANSWER = (
    "Sure. The number four bus leaves from the main square every ten minutes, "
    "and it stops right outside the museum. The last one leaves at eleven at night. "
    "Would you like the times of the return trip as well?"
)
AFTER = "Sorry, go ahead. What would you like to know?"


class RealTimeOutput(BaseOutputTransport):
    """An audio output that plays in real time, and notes when each reply started playing."""

    def __init__(self, rate: int) -> None:
        super().__init__(TransportParams(audio_out_enabled=True, audio_out_sample_rate=rate))
        self.reply_started: float | None = None
        self.interrupted_after: float | None = None  # seconds of the reply played at the barge-in
        self._new_reply = False

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if self._new_reply:
            self._new_reply = False
            self.reply_started = asyncio.get_running_loop().time()
        await asyncio.sleep(len(frame.audio) / 2 / frame.sample_rate)
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame) and self.reply_started is not None:
            self.interrupted_after = asyncio.get_running_loop().time() - self.reply_started
        await super().process_frame(frame, direction)

    async def push_frame(self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM) -> None:
        if isinstance(frame, TTSStartedFrame):
            self._new_reply = True
            self.reply_started = None
        await super().push_frame(frame, direction)


def tokens_of(text: str) -> list[str]:
    """An LLM's tokens: words that carry their own leading space."""
    return [word if i == 0 else " " + word for i, word in enumerate(text.split(" "))]


class Conversation:
    """pipecat's own context aggregators around the service, behind a real-time output."""

    def __init__(self, tts: PollyStreamingTTSService, rate: int = 24000) -> None:
        self.context = LLMContext()
        pair = LLMContextAggregatorPair(self.context)
        self.output = RealTimeOutput(rate)
        self.worker = PipelineWorker(
            Pipeline([pair.user(), tts, self.output, pair.assistant()]),
            cancel_on_idle_timeout=False,
            params=PipelineParams(audio_out_sample_rate=rate),
        )
        self.started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")  # type: ignore[untyped-decorator]  # unannotated in pipecat
        async def _started(_worker: Any, _frame: Any) -> None:
            self.started.set()

    def assistant_turns(self) -> list[str]:
        messages: list[Any] = list(self.context.get_messages())
        return [str(m["content"]) for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]

    async def reply(self, text: str) -> None:
        await self.worker.queue_frames(llm_turn(*tokens_of(text)))

    async def wait_for(self, condition: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - a condition on frames in flight, polled
                await asyncio.sleep(0.01)


async def converse(
    emulator: Emulator, barge_in: float | None, *, mode: TextAggregationMode = TextAggregationMode.TOKEN
) -> tuple[list[str], float | None]:
    """A first reply heard in full, then ANSWER, interrupted after ``barge_in``
    seconds of its audio played (None: before any), then AFTER.

    Returns the assistant's turns in the context, and how much of ANSWER played.
    """
    tts = make_service(emulator, text_aggregation_mode=mode)
    talk = Conversation(tts)
    runner = WorkerRunner()

    async def script() -> None:
        await asyncio.wait_for(talk.started.wait(), 10)
        await talk.reply(FIRST)
        await talk.wait_for(lambda: len(talk.assistant_turns()) == 1, 30)
        talk.output.reply_started = None
        await talk.reply(ANSWER)
        if barge_in is None:
            # The reply's stream is open; its audio comes half a second later.
            await talk.wait_for(lambda: len(emulator.requests) == 2 and emulator.requests[1].texts, 10)
        else:
            await talk.wait_for(lambda: talk.output.reply_started is not None, 10)
            await asyncio.sleep(barge_in)
        await talk.worker.queue_frame(InterruptionFrame())
        await talk.wait_for(lambda: len(talk.assistant_turns()) >= 2 or barge_in is None, 10)
        await asyncio.sleep(0.3)
        await talk.reply(AFTER)
        await talk.wait_for(lambda: AFTER in talk.assistant_turns(), 30)
        await talk.worker.queue_frame(EndFrame())

    await runner.add_workers(talk.worker)
    await asyncio.gather(runner.run(), script())
    return talk.assistant_turns(), talk.output.interrupted_after


#: Barge-in points, in seconds of ANSWER's audio played: before its first word
#: (no audio yet), mid-word ("number"), between its first two long sentences
#: (the pause after "museum."), and in its last word ("well?").
BARGE_INS = {"before the first word": None, "mid-word": 0.6, "between sentences": 5.95, "in the last word": 10.3}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", list(BARGE_INS))
async def test_an_interrupted_reply_in_the_context_holds_what_had_started_playing(point: str) -> None:
    # Speech at twice real time, after half a second (Polly's first audio comes
    # after a few hundred milliseconds, and faster than it plays).
    async with Emulator(audio="speech", real_time_factor=0.5, first_audio_delay=0.5) as emulator:
        turns, played = await converse(emulator, BARGE_INS[point])
        _, answer, after = emulator.requests[:3]
        assert after is emulator.requests[-1]
        _, starts = spoken_words(spoken_texts(answer))
        heard = "" if played is None else heard_text(ANSWER, starts, played)
        # The reply before and the reply after: exactly what the LLM wrote.
        assert turns[0] == FIRST
        assert turns[-1] == AFTER
        held = turns[1] if len(turns) == 3 else ""
        assert ANSWER.startswith(held), (held, ANSWER)
        assert heard.startswith(held), f"a word that had not started: held {held!r}, heard {heard!r}"
        lag = len(heard) - len(held)
        print(
            f"\nbarge-in {point}: played {played if played is None else round(played, 2)} s, heard {len(heard)} "
            f"characters, context holds {len(held)}: {lag} behind"
        )
        assert lag <= 40


@pytest.mark.timeout(120)
async def test_sentence_mode_keeps_the_context_exact_and_an_interrupted_reply_short() -> None:
    async with Emulator(audio="speech", real_time_factor=0.5, first_audio_delay=0.5) as emulator:
        turns, played = await converse(emulator, 3.0, mode=TextAggregationMode.SENTENCE)
        assert played is not None
        _, starts = spoken_words(spoken_texts(emulator.requests[1]))
        heard = heard_text(ANSWER, starts, played)
        first, held, after = turns
        assert (first, after) == (FIRST, AFTER)  # no doubled spaces between sentences
        assert heard.startswith(held)
        assert 0 <= len(heard) - len(held) <= 40


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", [TextAggregationMode.TOKEN, TextAggregationMode.SENTENCE])
async def test_a_japanese_reply_in_the_context_is_its_text_exactly(mode: TextAggregationMode) -> None:
    # Written without spaces: each character is a word, joined with none
    # (includes_inter_frame_spaces), as pipecat's own services mark them.
    text = "こんにちは。今日は晴れです、ね！ Polly が話します。"
    tokens = ["こんにちは。", "今日は", "晴れです、", "ね！", " Polly", " が話します。"]
    async with Emulator(audio="speech", real_time_factor=0.5) as emulator:
        tts = make_service(emulator, voice_id="Takumi", text_aggregation_mode=mode)
        talk = Conversation(tts)
        runner = WorkerRunner()

        async def script() -> None:
            await asyncio.wait_for(talk.started.wait(), 10)
            await talk.worker.queue_frames(llm_turn(*tokens))
            await talk.wait_for(lambda: len(talk.assistant_turns()) == 1, 30)
            await talk.worker.queue_frame(EndFrame())

        await runner.add_workers(talk.worker)
        await asyncio.gather(runner.run(), script())
        assert talk.assistant_turns() == [text]


@pytest.mark.timeout(60)
async def test_a_tts_speak_frame_goes_through_the_phrase_cache_and_llm_turns_do_not() -> None:
    from amazon_polly_streaming.cache import MemoryCache

    cache = MemoryCache()
    async with Emulator(audio="tone") as emulator:
        tts = make_service(emulator, cache=cache)
        phrase = "Thanks for calling. One moment, please."
        frames: list[Frame] = [
            TTSSpeakFrame(phrase),
            SleepFrame(0.5),
            TTSSpeakFrame(phrase),
            SleepFrame(0.5),
            *llm_turn(phrase),
            SleepFrame(0.5),
        ]
        down, _ = await speak(tts, frames)
        assert len(emulator.requests) == 2  # the first TTSSpeakFrame and the LLM turn
        assert all(record.outcome == "ok" for record in emulator.requests)
        contexts = [f.context_id for f in down if isinstance(f, TTSStartedFrame)]
        assert len(contexts) == 3
        first, replayed, turn = (audio_of(down, context) for context in contexts)
        assert first
        # The same PCM, resampled again: the same length (the resampler's
        # rounding may differ in the last bit where chunks meet).
        assert abs(len(replayed) - len(first)) <= 4
        assert turn
        check_framing(down, 24000)
        stats = cache.stats()
        assert (stats.hits, stats.misses) == (1, 1)
