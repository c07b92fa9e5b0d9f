"""The reader's deadline: every wait for the server bounded by its own read timeout, one timer per connection.

A stream waits for the server a few times per response (the headers, each
burst of audio). Each wait must fail ``read_timeout`` after it began, never
earlier and never much later; the timer that enforces it belongs to the
connection and is moved along, not made and cancelled per wait or per stream. Real client, real
loopback HTTP/2+TLS against a scripted server, on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from amazon_polly_streaming.exceptions import ReadTimeoutError
from hostile_h2 import H2Peer, audio_event
from support import collect, hostile

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 0.6


@pytest.mark.all_loops
async def test_a_wait_that_begins_after_the_timer_was_set_gets_its_whole_read_timeout() -> None:
    # The stream's timer is set for its first wait (the headers). Audio comes 0.4 s later, so the next wait
    # begins while that timer still runs for 0.2 s: when it fires it must move on to the new deadline, and
    # the silence after the audio fails the stream one read timeout after it began.
    async def script(peer: H2Peer) -> None:
        stream_id = await peer.next_request()
        peer.respond(stream_id)
        await asyncio.sleep(0.4)
        peer.send_data(stream_id, audio_event(b"\x01\x02" * 100))
        await peer.wait_until(lambda: False, timeout=10)  # then nothing more

    received_at: list[float] = []

    async def read(client: Any) -> None:
        async for _ in client.start_speech_synthesis_stream(
            text="Hello.", voice_id="Matthew", output_format="pcm", sample_rate="16000"
        ):
            received_at.append(time.monotonic())

    async with hostile(script, {"read_timeout": TIMEOUT}) as (_, client):
        with pytest.raises(ReadTimeoutError):
            await read(client)
        silence = time.monotonic() - received_at[0]
    assert len(received_at) == 1
    assert TIMEOUT - 0.05 <= silence <= TIMEOUT + 0.5, f"failed {silence:.2f} s after the audio"


@pytest.mark.all_loops
async def test_each_burst_of_audio_starts_a_new_deadline() -> None:
    # Audio every 0.3 s for 2.4 s, four times the read timeout in all: no wait is ever silent for 0.6 s.
    async def script(peer: H2Peer) -> None:
        await peer.answer_in_bursts(await peer.next_request(), b"\x03\x04" * 50, bursts=8, pause=0.3)
        await peer.wait_until(lambda: False, timeout=5)

    async with hostile(script, {"read_timeout": TIMEOUT}) as (_, client):
        audio = await asyncio.wait_for(collect(client, text="Hello."), 10.0)
    assert len(audio) == 8 * 100


@pytest.mark.all_loops
async def test_an_open_input_is_probed_with_ping_and_an_unanswered_ping_fails_the_stream() -> None:
    # The text source is still open, so silence is legitimate: after one read timeout the client sends a
    # PING; a server that answers nothing (not even the PING) fails the stream one read timeout later.
    async def script(peer: H2Peer) -> None:
        peer.respond(await peer.next_request())
        await asyncio.sleep(10)  # reads nothing more, so the PING goes unanswered: a network gone dark

    async def text_never_ends() -> AsyncIterator[str]:
        yield "Hello"
        await asyncio.sleep(30)

    async with hostile(script, {"read_timeout": TIMEOUT}) as (_, client):
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError, match="no reply to PING"):
            await asyncio.wait_for(collect(client, text=text_never_ends()), 10.0)
        elapsed = time.monotonic() - started
    assert 2 * TIMEOUT - 0.05 <= elapsed <= 2 * TIMEOUT + 1.0, f"failed after {elapsed:.2f} s"


async def test_a_connection_sets_one_timer_however_many_times_its_streams_wait() -> None:
    # On asyncio's loop, whose timers can be counted through its Python API. Three streams, one after the
    # other on one pooled connection, each waiting twenty times: one timer in all (it was one per wait, then
    # one per stream), and none is left on the loop's heap once the connection closed.
    running = asyncio.get_running_loop()
    assert isinstance(running, asyncio.BaseEventLoop)
    loop: Any = running
    timers = 0
    call_at, call_later = loop.call_at, loop.call_later
    names = {"_on_read_timer", "_on_timer", "_expire"}

    def counted(schedule: Any) -> Any:
        def wrapper(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal timers
            if getattr(callback, "__name__", "") in names:
                timers += 1
            return schedule(when, callback, *args, **kwargs)

        return wrapper

    async def script(peer: H2Peer) -> None:
        for _ in range(3):  # twenty bursts each, twenty waits
            await peer.answer_in_bursts(await peer.next_request(), b"\x05\x06" * 50, bursts=20, pause=0.01)
        await peer.wait_until(lambda: False, timeout=5)

    async with hostile(script, {"read_timeout": 5.0}) as (_, client):
        loop.call_at, loop.call_later = counted(call_at), counted(call_later)
        try:
            for _ in range(3):
                audio = await asyncio.wait_for(collect(client, text="Hello."), 10.0)
                assert len(audio) == 20 * 100
        finally:
            del loop.call_at, loop.call_later
    assert timers == 1, f"{timers} timers for three streams"
    left = [h for h in loop._scheduled if not h.cancelled() and getattr(h._callback, "__name__", "") in names]
    assert not left
