"""Full duplex: text as it is produced, audio as it is made, keep-alive, back-pressure, barge-in, retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from amazon_polly_streaming import RetryPolicy
from amazon_polly_streaming._transport.connection import STREAM_WINDOW
from amazon_polly_streaming.emulator import Fault
from amazon_polly_streaming.exceptions import ReadTimeoutError, ServiceFailureException, ThrottlingException
from support import SENTENCE, collect, serve

pytestmark = [pytest.mark.timeout(90), pytest.mark.all_loops]
CANCEL = 8


async def test_first_audio_arrives_before_the_last_text_is_sent() -> None:
    sent_last: list[float] = []

    async def llm() -> AsyncIterator[str]:
        for sentence in ["The first sentence is ready. ", "Then a second one. ", "And the last one."]:
            yield sentence
            await asyncio.sleep(0.4)  # the model is thinking
        sent_last.append(time.monotonic())

    async with serve() as (emulator, client):
        first_audio = None
        async for _ in client.start_speech_synthesis_stream(
            text=llm(), voice_id="Matthew", output_format="pcm", sample_rate="16000"
        ):
            if first_audio is None:
                first_audio = time.monotonic()
        assert first_audio is not None
        assert sent_last
        assert first_audio < sent_last[0] - 0.5  # audio flowed while text was still coming
        assert [t["text"] for t in emulator.requests[-1].texts] == [
            "The first sentence is ready. ",
            "Then a second one. ",
            "And the last one.",
        ]


async def test_sync_iterables_work_too() -> None:
    def words() -> Iterator[str]:
        yield from ["Hello ", "from ", "a ", "list."]

    async with serve(audio="tone") as (emulator, client):
        assert await collect(client, text=words())
        assert len(emulator.requests[-1].texts) == 4


async def test_a_text_source_that_pauses_twelve_seconds_keeps_its_stream() -> None:
    async def slow() -> AsyncIterator[str]:
        yield "Before the pause. "
        await asyncio.sleep(12)
        yield "After the pause."

    async with serve(audio="tone") as (emulator, client):  # Polly's 5 s idle limit
        audio = await collect(client, text=slow())
        record = emulator.requests[-1]
        assert record.outcome == "ok"
        assert audio
        keepalives = [t for t in record.texts if not t["text"].strip()]
        assert 3 <= len(keepalives) <= 5  # every 3 s of silence
        assert record.billed_characters == len("Before the pause. After the pause.")


async def test_keepalive_can_be_turned_off() -> None:
    from amazon_polly_streaming.exceptions import ServiceQuotaExceededException

    async def slow() -> AsyncIterator[str]:
        yield "Hello. "
        await asyncio.sleep(1.0)
        yield "Bye."

    async with serve({"keepalive_interval": None}, audio="tone", idle_timeout=0.5) as (_, client):
        with pytest.raises(ServiceQuotaExceededException):
            await collect(client, text=slow())


async def test_slow_consumer_applies_back_pressure() -> None:
    size = 12 * 1024 * 1024
    async with serve(audio="tone") as (emulator, client):
        received = 0
        worst = 0
        async for chunk in client.start_speech_synthesis_stream(
            text=f"{{{{audio_bytes:{size}}}}} A long reading.",
            voice_id="Matthew",
            output_format="pcm",
            sample_rate="16000",
        ):
            received += len(chunk)
            # What the server produced but the consumer has not taken is
            # bounded by the HTTP/2 window, not by the length of the stream.
            worst = max(worst, emulator.requests[-1].audio_bytes - received)
            if received < 3 * 1024 * 1024:
                await asyncio.sleep(0.002)  # a slow reader
        assert received == size
        assert worst <= STREAM_WINDOW + 64 * 1024


async def test_a_fast_text_producer_cannot_queue_without_bound() -> None:
    pulled = 0

    async def endless() -> AsyncIterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield "x" * 1000

    # The server takes no request data: the client's send window stays shut.
    async with serve({"read_timeout": 1.0}, audio="tone", ack_input=False) as (_, client):
        with pytest.raises(ReadTimeoutError, match="flow control"):
            await collect(client, text=endless())
    assert pulled < 100  # about one 64 KiB window of text, then it waited


async def test_barge_in_frees_the_connection_for_the_next_call_at_once() -> None:
    closed: list[bool] = []

    async def tokens() -> AsyncIterator[str]:
        try:
            for _ in range(100):
                yield "Words keep coming. "
                await asyncio.sleep(0.05)
        finally:
            closed.append(True)

    async with serve({"pool_size": 1}, audio="tone", real_time_factor=1.0, max_concurrent_streams=1) as (
        emulator,
        client,
    ):
        got_audio = asyncio.Event()

        async def speak() -> None:
            async for _ in client.start_speech_synthesis_stream(
                text=tokens(), voice_id="Matthew", output_format="pcm", sample_rate="16000"
            ):
                got_audio.set()

        task = asyncio.create_task(speak())
        await got_audio.wait()
        task.cancel()  # the user started talking
        cancelled_at = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as stream:
            await stream.send("Yes?")
            await stream.close_input()
            first = await stream.audio().__anext__()
            next_audio_after = time.monotonic() - cancelled_at
            await stream.abort()
        assert first
        assert closed == [True]  # the text iterator was closed
        assert CANCEL in emulator.client_resets
        assert stream.metrics.connection_reused
        assert emulator.total_connections == 1
        assert next_audio_after < 0.5


async def test_retries_before_audio_never_duplicate_it() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.01)
    async with serve({"retries": policy}, audio="tone", record_audio=True) as (emulator, client):
        emulator.inject(Fault("throttling", "before_headers"), count=2)
        audio = await collect(client)
        assert [r.outcome for r in emulator.requests] == ["fault:throttling", "fault:throttling", "ok"]
        assert audio == bytes(emulator.requests[-1].audio or b"")
        # After audio reached the caller, the error is raised, not retried.
        emulator.inject(Fault("service_failure", "after_first_audio"))
        before = len(emulator.requests)
        received = bytearray()

        async def consume() -> None:
            async for chunk in client.start_speech_synthesis_stream(
                text=SENTENCE, voice_id="Matthew", output_format="pcm", sample_rate="16000"
            ):
                received.extend(chunk)

        with pytest.raises(ServiceFailureException, match="internal error") as info:
            await consume()
        assert info.value.audio_delivered
        assert len(emulator.requests) == before + 1
        assert bytes(received) == bytes(emulator.requests[-1].audio or b"")


async def test_retries_are_off_by_default() -> None:
    async with serve(audio="tone") as (emulator, client):
        emulator.inject(Fault("throttling", "before_headers"))
        with pytest.raises(ThrottlingException):
            await collect(client)
        assert len(emulator.requests) == 1


# ------------------------------------------------------------------ the date line


async def test_a_stream_that_crosses_midnight_utc_keeps_a_valid_event_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    # Client and emulator share a clock that reaches 00:00 UTC while the stream
    # is open. AWS's SDKs sign each envelope with the key and scope of its own
    # date; the emulator verifies exactly that, as the service must.
    import calendar

    from amazon_polly_streaming import _session

    midnight = calendar.timegm((2026, 3, 20, 0, 0, 0, 0, 0, 0))
    offset = midnight - 0.4 - time.time()

    def clock() -> float:
        return time.time() + offset

    monkeypatch.setattr(_session, "wall_clock", clock)
    async with serve(audio="tone", clock=clock) as (emulator, client):
        async with client.open_stream(voice_id="Matthew", output_format="pcm") as stream:
            await stream.send("Before midnight. ")
            await asyncio.sleep(max(0.0, midnight + 0.2 - clock()))
            assert clock() > midnight
            await stream.send("After midnight.")
            await stream.close_input()
            audio = b"".join([chunk async for chunk in stream])
        record = emulator.requests[-1]
        assert audio
        assert record.outcome == "ok"
        assert [t["text"] for t in record.texts] == ["Before midnight. ", "After midnight."]


# ------------------------------------------------------------------ after the end


async def test_reading_an_aborted_or_left_session_says_so() -> None:
    from amazon_polly_streaming.exceptions import TransportError

    async with serve(audio="tone") as (_, client):
        async with client.open_stream(voice_id="Matthew", output_format="pcm") as stream:
            await stream.send("Hello there.")
            await stream.abort()
            with pytest.raises(TransportError, match="aborted"):
                _ = [chunk async for chunk in stream]
            with pytest.raises(TransportError, match="aborted"):
                await stream.send("more")
        async with client.open_stream(voice_id="Matthew", output_format="pcm") as left:
            await left.send("Hello there.")
        with pytest.raises(TransportError, match="async with block was left"):
            _ = [chunk async for chunk in left]


async def test_abort_from_another_task_wakes_its_reader_at_once() -> None:
    # Barge-in as frameworks do it: one task reads, another aborts.
    from amazon_polly_streaming.exceptions import TransportError

    async with serve({"read_timeout": 5.0}, audio="tone") as (emulator, client):
        async with client.open_stream(voice_id="Matthew", output_format="pcm") as stream:
            await stream.send("{{audio_bytes:640}} Hello there.", flush=True)

            async def read() -> int:
                return sum([len(chunk) async for chunk in stream])

            reader = asyncio.create_task(read())
            await asyncio.sleep(0.3)  # the reader has the audio and waits for more (input is open)
            started = time.monotonic()
            await stream.abort()
            with pytest.raises(TransportError, match="aborted"):
                await asyncio.wait_for(reader, 2.0)
            assert time.monotonic() - started < 0.5
        await emulator.wait_for(lambda: CANCEL in emulator.client_resets)


async def test_a_failed_text_source_resets_the_stream_at_once_even_while_the_reader_is_slow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The server must stop synthesizing (and billing) when the source fails,
    # not when the consumer gets round to reading; no keep-alive goes up a
    # failed stream, and none fails in a loop callback.
    import logging

    caplog.set_level(logging.ERROR, logger="asyncio")

    async def source() -> AsyncIterator[str]:
        yield "Hello there. "
        await asyncio.sleep(0.2)
        raise ValueError("the model broke")

    async with serve({"keepalive_interval": 0.1}, audio="tone", real_time_factor=1.0) as (emulator, client):
        resets_while_asleep: list[int] = []

        async def consume() -> None:
            async for _ in client.start_speech_synthesis_stream(text=source(), voice_id="Matthew", output_format="pcm"):
                if not resets_while_asleep:
                    await asyncio.sleep(1.0)  # a slow consumer
                    resets_while_asleep.extend(emulator.client_resets or [0])

        with pytest.raises(ValueError, match="the model broke"):
            await consume()
        assert resets_while_asleep == [CANCEL]  # the server heard of it while the consumer slept
        assert not [r for r in caplog.records if "Exception in callback" in r.getMessage()]
