"""Issue 11: the client used the way agents and scripts use it, one test (or a few) per item.

Each test is named after its item (``test_itemNN_...``) and runs over real
loopback HTTP/2+TLS: the emulator where it can play the part, the hostile
server of ``hostile_h2`` where a broken or malicious endpoint is needed.
Every wait is bounded; a test of a hang asserts that the call ends within a
stated time. Async tests run on asyncio and on uvloop (``all_loops``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import time
import tracemalloc
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

import amazon_polly_streaming.exceptions as exceptions_module
from amazon_polly_streaming import PollyStreamingClient, RetryPolicy
from amazon_polly_streaming.credentials import Credentials
from amazon_polly_streaming.emulator import Emulator, Fault
from amazon_polly_streaming.exceptions import (
    AdmissionTimeoutError,
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    CredentialsError,
    EventStreamError,
    HTTPStatusError,
    IncompleteStreamError,
    LimiterError,
    PollyStreamingError,
    PoolTimeoutError,
    ProtocolError,
    ReadTimeoutError,
    ServiceException,
    ServiceFailureException,
    ServiceQuotaExceededException,
    StreamResetError,
    ThrottlingException,
    TLSError,
    TransportError,
    ValidationException,
)
from hostile_h2 import (
    EVENT_STREAM,
    H2Peer,
    HostileServer,
    StallingServer,
    audio_event,
    empty_data_frames,
    exception_event,
    ping_frames,
    stream_closed_event,
)
from support import KEY, SECRET, client_for, collect, hostile, make_client, open_fds, serve, within

pytestmark = [pytest.mark.timeout(60), pytest.mark.all_loops]

PCM: dict[str, Any] = {"voice_id": "Matthew", "output_format": "pcm", "sample_rate": "16000"}
#: A session token and a proxy password that must never show (distinctive, so a hit is real).
TOKEN = "IQoJb3JpZ2luX2VjEHostileTestSessionToken0123456789"
PROXY_PASSWORD = "proxy-pw-0f9e8d7c6b5a"


# ------------------------------------------------------------------ helpers


async def eventually(predicate: Callable[[], object], timeout: float, message: str) -> None:
    """Poll until ``predicate()`` is true; an assertion failure with ``message`` after ``timeout`` s."""
    if not await within(timeout, predicate):
        raise AssertionError(message)


async def ends_within(task: asyncio.Task[Any], seconds: float, message: str) -> None:
    """Fail with ``message`` unless ``task`` is done within ``seconds`` (it is cancelled then)."""
    await asyncio.wait({task}, timeout=seconds)
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)
        raise AssertionError(message)


async def outcome(awaitable: Awaitable[Any]) -> Any:
    """The awaitable's result, or the exception it raised."""
    try:
        return await awaitable
    except Exception as exc:
        return exc


def as_generator(audio: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The call returns an async generator, though it is annotated as an iterator.

    (``contextlib.aclosing`` and ``aclose()`` need the generator type: worth
    annotating the public method so, since the README is to show aclosing.)
    """
    assert isinstance(audio, AsyncGenerator)
    return audio


# ------------------------------------------------------------------ item 1


async def _fails_after_one_chunk() -> AsyncIterator[str]:
    yield "Hello there. "
    raise ValueError("the upstream model failed")


async def _yields_a_non_str() -> AsyncIterator[str]:
    yield "Hello there. "
    yield 42  # type: ignore[misc]


async def test_item01_failed_text_source_resets_stream_and_keeps_connection() -> None:
    """Three failed sources in a row on a server allowing 2 streams per connection, then a call that works."""
    failing: list[tuple[type[Exception], Callable[[], AsyncIterator[str]]]] = [
        (ValueError, _fails_after_one_chunk),
        (TypeError, _yields_a_non_str),
        (ValueError, _fails_after_one_chunk),
    ]
    async with serve({"pool_size": 1}, audio="tone", max_concurrent_streams=2) as (emulator, client):
        for number, (expected, source) in enumerate(failing, 1):
            with pytest.raises(expected):
                await asyncio.wait_for(collect(client, text=source()), 5.0)
            await eventually(
                lambda number=number: len(emulator.client_resets) >= number,  # type: ignore[misc]
                2.0,
                f"failure {number}: the emulator got no RST_STREAM for the stream whose text source failed",
            )
        assert await asyncio.wait_for(collect(client, text="Still working."), 5.0)
        assert emulator.total_connections == 1, "the failures cost the pooled connection"


async def test_item01_send_timeout_reaches_caller_and_resets_stream() -> None:
    """The emulator never reopens its receive window: sending times out after read_timeout."""

    async def flood() -> AsyncIterator[str]:
        yield "{{audio_bytes:320}}"  # a tiny, fixed response: this test is about the request
        for index in range(20):
            yield f"Chunk {index} " + "word " * 1000  # 100 KB in all, beyond the 64 KB window

    async with serve({"pool_size": 1, "read_timeout": 1.0}, audio="tone", ack_input=False) as (emulator, client):
        with pytest.raises(ReadTimeoutError):
            await asyncio.wait_for(collect(client, text=flood()), 10.0)
        await eventually(
            lambda: emulator.client_resets, 2.0, "the emulator got no RST_STREAM for the stream whose send timed out"
        )
        await eventually(lambda: emulator.active_streams == 0, 2.0, "the emulator still serves the failed stream")


# ------------------------------------------------------------------ item 2


@pytest.mark.timeout(30)
def test_item02_client_streams_under_uvloop_run() -> None:
    """The whole client under ``uvloop.run``; the emulator runs on asyncio in its own thread."""
    uvloop = pytest.importorskip("uvloop")
    with Emulator.start_in_thread(audio="tone", strict=True) as running:
        emulator = running.emulator

        async def main() -> tuple[bytes, bytes]:
            async with asyncio.timeout(20):
                client = make_client(emulator)
                try:
                    one_call = await collect(client)
                    async with client.open_stream(**PCM) as stream:
                        await stream.send("A full duplex session.")
                        await stream.close_input()
                        session = b"".join([chunk async for chunk in stream])
                finally:
                    await client.close()
                return one_call, session

        one_call, session = uvloop.run(main())
        assert one_call
        assert session
        assert [r.outcome for r in emulator.requests] == ["ok", "ok"]


# ------------------------------------------------------------------ item 3


async def after(seconds: float, text: str) -> AsyncIterator[str]:
    """A text source (an LLM) whose first and only chunk takes ``seconds``."""
    await asyncio.sleep(seconds)
    yield text


@pytest.mark.timeout(40)
async def test_item03_request_leaves_when_the_stream_opens_so_a_slow_first_token_keeps_its_stream() -> None:
    """An LLM whose first token takes 6 s; Polly (and the emulator) close input idle for 5 s."""
    async with serve({"read_timeout": 10.0}, audio="tone") as (emulator, client):
        started = time.monotonic()
        result = await asyncio.wait_for(outcome(collect(client, text=after(6.0, "The first token."))), 20.0)
        assert emulator.requests, "the emulator never got the request"
        record = emulator.requests[-1]
        delay = record.started - started
        assert delay < 1.0, f"the request headers reached the emulator {delay:.1f} s after the call"
        assert not isinstance(result, BaseException), f"the stream was lost: {result!r}"
        assert result, "no audio"
        assert record.outcome == "ok"


@pytest.mark.timeout(40)
async def test_item03_late_first_chunk_on_a_reused_connection_is_no_read_timeout() -> None:
    async with serve({"read_timeout": 1.0}, audio="tone") as (emulator, client):
        assert await collect(client, text="Warm up.")  # the connection is now pooled and idle
        audio = await asyncio.wait_for(collect(client, text=after(2.0, "Late, but fine.")), 10.0)
        assert audio
        assert emulator.total_connections == 1
        assert emulator.requests[-1].outcome == "ok"


# ------------------------------------------------------------------ item 4


async def test_item04_text_source_ending_in_its_own_cancelled_error_fails_the_stream_at_once() -> None:
    async def upstream_cancelled() -> AsyncIterator[str]:
        yield "Hello there. "
        # The task feeding this source was cancelled; the caller was not.
        raise asyncio.CancelledError

    async with serve(audio="tone") as (emulator, client):
        call = asyncio.create_task(collect(client, text=upstream_cancelled()))
        await ends_within(call, 2.0, "the call still runs 2 s after its text source ended with CancelledError")
        assert call.cancelled() or isinstance(call.exception(), PollyStreamingError), call
        await eventually(lambda: emulator.client_resets, 2.0, "the emulator got no RST_STREAM")


# ------------------------------------------------------------------ item 5


async def test_item05_audio_in_the_same_data_frame_as_an_exception_is_delivered_first() -> None:
    first, tail = b"\x11" * 320, b"\x22" * 320

    async def script(peer: H2Peer) -> None:
        stream_id = await peer.next_request()
        peer.respond(stream_id)
        peer.send_data(stream_id, audio_event(first))
        # The tail of the audio and the exception that follows it, in one frame.
        peer.send_data(
            stream_id, audio_event(tail) + exception_event("ThrottlingException", "Rate exceeded"), end_stream=True
        )
        peer.start_reading()

    async with hostile(script) as (_, client):
        received = bytearray()

        async def consume() -> None:
            async for chunk in client.start_speech_synthesis_stream(text="Hello.", **PCM):
                received.extend(chunk)

        with pytest.raises(ThrottlingException):
            await asyncio.wait_for(consume(), 5.0)
        assert bytes(received) == first + tail, f"{len(received)} of {len(first + tail)} audio bytes delivered"


# ------------------------------------------------------------------ item 6


class HungProvider:
    """A credentials provider that blocks (a metadata endpoint that does not answer) until released."""

    def __init__(self) -> None:
        self.calls = 0
        self._release = threading.Event()
        self._returned = threading.Event()

    def __call__(self) -> Credentials:
        self.calls += 1
        self._release.wait(30)
        self._returned.set()
        return Credentials(KEY, SECRET)

    async def release(self) -> None:
        self._release.set()
        if self.calls:
            await eventually(self._returned.is_set, 5.0, "the provider did not return after its release")


async def executor_answers(within: float) -> bool:
    """The loop's default executor runs a trivial job within ``within`` seconds."""
    done, _ = await asyncio.wait({asyncio.get_running_loop().run_in_executor(None, time.monotonic)}, timeout=within)
    return bool(done)


async def test_item06_credentials_resolution_is_bounded_by_connect_timeout() -> None:
    provider = HungProvider()
    async with serve({"credentials": provider, "connect_timeout": 1.0}, audio="tone") as (_, client):
        try:
            call = asyncio.create_task(collect(client))
            await ends_within(
                call, 2.0, "the call still waits for credentials 2 s after it started (connect_timeout=1)"
            )
            assert isinstance(call.exception(), CredentialsError), repr(call.exception())
        finally:
            await provider.release()


async def test_item06_concurrent_streams_share_one_slow_credentials_resolution() -> None:
    calls: list[float] = []

    def provider() -> Credentials:
        calls.append(time.monotonic())
        time.sleep(0.5)
        return Credentials(KEY, SECRET)

    async with serve({"credentials": provider}, audio="tone") as (_, client):
        streams = asyncio.gather(*(collect(client, text=f"Stream {i}.") for i in range(20)))
        await asyncio.sleep(0.1)  # the resolution is under way
        assert await executor_answers(0.3), "the default executor is busy with credential look-ups"
        results = await asyncio.wait_for(streams, 20.0)
        assert all(results)
        assert len(calls) == 1, f"the provider ran {len(calls)} times for 20 concurrent streams"


async def test_item06_a_hung_credentials_provider_fails_concurrent_streams_and_runs_once() -> None:
    provider = HungProvider()
    async with serve({"credentials": provider, "connect_timeout": 0.5}, audio="tone") as (_, client):
        try:
            for wave in (1, 2):  # the second wave comes while the first resolution still hangs
                tasks = [asyncio.create_task(collect(client)) for _ in range(20)]
                _, pending = await asyncio.wait(tasks, timeout=2.0)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=2.0)
                assert not pending, f"wave {wave}: {len(pending)} of 20 calls still wait for credentials after 2 s"
                errors = [task.exception() for task in tasks]
                assert all(isinstance(e, CredentialsError) for e in errors), errors
            assert provider.calls == 1, f"the hung provider was started {provider.calls} times"
            assert await executor_answers(1.0), "the default executor is full of hung credential look-ups"
        finally:
            await provider.release()
        assert await asyncio.wait_for(collect(client), 5.0)  # once it answers, streams work


# ------------------------------------------------------------------ item 7

_GOOD = {
    "voice_id": "Matthew",
    "engine": "generative",
    "language_code": "en-US",
    "lexicon_names": "lexicon1",
    "sample_rate": "16000",
}


def _corrupted(good: str) -> dict[str, str]:
    return {
        "CR": good + "\r",
        "LF": good[:3] + "\n" + good[3:],
        "NUL": good + "\x00",
        "DEL": good + "\x7f",
        "space-padded": f" {good} ",
        "non-ASCII": good[:-1] + "é",
    }


@pytest.mark.parametrize("field", list(_GOOD))
async def test_item07_control_or_non_ascii_characters_in_a_parameter_are_a_value_error_before_io(field: str) -> None:
    async with serve(audio="tone") as (emulator, client):
        accepted: list[str] = []
        for name, bad in _corrupted(_GOOD[field]).items():
            options: dict[str, Any] = {**PCM, field: [bad] if field == "lexicon_names" else bad}
            for entry in ("start_speech_synthesis_stream", "open_stream"):
                try:
                    if entry == "open_stream":
                        client.open_stream(**options)
                    else:
                        client.start_speech_synthesis_stream(text="Hello.", **options)
                except ValueError:
                    continue
                accepted.append(f"{name} ({entry})")
        assert not accepted, f"{field}: accepted at the call: {', '.join(accepted)}"
        assert emulator.total_connections == 0


# ------------------------------------------------------------------ item 8


@pytest.mark.timeout(60)
def test_item08_one_client_used_from_two_event_loops_at_once() -> None:
    fds = open_fds()
    with Emulator.start_in_thread(audio="tone", strict=True) as running:
        emulator = running.emulator
        client = make_client(emulator, pool_size=2)
        barrier = threading.Barrier(2)
        results: dict[str, list[Any]] = {"A": [], "B": []}

        def worker(name: str) -> None:
            async def calls() -> None:
                async with asyncio.timeout(20):
                    for round_ in range(3):
                        texts = [f"Thread {name} round {round_} call {i}." for i in range(2)]
                        results[name] += await asyncio.gather(
                            *(collect(client, text=text) for text in texts), return_exceptions=True
                        )

            barrier.wait(10)  # both loops run their calls at the same time
            try:
                asyncio.run(calls())
            except BaseException as exc:
                results[name].append(exc)

        threads = [threading.Thread(target=worker, args=(name,)) for name in results]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads), "a thread's calls never ended"
        failures = {name: [r for r in values if isinstance(r, BaseException)] for name, values in results.items()}
        assert failures == {"A": [], "B": []}, failures
        assert all(len(values) == 6 and all(values) for values in results.values())
        connections: dict[str, set[int]] = {"A": set(), "B": set()}
        for record in emulator.requests:
            connections[record.texts[0]["text"].split()[1]].add(record.connection_id)
        assert not connections["A"] & connections["B"], f"the loops shared connections: {connections}"

        asyncio.run(client.close())
        gc.collect()
        deadline = time.monotonic() + 3.0
        while emulator.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert emulator.open_connections == 0, f"{emulator.open_connections} connections outlived close()"
    gc.collect()
    assert open_fds() <= fds, f"{open_fds() - fds} file descriptors leaked"


# ------------------------------------------------------------------ item 9


async def test_item09_concurrent_sends_on_one_session_are_serialized() -> None:
    texts = [f"Text {i:02d} " + "word " * 1000 for i in range(20)]  # 5 KB each: 100 KB fills the windows
    async with serve({"read_timeout": 2.0}, audio="tone") as (emulator, client):
        async with client.open_stream(**PCM) as stream:
            await stream.send("{{audio_bytes:320}}")  # a tiny, fixed response
            results = await asyncio.wait_for(
                asyncio.gather(*(stream.send(text) for text in texts), return_exceptions=True), 15.0
            )
            errors = [result for result in results if result is not None]
            assert not errors, f"{len(errors)} of 20 concurrent sends raised: {errors[:3]}"
            await stream.close_input()
            async with asyncio.timeout(10.0):
                audio = b"".join([chunk async for chunk in stream])
        assert audio
        # A text over 3,000 characters goes as several TextEvents; serialized
        # sends keep each text's events together, so the texts follow one
        # another whole, each once.
        received = "".join(t["text"] for t in emulator.requests[-1].texts if t["text"].strip())
        starts = sorted((received.find(text), text) for text in texts)
        duplicated = [text[:7] for text in texts if received.count(text[:8]) > 1]
        assert not duplicated, f"sent more than once: {duplicated}"
        assert all(index >= 0 for index, _ in starts), "texts missing or cut"
        assert "".join(text for _, text in starts) == received, "texts interleaved"


# ------------------------------------------------------------------ item 10


@pytest.mark.timeout(40)
async def test_item10_blocking_sync_iterator_runs_off_the_loop_and_keeps_its_stream() -> None:
    def pipe_reader() -> Iterator[str]:
        yield "Before the pause. "
        time.sleep(6.0)  # a read() on a pipe whose writer is slow
        yield "After the pause."

    lag = 0.0

    async def ticker() -> None:
        nonlocal lag
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            lag = max(lag, loop.time() - before - 0.05)

    async with serve(audio="tone") as (emulator, client):
        tick = asyncio.create_task(ticker())
        try:
            result = await asyncio.wait_for(outcome(collect(client, text=pipe_reader())), 20.0)
        finally:
            tick.cancel()
            await asyncio.wait({tick}, timeout=1.0)
        summary = f"{len(result)} audio bytes" if isinstance(result, bytes) else repr(result)
        assert lag < 0.25, f"the event loop froze for {lag:.1f} s while the text source blocked (then: {summary})"
        assert not isinstance(result, BaseException), f"the stream was lost across a 6 s block: {result!r}"
        assert result
        assert emulator.requests[-1].outcome == "ok"


# ------------------------------------------------------------------ item 11


async def test_item11_non_numeric_status_is_a_protocol_error() -> None:
    async def script(peer: H2Peer) -> None:
        stream_id = await peer.next_request()
        peer.h2.send_headers(stream_id, [(b":status", b"2oo"), (b"content-type", EVENT_STREAM)])
        peer.flush()
        peer.start_reading()

    async with hostile(script) as (_, client):
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(collect(client), 5.0)


# ------------------------------------------------------------------ item 12

_EMPTY_FRAMES = 60_000  # 540 KB on the wire
_PING_FLOOD_BYTES = 20_000_000  # an upper limit: see the test
_MEMORY_BOUND = 1_000_000
#: asyncio's TLS layer alone may hold some hundreds of KB in each direction
#: (its 256 KB read and BIO buffers) even when the client pauses at once.
_WRITE_BUFFER_BOUND = 3_000_000


@pytest.mark.timeout(60)
async def test_item12_flood_of_empty_data_frames_does_not_grow_client_memory() -> None:
    go = asyncio.Event()
    flooded = asyncio.Event()

    async def script(peer: H2Peer) -> None:
        stream_id = await peer.next_request()
        peer.respond(stream_id)
        peer.send_data(stream_id, audio_event(b"\x00" * 320))
        peer.start_reading()
        await go.wait()
        for _ in range(0, _EMPTY_FRAMES, 5000):
            peer.write_raw(empty_data_frames(stream_id, 5000))
            if not await peer.drain(2.0):
                break  # the client stopped reading (or failed the connection): nothing more gets in
        else:
            # A PING behind the flood: its ACK means the client has taken all of it in.
            peer.h2.ping(b"floodend")
            peer.flush()
            await peer.wait_until(lambda: b"floodend" in peer.pings_acked, 30.0)
        flooded.set()

    async with hostile(script) as (_, client):
        audio = as_generator(client.start_speech_synthesis_stream(text="Hello.", **PCM))
        tracemalloc.start()
        try:
            assert await asyncio.wait_for(anext(audio), 5.0)
            # From here on the caller does not read.
            baseline = tracemalloc.get_traced_memory()[0]
            go.set()
            await asyncio.wait_for(flooded.wait(), 40.0)
            grown = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()
            await audio.aclose()
        assert grown < _MEMORY_BOUND, (
            f"client memory grew by {grown / 1e6:.1f} MB for {_EMPTY_FRAMES} empty DATA frames it never handed out"
        )


def client_transports(server_port: int) -> list[Any]:
    """This process's transports connected to ``server_port``: the client's side, TLS and TCP layers.

    Found through the garbage collector, because the client does not expose
    its transports; only their public ``get_write_buffer_size()`` is used.
    """
    found = []
    for candidate in gc.get_objects():
        if "Transport" not in type(candidate).__name__ or isinstance(candidate, type):
            continue
        extra = getattr(candidate, "get_extra_info", None)
        if not callable(extra) or not callable(getattr(candidate, "get_write_buffer_size", None)):
            continue
        try:
            peer = extra("peername")
        except Exception:  # noqa: S112 - a transport of an earlier test, half torn down
            continue
        if isinstance(peer, tuple) and len(peer) >= 2 and peer[1] == server_port:
            found.append(candidate)
    return found


@pytest.mark.timeout(60)
async def test_item12_peer_that_stops_reading_while_flooding_pings_fails_the_stream_without_buffering() -> None:
    """Every PING needs an answer; the server reads none of them. The client must stop, not queue megabytes.

    The kernel absorbs the first megabytes (the client's send buffer grows up
    to tcp_wmem's maximum), so the flood goes on until the client's own write
    buffers pass the bound (a failure) or the client stops taking PINGs.
    """
    go = asyncio.Event()
    enough = asyncio.Event()
    flood_over = asyncio.Event()

    async def script(peer: H2Peer) -> None:
        stream_id = await peer.next_request()
        peer.respond(stream_id)
        await peer.drain(5.0)
        await go.wait()
        # From here on the server never reads again.
        batch = ping_frames(1000)
        for _ in range(_PING_FLOOD_BYTES // len(batch)):
            peer.write_raw(batch)
            if enough.is_set() or not await peer.drain(2.0):
                break  # the client buffered too much already, or it stopped reading: the flood is over
        flood_over.set()
        await asyncio.Event().wait()

    async def endless() -> AsyncIterator[str]:
        yield "Hello. "
        await asyncio.sleep(60)  # input stays open: the client only waits for audio

    # A small receive buffer and MSS on the server keep its kernel from absorbing megabytes.
    async with hostile(script, {"read_timeout": 1.0}, rcvbuf=4096, mss=536) as (server, client):
        call = asyncio.create_task(collect(client, text=endless()))
        try:
            await eventually(lambda: server.peers and server.peers[0].requests, 5.0, "no request arrived")
            transports = client_transports(server.port)
            assert transports, "the client's transports were not found"
            go.set()
            peak = previous = unchanged = 0
            async with asyncio.timeout(40.0):
                while unchanged < 3:  # until the flood is over and the buffers stop changing
                    await asyncio.sleep(0.1)
                    buffered = sum(transport.get_write_buffer_size() for transport in transports)
                    unchanged = unchanged + 1 if flood_over.is_set() and abs(buffered - previous) < 10_000 else 0
                    previous = buffered
                    peak = max(peak, buffered)
                    if peak > _WRITE_BUFFER_BOUND:
                        enough.set()
                        break
            assert peak <= _WRITE_BUFFER_BOUND, (
                f"the client queued over {peak / 1e6:.1f} MB of PING answers for a peer that reads nothing"
            )
            await ends_within(call, 5.0, "the call did not fail within 5 s after the flood (read_timeout=1)")
            assert isinstance(call.exception(), PollyStreamingError), repr(call.exception())
        finally:
            enough.set()
            call.cancel()
            await asyncio.wait({call}, timeout=2.0)


# ------------------------------------------------------------------ item 13


def _retry_cases() -> Iterator[Any]:
    def case(error: PollyStreamingError, name: str, *, audio: bool = False) -> Any:
        error.audio_delivered = audio
        return pytest.param(error, id=name + ("-after-audio" if audio else ""))

    for status in (429, 500, 503, 400):
        yield case(HTTPStatusError(f"HTTP {status}", status_code=status), f"HTTPStatusError-{status}")
    yield case(AuthenticationError("HTTP 403", status_code=403), "AuthenticationError-403")
    yield case(IncompleteStreamError("ended early"), "IncompleteStreamError")
    yield case(IncompleteStreamError("ended early"), "IncompleteStreamError", audio=True)
    for service in (ValidationException, ServiceQuotaExceededException, ThrottlingException, ServiceFailureException):
        yield case(service("service says no"), service.__name__)
    yield case(ThrottlingException("rate"), "ThrottlingException", audio=True)
    yield case(ServiceException("unknown", error_type="SomethingNew"), "ServiceException")
    for transport in (
        ConnectError,
        ConnectTimeoutError,
        TLSError,
        ConnectionLostError,
        ReadTimeoutError,
        ProtocolError,
        EventStreamError,
        PoolTimeoutError,
        CredentialsError,
        TransportError,
    ):
        yield case(transport("failed"), transport.__name__)
    yield case(StreamResetError("reset", error_code=2), "StreamResetError")
    yield case(AdmissionTimeoutError("LocalLimiter(6)", 30.0), "AdmissionTimeoutError")
    yield case(LimiterError("refused"), "LimiterError")


@pytest.mark.parametrize("error", list(_retry_cases()))
def test_item13_retry_policy_retries_exactly_the_retry_safe_errors(error: PollyStreamingError) -> None:
    retried = RetryPolicy(3).delay(error, 1) is not None
    assert retried == error.retry_safe, (
        f"RetryPolicy retries it: {retried}; {type(error).__name__}.retry_safe: {error.retry_safe}"
    )


def test_item13_every_error_class_is_covered() -> None:
    covered = {type(param.values[0]) for param in _retry_cases()}
    classes = {getattr(exceptions_module, name) for name in exceptions_module.__all__}
    missing = {cls.__name__ for cls in classes - covered if cls is not PollyStreamingError}
    assert not missing


async def test_item13_http_503_then_success_is_retried_and_the_audio_arrives_once() -> None:
    async with serve({"retries": 3}, audio="tone", record_audio=True) as (emulator, client):
        emulator.inject(Fault("http_error", params={"status": 503}))
        audio = await asyncio.wait_for(collect(client), 10.0)
        assert [r.status for r in emulator.requests] == [503, 200]
        answered = emulator.requests[-1].audio
        assert answered is not None
        assert audio == bytes(answered)


# ------------------------------------------------------------------ item 14


async def test_item14_stream_closed_event_without_end_stream_completes_the_call() -> None:
    audio = b"\x05" * 640

    async def script(peer: H2Peer) -> None:
        stream_id = await peer.next_request()
        peer.respond(stream_id)
        peer.send_data(stream_id, audio_event(audio))
        peer.send_data(stream_id, stream_closed_event(6))  # and then nothing: no END_STREAM
        peer.start_reading()

    async with hostile(script, {"read_timeout": 10.0}) as (server, client):
        call = asyncio.create_task(collect(client, text="Hello."))
        await ends_within(call, 2.0, "the call still waits 2 s after StreamClosedEvent (read_timeout=10)")
        assert call.result() == audio
        await eventually(lambda: server.resets, 2.0, "the client did not reset the stream the server left open")


async def test_item14_audio_after_stream_closed_event_is_a_protocol_error() -> None:
    async def script(peer: H2Peer) -> None:
        stream_id = await peer.next_request()
        peer.respond(stream_id)
        peer.send_data(
            stream_id,
            audio_event(b"\x01" * 64) + stream_closed_event(6) + audio_event(b"\x02" * 64),
            end_stream=True,
        )
        peer.start_reading()

    async with hostile(script) as (_, client):
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(collect(client, text="Hello."), 5.0)


# ------------------------------------------------------------------ item 15


def test_item15_endpoint_url_with_user_info_is_a_value_error() -> None:
    encoded = quote(SECRET, safe="")
    for url in (
        f"https://{KEY}:{encoded}@polly.us-east-1.amazonaws.com",
        "https://someone@127.0.0.1:8443",
        f"https://{KEY}:{SECRET}@polly.us-east-1.amazonaws.com",  # unencoded: the "/" in it breaks the URL
    ):
        with pytest.raises(ValueError, match="endpoint_url") as refused:
            PollyStreamingClient("us-east-1", endpoint_url=url, credentials=(KEY, SECRET))
        message = str(refused.value)
        assert SECRET not in message, "the error message shows the secret key"
        assert encoded not in message, "the error message shows the secret key"


def test_item15_endpoint_url_with_port_zero_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="endpoint_url"):
        PollyStreamingClient("us-east-1", endpoint_url="https://127.0.0.1:0", credentials=(KEY, SECRET))


@pytest.mark.parametrize(("suffix", "must_reach"), [("/custom-prefix", b"/custom-prefix"), ("/?tenant=7", b"tenant=7")])
async def test_item15_endpoint_url_path_or_query_is_refused_or_honoured(suffix: str, must_reach: bytes) -> None:
    async def script(peer: H2Peer) -> None:
        peer.start_reading()
        while True:
            await peer.answer(await peer.next_request(3600))

    async with HostileServer(script) as server:
        try:
            client = client_for(server.endpoint_url + suffix, server.ca_file)
        except ValueError:
            return  # refused: fine
        try:
            await asyncio.wait_for(outcome(collect(client)), 5.0)
        finally:
            await client.close()
        paths = [dict(headers)[b":path"] for peer in server.peers for headers in peer.requests.values()]
        assert paths, "no request arrived"
        assert must_reach in paths[0], f"endpoint_url {suffix!r} was silently dropped: the request went to {paths[0]!r}"


async def test_item15_client_state_and_repr_hold_no_secret() -> None:
    proxied = PollyStreamingClient(
        "us-east-1", credentials=(KEY, SECRET, TOKEN), proxy=f"http://user:{PROXY_PASSWORD}@127.0.0.1:9"
    )
    shown = {"before any call": repr(vars(proxied)) + repr(proxied)}
    async with serve({"credentials": (KEY, SECRET, TOKEN)}, audio="tone", session_tokens={KEY: TOKEN}) as (_, client):
        assert await collect(client)
        shown["after a call"] = repr(vars(client)) + repr(client)
    leaks = [
        f"{label} {when}"
        for when, text in shown.items()
        for label, secret in (("secret key", SECRET), ("session token", TOKEN), ("proxy password", PROXY_PASSWORD))
        if secret in text
    ]
    assert not leaks, f"vars(client) or repr(client) shows: {', '.join(leaks)}"


def _secrets_in_traceback(error: BaseException, secrets: dict[str, str]) -> list[str]:
    """What a traceback captured with locals (Sentry's default) would show, frame by frame."""
    found: list[str] = []
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        pending += [e for e in (exc.__cause__, exc.__context__) if e is not None]
        texts = {"the exception": f"{exc!s} {exc!r}"}
        tb = exc.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_filename != __file__:  # the test's own locals hold the secrets on purpose
                for name, value in frame.f_locals.items():
                    try:
                        texts[f"{frame.f_code.co_name}() local {name!r}"] = repr(value)
                    except Exception:  # noqa: S112 - a repr that fails shows nothing
                        continue
            tb = tb.tb_next
        for where, text in texts.items():
            found += [f"{label} in {where}" for label, secret in secrets.items() if secret in text]
    return found


async def test_item15_tracebacks_with_locals_from_stream_start_show_no_secret() -> None:
    wrong_secret = "wrong-" + SECRET
    secrets = {
        "secret key": SECRET,
        "wrong secret key": wrong_secret,
        "session token": TOKEN,
        "signature": "Signature=",
    }
    errors: dict[str, BaseException] = {}
    async with serve(audio="tone", session_tokens={KEY: TOKEN}) as (emulator, _):
        forbidden = client_for(emulator.endpoint_url, emulator.ca_file, credentials=(KEY, wrong_secret, TOKEN))
        untrusted = client_for(emulator.endpoint_url, True, credentials=(KEY, SECRET, TOKEN))
        throttled = client_for(emulator.endpoint_url, emulator.ca_file, credentials=(KEY, SECRET, TOKEN))
        with contextlib.closing(socket.socket()) as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        refused = client_for(f"https://127.0.0.1:{closed_port}", True, credentials=(KEY, SECRET, TOKEN))
        for name, failing, expected in (
            ("403 from a wrong secret", forbidden, AuthenticationError),
            ("TLS failure", untrusted, TLSError),
            ("connection refused", refused, ConnectError),
            ("throttling", throttled, ThrottlingException),
        ):
            if expected is ThrottlingException:
                emulator.inject(Fault("throttling", "before_headers"))
            try:
                with pytest.raises(expected) as caught:
                    await asyncio.wait_for(collect(failing), 5.0)
                errors[name] = caught.value
            finally:
                await failing.close()
    leaks = [f"{name}: {leak}" for name, error in errors.items() for leak in _secrets_in_traceback(error, secrets)]
    assert not leaks, "\n".join(leaks)


async def test_item15_traceback_of_a_stream_the_server_has_no_room_for_shows_no_secret() -> None:
    """The server lowers SETTINGS_MAX_CONCURRENT_STREAMS to 0 on the pooled connection: the next start fails."""
    no_room = asyncio.Event()

    async def script(peer: H2Peer) -> None:
        peer.start_reading()
        await peer.answer(await peer.next_request())
        assert await peer.allow_streams(0), "the client did not acknowledge the new SETTINGS"
        no_room.set()
        while True:  # any later connection is served normally
            await peer.answer(await peer.next_request(3600))

    async with hostile(script, {"credentials": (KEY, SECRET, TOKEN), "pool_size": 1}) as (_, client):
        assert await asyncio.wait_for(collect(client), 5.0)
        await asyncio.wait_for(no_room.wait(), 5.0)
        error = await asyncio.wait_for(outcome(collect(client)), 5.0)
    if not isinstance(error, BaseException):
        return  # the client found room elsewhere: nothing raised, nothing to show
    secrets = {"secret key": SECRET, "session token": TOKEN, "signature": "Signature="}
    leaks = _secrets_in_traceback(error, secrets)
    assert not leaks, f"{type(error).__name__}: " + "; ".join(leaks)


# ------------------------------------------------------------------ item 16


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Hello \ud800 there.", id="lone-surrogate"),
        pytest.param("<speak>" + "a" * 6000 + "</speak>", id="ssml-over-6000-characters"),
        pytest.param("<speak>" + "word " * 700 + "</speak>", id="ssml-over-3000-billed-characters"),
    ],
)
async def test_item16_text_that_cannot_be_sent_is_a_value_error_at_the_call(text: str) -> None:
    text_type = "ssml" if text.startswith("<speak>") else None
    async with serve(audio="tone") as (emulator, client):
        with pytest.raises(ValueError):  # noqa: PT011 - any message: the point is that the call raises it
            client.start_speech_synthesis_stream(text=text, text_type=text_type, **PCM)
        assert emulator.total_connections == 0


def test_item16_missing_verify_ca_file_is_an_error_at_construction() -> None:
    with pytest.raises((ValueError, OSError)):
        PollyStreamingClient("us-east-1", verify="/nonexistent/ca.pem", credentials=(KEY, SECRET))


def test_item16_https_proxy_url_is_a_value_error_at_construction() -> None:
    with pytest.raises(ValueError, match="proxy"):
        PollyStreamingClient("us-east-1", proxy="https://proxy.example:8443", credentials=(KEY, SECRET))


async def test_item16_close_fails_an_unpooled_stream_that_is_still_connecting() -> None:
    fds = open_fds()
    async with StallingServer() as server:
        client = client_for(server.endpoint_url, True, connect_timeout=30.0)
        call = asyncio.create_task(collect(client, use_pool=False))
        await asyncio.wait_for(server.accepted.wait(), 5.0)
        await asyncio.wait_for(client.close(), 2.0)
        await ends_within(call, 1.0, "the unpooled stream still connects 1 s after close() (connect_timeout=30)")
        assert isinstance(call.exception(), TransportError), repr(call.exception())
    await asyncio.sleep(0)
    assert open_fds() <= fds, "the connecting socket outlived close()"


# ------------------------------------------------------------------ item 17


async def test_item17_aclosing_gives_the_lease_back_at_once_after_break() -> None:
    busy = "This sentence keeps the stream busy for a while. " * 4
    async with serve({"pool_size": 1, "pool_timeout": 2.0}, audio="tone", real_time_factor=1.0) as (emulator, client):
        async with contextlib.aclosing(as_generator(client.start_speech_synthesis_stream(text=busy, **PCM))) as audio:
            async for _chunk in audio:
                break
        # ``audio`` is still referenced here; aclosing closed it, so the lease is back.
        started = time.monotonic()
        assert await collect(client, text="Next.")
        waited = time.monotonic() - started
        assert waited < 1.0, f"the next call took {waited:.1f} s: the lease came back late"
        assert emulator.client_resets, "the abandoned stream was not reset"
        assert emulator.total_connections == 1


# ------------------------------------------------------------------ item 18


@pytest.mark.timeout(60)
async def test_item18_a_client_per_call_never_closed_leaks_no_connections() -> None:
    fds = open_fds()
    async with Emulator(audio="tone", strict=True) as emulator:
        alive: list[weakref.ref[PollyStreamingClient]] = []
        try:
            for index in range(50):
                client = make_client(emulator, idle_timeout=1.0)
                assert await collect(client, text=f"Call {index}.")
                alive.append(weakref.ref(client))
                del client
            gc.collect()
            await within(2.0, lambda: emulator.open_connections <= 3)
            still_open = emulator.open_connections
            grown = open_fds() - fds
            assert still_open <= 3, f"{still_open} connections stay open after 50 unclosed clients and gc.collect()"
            assert grown < 20, f"{grown} more file descriptors after 50 unclosed clients and gc.collect()"
        finally:
            for ref in alive:
                leftover = ref()
                if leftover is not None:
                    await leftover.close()
            leftover = None
        await eventually(
            lambda: emulator.open_connections == 0, 3.0, "connections stay open past idle_timeout with no client left"
        )
    gc.collect()
    await asyncio.sleep(0)
    assert open_fds() <= fds


async def test_item18_clients_with_the_same_endpoint_share_idle_connections_but_not_limits_or_close() -> None:
    async with Emulator(audio="tone", strict=True) as emulator:
        one = make_client(emulator, pool_size=1, pool_timeout=0.5)
        two = make_client(emulator, pool_size=1, pool_timeout=0.5)
        try:
            assert await collect(one, text="First client.")
            assert await collect(two, text="Second client.")
            assert emulator.total_connections == 1, "the second client opened a connection of its own"
            async with one.open_stream(**PCM) as held:
                await held.send("Client one holds its only stream. ")
                with pytest.raises(PoolTimeoutError):  # its own cap, even with connections to share
                    async with one.open_stream(**PCM):
                        pass
                async with two.open_stream(**PCM) as other:
                    await other.send("Client two streams meanwhile. ")
                    await one.close()  # ends client one's stream, never client two's
                    await other.send("And carries on.")
                    await other.close_input()
                    async with asyncio.timeout(10.0):
                        audio = b"".join([chunk async for chunk in other])
                assert audio
                assert emulator.requests[-1].outcome == "ok"
                with pytest.raises(TransportError):  # client one's own stream did end
                    await held.send("Still there?")
        finally:
            await one.close()
            await two.close()
        await emulator.wait_for(lambda: emulator.open_connections == 0, 5.0)


async def test_item18_idle_pooled_connection_is_closed_by_a_timer() -> None:
    async with serve({"idle_timeout": 0.5}, audio="tone") as (emulator, client):
        assert await collect(client)
        assert emulator.open_connections == 1
        await eventually(
            lambda: emulator.open_connections == 0,
            1.5,
            "the idle pooled connection is still open 1.5 s after its call (idle_timeout=0.5)",
        )
