"""The LiveKit Agents TTS against the emulator, driven by LiveKit's own code (no LiveKit server).

Runs where livekit-agents is installed (``scripts/test`` keeps it in ``.venv-livekit``);
skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("livekit.agents")

from livekit import rtc
from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    ChatMessage,
    tts,
)
from livekit.agents.metrics import TTSMetrics
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.agents.voice import TranscriptSynchronizer
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities, TextOutput, TimedString

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.exceptions import (
    ConnectionLostError,
    HTTPStatusError,
    PollyStreamingError,
    ReadTimeoutError,
    ServiceFailureException,
    ThrottlingException,
    ValidationException,
)
from amazon_polly_streaming.integrations.livekit import TTS, _livekit_error, _PcmResampler
from support import KEY, SECRET, heard_text, serve, spoken_words

ROOT = Path(__file__).resolve().parents[2]
TOKENS = ["Sure", "!", " The", " bus", " leaves", " at", " noon", ".", " It", " is", " the", " number", " four", "."]
TEXT = "".join(TOKENS)
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5.0)
RETRY = APIConnectOptions(max_retry=2, retry_interval=0.05, timeout=5.0)


@pytest.fixture(autouse=True, scope="module")
def _livekit_native_library_loaded() -> None:
    # LiveKit's native library opens its files on first use and keeps them:
    # load it up front so the per-test leak checks count only ours.
    rtc.AudioResampler(16000, 24000).push(bytearray(320))


async def push_slowly(stream: tts.SynthesizeStream, tokens: list[str], delay: float) -> None:
    for token in tokens:
        stream.push_text(token)
        await asyncio.sleep(delay)
    stream.end_input()


def pcm_of(frames: list[rtc.AudioFrame]) -> bytes:
    return b"".join(frame.data.tobytes() for frame in frames)


async def drain(stream: tts.SynthesizeStream | tts.ChunkedStream) -> list[tts.SynthesizedAudio]:
    return [event async for event in stream]


async def speak_turn(
    polly: TTS, tokens: list[str] = TOKENS, *, conn_options: APIConnectOptions = NO_RETRY, delay: float = 0.0
) -> list[tts.SynthesizedAudio]:
    """One agent turn as LiveKit drives it: tokens pushed while the audio is read."""
    stream = polly.stream(conn_options=conn_options)
    try:
        return (await asyncio.gather(push_slowly(stream, tokens, delay), drain(stream)))[1]
    finally:
        await stream.aclose()


def errors_of(polly: TTS) -> list[tts.TTSError]:
    errors: list[tts.TTSError] = []
    polly.on("error", errors.append)
    return errors


# ------------------------------------------------------------------ streaming turns


@pytest.mark.timeout(60)
async def test_tokens_go_up_as_they_arrive_and_every_audio_byte_comes_back_in_order() -> None:
    # Odd-sized audio chunks: samples straddle Polly's events.
    async with serve(record_audio=True, audio_chunk_bytes=1001) as (emulator, client):
        polly = TTS(client=client, voice_id="Joanna")
        stream = polly.stream(conn_options=NO_RETRY)
        pusher = asyncio.create_task(push_slowly(stream, TOKENS, delay=0.1))
        events = []
        first_audio_while_pushing = None
        async for event in stream:
            if first_audio_while_pushing is None:
                first_audio_while_pushing = not pusher.done()
            events.append(event)
        await pusher
        await stream.aclose()
        await polly.aclose()

        (record,) = emulator.requests
        assert [t["text"] for t in record.texts] == TOKENS  # one TextEvent per token, no tokenizer
        assert record.outcome == "ok"
        assert record.sample_rate == "16000"
        assert first_audio_while_pushing, "audio only came after the whole text"
        frames = [e.frame for e in events]
        assert {(f.sample_rate, f.num_channels) for f in frames} == {(16000, 1)}
        assert record.audio is not None
        assert pcm_of(frames) == bytes(record.audio)  # nothing dropped, duplicated or reordered
        assert {e.request_id for e in events} == {record.request_id}  # Polly's id reaches LiveKit
        assert events[-1].is_final


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("rate", "polly_rate"), [(24000, "16000"), (48000, "16000"), (8000, "8000")])
async def test_audio_arrives_at_the_tts_rate(rate: int, polly_rate: str) -> None:
    async with serve(record_audio=True, audio_chunk_bytes=777) as (emulator, client):
        polly = TTS(client=client, sample_rate=rate)
        assert polly.sample_rate == rate
        frames = [e.frame for e in await drain(polly.synthesize(TEXT, conn_options=NO_RETRY))]
        await polly.aclose()
        (record,) = emulator.requests
        assert record.sample_rate == polly_rate
        assert {f.sample_rate for f in frames} == {rate}
        assert record.audio is not None
        # Polly's audio resampled in one piece: what LiveKit got from odd-sized chunks must match.
        whole = _PcmResampler(int(polly_rate), rate)
        assert_same_audio(pcm_of(frames), whole.push(bytes(record.audio)) + whole.flush())


def samples_of(pcm: bytes) -> list[int]:
    return [int.from_bytes(pcm[i : i + 2], "little", signed=True) for i in range(0, len(pcm), 2)]


def assert_same_audio(ours: bytes, reference: bytes) -> None:
    """Equal up to the rounding of LiveKit's resampler, which varies a little with the chunking;
    a lost or misplaced byte would turn every later sample into noise."""
    assert len(ours) == len(reference)
    assert max((abs(a - b) for a, b in zip(samples_of(ours), samples_of(reference), strict=True)), default=0) <= 4


def test_resampling_keeps_an_odd_trailing_byte_for_the_next_chunk() -> None:
    samples = [int(8000 * ((i % 50) / 25 - 1)) for i in range(16000)]
    pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)

    def run(step: int) -> bytes:
        resampler = _PcmResampler(16000, 24000)
        return b"".join(resampler.push(pcm[i : i + step]) for i in range(0, len(pcm), step)) + resampler.flush()

    whole = run(len(pcm))
    assert len(whole) == 2 * 24000
    assert_same_audio(run(333), whole)
    same_rate = _PcmResampler(16000, 16000)
    assert same_rate.push(pcm[:333]) + same_rate.push(pcm[333:]) + same_rate.flush() == pcm


@pytest.mark.timeout(60)
async def test_synthesize_is_one_polly_stream_of_the_whole_text() -> None:
    async with serve(record_audio=True) as (emulator, client):
        polly = TTS(client=client, language_code="en-US")
        async with polly.synthesize(TEXT, conn_options=NO_RETRY) as chunked:
            frame = await chunked.collect()
        await polly.aclose()
        (record,) = emulator.requests
        assert [t["text"] for t in record.texts] == [TEXT]
        assert record.language_code == "en-US"
        assert record.audio is not None
        assert frame.data.tobytes() == bytes(record.audio)


@pytest.mark.timeout(60)
async def test_metrics_carry_polly_request_id_and_connection_reuse_after_prewarm() -> None:
    async with serve() as (emulator, client):
        polly = TTS(client=client)
        collected: list[TTSMetrics] = []
        polly.on("metrics_collected", collected.append)
        polly.prewarm()
        await emulator.wait_for(lambda: emulator.total_connections == 1)
        assert polly._prewarm_task is not None
        await polly._prewarm_task
        for _ in range(2):
            await speak_turn(polly)
        await polly.aclose()

        assert emulator.total_connections == 1  # both turns on the prewarmed connection
        assert [m.request_id for m in collected] == [r.request_id for r in emulator.requests]
        for metrics in collected:
            assert metrics.streamed
            assert metrics.characters_count == len(TEXT)
            assert 0 < metrics.ttfb < metrics.duration
            assert metrics.audio_duration > 0.5
            assert metrics.connection_reused
            assert 0 <= metrics.acquire_time < 0.5
            assert metrics.metadata is not None
            assert metrics.metadata.model_provider == "Amazon Polly"


@pytest.mark.timeout(60)
async def test_a_pause_of_the_model_keeps_one_stream_alive() -> None:
    # Polly closes input idle for 5 s; here 1 s, with keep-alives every 0.3 s.
    async with serve({"keepalive_interval": 0.3}, idle_timeout=1.0) as (emulator, client):
        polly = TTS(client=client)
        stream = polly.stream(conn_options=NO_RETRY)

        async def think_then_talk() -> None:
            stream.push_text("Let me check.")
            await asyncio.sleep(2.0)
            stream.push_text(" The bus leaves at noon.")
            stream.end_input()

        await asyncio.gather(think_then_talk(), drain(stream))
        await stream.aclose()
        await polly.aclose()
        (record,) = emulator.requests
        assert record.outcome == "ok"
        texts = [t["text"] for t in record.texts]
        assert texts[0] == "Let me check."
        assert texts[-1] == " The bus leaves at noon."
        assert any(not t.strip() for t in texts[1:-1]), "no keep-alive was sent during the pause"


@pytest.mark.timeout(60)
async def test_aclose_resets_the_polly_stream_and_the_next_turn_reuses_the_connection() -> None:
    async with serve() as (emulator, client):
        polly = TTS(client=client)
        stream = polly.stream(conn_options=NO_RETRY)
        for token in TOKENS * 5:
            stream.push_text(token)  # input stays open: Polly still owes audio
        await anext(aiter(stream))
        closed_at = time.monotonic()
        await stream.aclose()
        await emulator.wait_for(lambda: bool(emulator.client_resets), 2.0)
        assert time.monotonic() - closed_at < 0.5
        assert emulator.requests[0].outcome == "client-reset"

        second = polly.synthesize("Next turn.", conn_options=NO_RETRY)
        assert (await second.collect()).duration > 0.2
        await second.aclose()
        await polly.aclose()
        first, again = emulator.requests
        assert again.connection_id == first.connection_id
        assert emulator.total_connections == 1


@pytest.mark.timeout(60)
async def test_livekits_flush_ends_the_turn() -> None:
    async with serve() as (emulator, client):
        polly = TTS(client=client)
        stream = polly.stream(conn_options=NO_RETRY)
        stream.push_text("Hello there.")
        stream.flush()  # no end_input: the flush alone closes Polly's input
        events = await asyncio.wait_for(drain(stream), 10)
        await stream.aclose()
        await polly.aclose()
        (record,) = emulator.requests
        assert [t["text"] for t in record.texts] == ["Hello there."]
        assert record.outcome == "ok"
        assert events[-1].is_final


@pytest.mark.timeout(60)
async def test_a_turn_without_text_opens_no_polly_stream() -> None:
    async with serve() as (emulator, client):
        polly = TTS(client=client)
        stream = polly.stream(conn_options=NO_RETRY)
        stream.flush()
        stream.end_input()
        assert await drain(stream) == []
        await stream.aclose()
        await polly.aclose()
        assert emulator.requests == []


# ------------------------------------------------------------------ errors and LiveKit's retry


@pytest.mark.timeout(60)
async def test_livekit_retry_after_a_throttle_resends_the_text_once() -> None:
    async with serve() as (emulator, client):
        emulator.inject("throttling@before_headers", count=1)
        polly = TTS(client=client)
        errors = errors_of(polly)
        events = await speak_turn(polly, conn_options=RETRY, delay=0.01)
        await polly.aclose()

        throttled, retried = emulator.requests
        assert throttled.status == 400
        assert throttled.outcome == "fault:throttling"
        assert "".join(t["text"] for t in retried.texts) == TEXT  # the whole turn, once
        assert retried.outcome == "ok"
        assert {e.request_id for e in events} == {retried.request_id}
        (error,) = errors
        assert error.recoverable
        assert isinstance(error.error, APIStatusError)
        assert error.error.status_code == 400
        assert error.error.request_id == throttled.request_id
        assert error.error.retryable


@pytest.mark.timeout(60)
async def test_a_failed_turn_raises_and_the_next_turn_works() -> None:
    async with serve() as (emulator, client):
        polly = TTS(client=client)
        emulator.inject("throttling@before_headers", count=1)
        with pytest.raises(APIStatusError) as caught:
            await speak_turn(polly)
        assert caught.value.retryable
        assert caught.value.request_id == emulator.requests[0].request_id

        await speak_turn(polly)
        await polly.aclose()
        assert [r.outcome for r in emulator.requests] == ["fault:throttling", "ok"]


@pytest.mark.timeout(60)
async def test_a_failure_after_audio_is_not_retried() -> None:
    async with serve() as (emulator, client):
        emulator.inject("service_failure@after_first_audio", count=1)
        polly = TTS(client=client)
        with pytest.raises(APIStatusError) as caught:
            await speak_turn(polly, conn_options=RETRY)
        await polly.aclose()
        assert not caught.value.retryable  # a retry would repeat the audio already played
        assert len(emulator.requests) == 1


@pytest.mark.timeout(60)
async def test_a_lost_connection_before_audio_is_retried_on_a_new_one() -> None:
    async with serve() as (emulator, client):
        emulator.inject("drop@after_headers", count=1)
        polly = TTS(client=client)
        errors = errors_of(polly)
        await speak_turn(polly, conn_options=RETRY)
        await polly.aclose()
        dropped, retried = emulator.requests
        assert retried.outcome == "ok"
        assert retried.connection_id != dropped.connection_id
        (error,) = errors
        assert isinstance(error.error, APIConnectionError)
        assert error.error.retryable
        assert dropped.request_id in str(error.error)  # the failed request's id, for Polly's support


@pytest.mark.timeout(60)
async def test_no_polly_stream_within_the_connect_timeout_is_an_api_timeout() -> None:
    async with serve({"pool_size": 1}) as (_emulator, client):
        polly = TTS(client=client)
        async with client.open_stream(voice_id="Joanna"):  # holds the only connection
            chunked = polly.synthesize(TEXT, conn_options=APIConnectOptions(max_retry=0, timeout=0.2))
            with pytest.raises(APITimeoutError):
                await chunked.collect()
            await chunked.aclose()
        await polly.aclose()


@pytest.mark.parametrize(
    ("error", "kind", "retryable"),
    [
        (ThrottlingException("Rate exceeded", status_code=400, request_id="r1"), APIStatusError, True),
        (ServiceFailureException("boom", status_code=500), APIStatusError, True),
        (ValidationException("bad voice", status_code=400), APIStatusError, False),
        (HTTPStatusError("forbidden", status_code=403, error_type="AccessDeniedException"), APIStatusError, False),
        (ConnectionLostError("gone"), APIConnectionError, True),
        (ReadTimeoutError("silent"), APITimeoutError, True),
    ],
)
def test_errors_become_livekits_with_our_retry_verdict(
    error: PollyStreamingError, kind: type[Exception], retryable: bool
) -> None:
    mapped = _livekit_error(error, audio_seen=False)
    assert type(mapped) is kind
    assert mapped.retryable is retryable
    if isinstance(mapped, APIStatusError):
        assert mapped.status_code == getattr(error, "status_code", None)
        assert mapped.request_id == getattr(error, "request_id", None)
    assert not _livekit_error(error, audio_seen=True).retryable
    # The stream's request id when the error has none of its own.
    with_id = _livekit_error(error, audio_seen=False, request_id="r9")
    if isinstance(with_id, APIStatusError):
        assert with_id.request_id == (getattr(error, "request_id", None) or "r9")
    else:
        assert "request id r9" in str(with_id)
    error.audio_delivered = True
    assert not _livekit_error(error, audio_seen=False).retryable


# ------------------------------------------------------------------ a whole agent


class CapturingAudioOutput(AudioOutput):
    """An agent's speaker without a room: keeps every frame, plays instantly."""

    def __init__(self) -> None:
        super().__init__(label="capture", capabilities=AudioOutputCapabilities(pause=False))
        self.frames: list[rtc.AudioFrame] = []
        self.first_frame = asyncio.Event()
        self._segment = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self.frames.append(frame)
        self._segment += frame.duration
        self.first_frame.set()

    def flush(self) -> None:
        super().flush()
        self._finish(interrupted=False)

    def clear_buffer(self) -> None:
        self._finish(interrupted=True)

    def _finish(self, *, interrupted: bool) -> None:
        if self._segment:
            played, self._segment = self._segment, 0.0
            self.on_playback_finished(playback_position=played, interrupted=interrupted)


async def llm_tokens(tokens: list[str], delay: float) -> AsyncIterator[str]:
    for token in tokens:
        await asyncio.sleep(delay)
        yield token


@pytest.mark.timeout(90)
async def test_agent_session_speaks_a_token_stream_and_is_interrupted() -> None:
    async with serve() as (emulator, client):
        polly = TTS(client=client)
        session: AgentSession[None] = AgentSession(tts=polly)
        speaker = CapturingAudioOutput()
        session.output.audio = speaker
        metrics: list[TTSMetrics] = []
        polly.on("metrics_collected", metrics.append)
        await session.start(Agent(instructions="You are a bus timetable."))
        try:
            await emulator.wait_for(lambda: emulator.total_connections == 1)  # prewarm() on start

            long_answer = TOKENS * 6
            handle = session.say(llm_tokens(long_answer, delay=0.05))
            await asyncio.wait_for(speaker.first_frame.wait(), 10)
            assert len(emulator.requests) == 1
            handle.interrupt()
            await asyncio.wait_for(handle.wait_for_playout(), 10)
            assert handle.interrupted
            await emulator.wait_for(lambda: emulator.requests[0].outcome == "client-reset", 2.0)
            assert len(emulator.requests[0].texts) < len(long_answer)  # cut while the model still talked

            reply = session.say(llm_tokens(TOKENS, delay=0.01))
            await asyncio.wait_for(reply.wait_for_playout(), 20)
            assert not reply.interrupted
        finally:
            await session.aclose()
            await polly.aclose()

        first, second = emulator.requests
        assert second.outcome == "ok"
        assert "".join(t["text"] for t in second.texts).replace(" ", "") == TEXT.replace(" ", "")
        assert second.connection_id == first.connection_id
        assert emulator.total_connections == 1
        assert {f.sample_rate for f in speaker.frames} == {16000}
        assert second.request_id in {m.request_id for m in metrics}


# ------------------------------------------------------------------ construction and packaging


async def test_options_and_the_client_it_owns() -> None:
    async with serve() as (emulator, _):
        polly = TTS(
            voice_id="Matthew",
            region="us-east-1",
            endpoint_url=emulator.endpoint_url,
            verify=emulator.ca_file,
            credentials=(KEY, SECRET),
            lexicon_names=[],
        )
        owned = polly.client
        frame = await polly.synthesize("Hi.", conn_options=NO_RETRY).collect()
        assert frame.duration > 0
        assert emulator.requests[0].voice_id == "Matthew"
        assert not emulator.requests[0].language_code  # sent only when given
        await polly.aclose()
        with pytest.raises(PollyStreamingError):
            await owned.prewarm()  # closed with the TTS
    with pytest.raises(TypeError):
        TTS(client=PollyStreamingClient(region="us-east-1"), region="us-east-1")
    with pytest.raises(ValueError, match="sample_rate"):
        TTS(client=PollyStreamingClient(region="us-east-1"), sample_rate=0)


def test_importing_the_package_loads_no_framework() -> None:
    code = (
        "import sys, amazon_polly_streaming\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('livekit', 'pipecat')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_without_livekit_the_import_error_names_the_extra() -> None:
    # As if livekit-agents were not installed: the import system refuses it.
    code = "import sys; sys.modules['livekit'] = None; import amazon_polly_streaming.integrations.livekit"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "pip install 'amazon-polly-streaming[livekit]'" in out.stderr


@pytest.mark.timeout(120)
def test_the_readme_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "livekit_agent.py")],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "first audio" in out.stdout
    assert "interrupted" in out.stdout


@pytest.mark.timeout(60)
async def test_the_aligned_transcript_is_the_text_word_by_word_behind_the_speech() -> None:
    # LiveKit's own SynthesizeStream carries our TimedStrings on its audio
    # frames; with use_tts_aligned_transcript its transcript and the chat
    # context of an interrupted turn follow them.
    text = "Sure. The number four bus leaves every ten minutes, and it stops by the museum."
    tokens = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]
    async with serve(audio="speech") as (emulator, client):
        polly = TTS(client=client, voice_id="Joanna")
        assert polly.capabilities.aligned_transcript
        events = await speak_turn(polly, tokens, delay=0.0)
        timed: list[Any] = [t for e in events for t in e.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]
        await polly.aclose()
        assert "".join(timed) == text  # each word with the space before it: the text exactly
        assert all(isinstance(t, TimedString) for t in timed)
        starts = [t.start_time for t in timed]
        assert starts == sorted(starts)
        # Never ahead of the speech: each word starts no earlier than eSpeak's word.
        (record,) = emulator.requests
        duration, truth = spoken_words([t["text"] for t in record.texts if t["text"].strip()])
        assert len(truth) == len(timed)
        for word, (_, true_start) in zip(timed, truth, strict=True):
            assert true_start <= word.start_time <= true_start + 40 * 0.065, (str(word), true_start, word.start_time)
        assert all(t.end_time == t.start_time for t in timed)  # a word counts as played once it starts
        assert timed[-1].start_time < duration + 0.3


class RealTimeAudioOutput(AudioOutput):
    """An agent's speaker that plays in real time: what a barge-in cuts is what was heard."""

    def __init__(self) -> None:
        super().__init__(label="real-time", capabilities=AudioOutputCapabilities(pause=False))
        self._queue: asyncio.Queue[rtc.AudioFrame | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._play())
        self._segment_started: float | None = None  # loop time its first frame began to play
        self._segment_length = 0.0  # seconds of it captured
        self.interrupted_after: float | None = None
        self.playing = asyncio.Event()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self._segment_length += frame.duration
        self._queue.put_nowait(frame)

    def flush(self) -> None:
        super().flush()
        self._queue.put_nowait(None)

    def clear_buffer(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        if self._segment_length:
            self.interrupted_after = self._position()
        self._finish(interrupted=True)

    def _position(self) -> float:
        if self._segment_started is None:
            return 0.0
        return min(asyncio.get_running_loop().time() - self._segment_started, self._segment_length)

    def _finish(self, *, interrupted: bool) -> None:
        if self._segment_length:
            position = self._position()
            self._segment_started, self._segment_length = None, 0.0
            self.playing.clear()
            self.on_playback_finished(playback_position=position, interrupted=interrupted)

    async def _play(self) -> None:
        while True:
            frame = await self._queue.get()
            if frame is None:
                if self._segment_started is not None:
                    await asyncio.sleep(max(0.0, self._segment_started + self._segment_length - _now()))
                self._finish(interrupted=False)
                continue
            if self._segment_started is None:
                self._segment_started = _now()
                self.playing.set()
                self.on_playback_started(created_at=time.time())
            await asyncio.sleep(frame.duration)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class CapturingTextOutput(TextOutput):
    """The agent's transcript, as a room would get it."""

    def __init__(self) -> None:
        super().__init__(label="transcript", next_in_chain=None)
        self.texts: list[str] = []

    async def capture_text(self, text: str) -> None:
        self.texts.append(text)

    def flush(self) -> None:
        pass


def _now() -> float:
    return asyncio.get_running_loop().time()


def assistant_texts(session: AgentSession[None]) -> list[str]:
    return [
        item.text_content or ""
        for item in session.history.items
        if isinstance(item, ChatMessage) and item.role == "assistant"
    ]


LONG = (
    "Sure. The number four bus leaves from the main square every ten minutes, "
    "and it stops right outside the museum. The last one leaves at eleven at night. "
    "Would you like the times of the return trip as well?"
)
GREETING = "Hello! I can help with buses, trains and the ferry timetable today."


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "barge_in",
    [None, 0.6, 5.95, 10.3],
    ids=["before the first word", "mid-word", "between sentences", "in the last word"],
)
async def test_an_interrupted_turn_in_the_chat_context_holds_what_had_started_playing(barge_in: float | None) -> None:
    async with serve(audio="speech", real_time_factor=0.5, first_audio_delay=0.5) as (emulator, client):
        polly = TTS(client=client)
        session: AgentSession[None] = AgentSession(tts=polly, use_tts_aligned_transcript=True)
        speaker = RealTimeAudioOutput()
        # As LiveKit's RoomIO does: the transcript follows the audio played.
        sync = TranscriptSynchronizer(next_in_chain_audio=speaker, next_in_chain_text=CapturingTextOutput())
        session.output.audio = sync.audio_output
        session.output.transcription = sync.text_output
        await session.start(Agent(instructions="You are a bus timetable."))
        try:
            greeting = session.say(llm_tokens(tokens_of(GREETING), delay=0.0))
            await asyncio.wait_for(greeting.wait_for_playout(), 30)
            answer = session.say(llm_tokens(tokens_of(LONG), delay=0.0))
            if barge_in is None:  # its stream is open, its audio half a second away
                await emulator.wait_for(lambda: len(emulator.requests) == 2 and bool(emulator.requests[1].texts))
            else:
                await asyncio.wait_for(speaker.playing.wait(), 10)
                await asyncio.sleep(barge_in)
            answer.interrupt()
            await asyncio.wait_for(answer.wait_for_playout(), 10)
            turns = assistant_texts(session)
        finally:
            await session.aclose()
            await sync.aclose()
            await speaker.aclose()
            await polly.aclose()
        played = speaker.interrupted_after
        _, starts = spoken_words([t["text"] for t in emulator.requests[1].texts if t["text"].strip()])
        heard = "" if played is None else heard_text(LONG, starts, played)
        assert turns[0] == GREETING  # a whole turn: exactly its text
        held = turns[1] if len(turns) > 1 else ""
        assert heard.startswith(held), f"a word that had not started: held {held!r}, heard {heard!r}"
        when = "before its audio" if played is None else f"after {played:.2f} s"
        print(f"\nLiveKit barge-in {when}: heard {len(heard)} characters, chat context holds {len(held)}")
        assert len(heard) - len(held) <= 40


def tokens_of(text: str) -> list[str]:
    return [word if i == 0 else " " + word for i, word in enumerate(text.split(" "))]


@pytest.mark.timeout(60)
async def test_say_with_a_string_goes_through_the_phrase_cache_and_streamed_turns_do_not() -> None:
    from amazon_polly_streaming.cache import MemoryCache

    cache = MemoryCache()
    async with serve({"cache": cache}, record_audio=True) as (emulator, client):
        polly = TTS(client=client)
        first = await polly.synthesize(TEXT, conn_options=NO_RETRY).collect()
        second = await polly.synthesize(TEXT, conn_options=NO_RETRY).collect()
        assert len(emulator.requests) == 1  # the second was replayed
        assert second.data.tobytes() == first.data.tobytes()
        await speak_turn(polly, [TEXT])
        await speak_turn(polly, [TEXT])
        await polly.aclose()
        assert len(emulator.requests) == 3  # each streamed turn went to Polly
        stats = cache.stats()
        assert (stats.hits, stats.misses) == (1, 1)
