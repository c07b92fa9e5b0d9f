"""The client against the emulator over real HTTP/2 + TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.emulator import Emulator, Fault
from amazon_polly_streaming.emulator._certs import make_certificates
from amazon_polly_streaming.exceptions import (
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    EventStreamError,
    HTTPStatusError,
    IncompleteStreamError,
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
from support import KEY, SECRET, SENTENCE, collect, make_client, serve

pytestmark = [pytest.mark.timeout(60), pytest.mark.all_loops]
CANCEL = 8

# ------------------------------------------------------------------ happy path


@pytest.mark.parametrize(
    ("fmt", "rate"), [("pcm", "16000"), ("mp3", "24000"), ("ogg_vorbis", "22050"), ("mulaw", "8000")]
)
async def test_audio_arrives_whole_and_in_order(fmt: str, rate: str) -> None:
    async with serve(record_audio=True) as (emulator, client):
        audio = await collect(client, output_format=fmt, sample_rate=rate)
        record = emulator.requests[-1]
        assert record.outcome == "ok"
        assert record.audio is not None
        assert audio == bytes(record.audio)  # nothing lost, duplicated or reordered
        assert len(audio) > 1000
        assert record.output_format == fmt
        assert record.sample_rate == rate


async def test_request_is_well_formed_for_a_strict_server() -> None:
    async with serve(strict=True) as (emulator, client):
        await collect(client)
        record = emulator.requests[-1]
        assert record.status == 200
        assert record.authority == emulator.endpoint_url.removeprefix("https://")
        assert record.access_key_id == KEY
        assert record.billed_characters == len(SENTENCE)


async def test_text_longer_than_one_event_is_split() -> None:
    text = "This sentence is repeated to exceed one event. " * 200  # 9,400 characters
    async with serve(audio="tone") as (emulator, client):
        await collect(client, text=text)
        record = emulator.requests[-1]
        # At most 3,000 billed characters per TextEvent (Polly developer guide),
        # each cut at a sentence end.
        assert len(record.texts) == 4
        assert "".join(t["text"] for t in record.texts) == text
        assert max(len(t["text"]) for t in record.texts) <= 3000
        assert all(t["text"].endswith(". ") for t in record.texts)


async def test_session_reports_request_id_billing_and_timings() -> None:
    async with serve() as (emulator, client):
        async with client.open_stream(voice_id="Joanna", output_format="pcm", sample_rate="16000") as stream:
            await stream.send("Hi there.")
            await stream.close_input()
            audio = b"".join([chunk async for chunk in stream])
        assert audio
        assert stream.request_id == emulator.requests[-1].request_id
        assert stream.request_characters == len("Hi there.")
        metrics = stream.metrics
        assert metrics.audio_bytes == len(audio)
        assert metrics.time_to_first_audio is not None
        assert metrics.total_time is not None
        assert metrics.total_time >= metrics.time_to_first_audio
        assert metrics.connection_reused is False


async def test_events_view() -> None:
    from amazon_polly_streaming.events import AudioEvent, StreamClosedEvent

    async with (
        serve(audio="tone") as (_, client),
        client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as stream,
    ):
        await stream.send("Hello.")
        await stream.close_input()
        events = [event async for event in stream.events()]
    assert isinstance(events[0], AudioEvent)
    assert events[-1] == StreamClosedEvent(len("Hello."))


# ------------------------------------------------------------------ pool


async def test_idle_connection_is_reused() -> None:
    async with serve(audio="tone") as (emulator, client):
        for _ in range(3):
            await collect(client)
        assert emulator.total_connections == 1
        assert {r.connection_id for r in emulator.requests} == {1}


async def test_pool_caps_connections_and_serves_waiters_in_order() -> None:
    async with serve({"pool_size": 2}, audio="tone", real_time_factor=0.2) as (emulator, client):
        order: list[int] = []

        async def call(index: int) -> None:
            await collect(client, text=f"Caller {index} speaks now.")
            order.append(index)

        tasks = []
        for index in range(6):
            tasks.append(asyncio.create_task(call(index)))
            await asyncio.sleep(0.01)  # a definite arrival order
        await asyncio.gather(*tasks)
        assert emulator.total_connections == 2
        started = [r.texts[0]["text"] for r in emulator.requests]
        assert started == [f"Caller {i} speaks now." for i in range(6)]  # FIFO


async def test_use_pool_false_opens_and_closes_its_own_connection() -> None:
    async with serve(audio="tone") as (emulator, client):
        await collect(client)
        await collect(client, use_pool=False)
        await emulator.wait_for(lambda: emulator.open_connections == 1)
        assert emulator.total_connections == 2
        await collect(client)
        assert emulator.total_connections == 2  # the pooled one is still there


async def test_broken_connection_is_discarded() -> None:
    async with serve(audio="tone") as (emulator, client):
        await collect(client)
        emulator.inject(Fault("drop", "after_first_audio"))
        with pytest.raises(ConnectionLostError):
            await collect(client)
        await collect(client)
        assert emulator.total_connections == 2


async def test_graceful_goaway_finishes_the_stream_then_moves_on() -> None:
    async with serve(audio="tone", record_audio=True) as (emulator, client):
        emulator.inject(Fault("goaway", "after_first_audio", {"graceful": True}))
        audio = await collect(client)
        assert audio == bytes(emulator.requests[-1].audio or b"")
        await collect(client)
        assert emulator.total_connections == 2


async def test_abrupt_goaway_is_a_connection_error() -> None:
    async with serve(audio="tone") as (emulator, client):
        emulator.inject(Fault("goaway", "after_first_audio"))
        with pytest.raises(ConnectionLostError):
            await collect(client)
        await collect(client)


async def test_idle_connections_expire() -> None:
    async with serve({"idle_timeout": 0.2}, audio="tone") as (emulator, client):
        await collect(client)
        await asyncio.sleep(0.3)
        await collect(client)
        assert emulator.total_connections == 2


async def test_a_shorter_idle_timeout_of_another_client_sharing_the_pool_is_kept() -> None:
    # The idle timer sleeps until the earliest deadline and is woken only by
    # an earlier one: a client with a shorter idle_timeout returning a shared
    # connection must still see it closed on time.
    async with serve({"idle_timeout": 30.0}, audio="tone") as (emulator, patient):
        brief = make_client(emulator, idle_timeout=0.2)
        try:
            await collect(patient)  # idle until +30 s
            await asyncio.sleep(0.05)  # the timer sleeps that long
            await collect(brief)  # the same connection, now idle until +0.2 s
            assert emulator.total_connections == 1
            await emulator.wait_for(lambda: emulator.open_connections == 0, 2.0)
        finally:
            await brief.close()


async def test_a_busy_pools_timer_task_is_not_woken_by_every_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # Sequential streams lease the one connection again before the timer task
    # runs, so it always found none idle and waited to be woken: once per
    # stream, a task step, an Event and a future for nothing. It now looks
    # again after the shortest idle timeout instead, and the connection still
    # closes on time after the last stream.
    from amazon_polly_streaming._transport.pool import ConnectionPool

    wakes = 0
    poke = ConnectionPool._poke

    def counted(pool: ConnectionPool) -> None:
        nonlocal wakes
        wakes += 1
        poke(pool)

    monkeypatch.setattr(ConnectionPool, "_poke", counted)
    async with serve({"idle_timeout": 0.3}, audio="tone") as (emulator, client):
        for _ in range(6):
            await collect(client)
        assert emulator.total_connections == 1
        assert wakes <= 1  # the first connection that came back
        await emulator.wait_for(lambda: emulator.open_connections == 0, 2.0)


async def test_prewarm_opens_connections_ahead() -> None:
    async with serve({"pool_size": 3}, audio="tone") as (emulator, client):
        assert await client.prewarm(2) == 2
        await emulator.wait_for(lambda: emulator.total_connections == 2)
        async with client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as stream:
            await stream.close_input()
            _ = [c async for c in stream]
        assert stream.metrics.connection_reused is True


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("phase", ["before_headers", "after_headers", "after_first_audio"])
@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("throttling", ThrottlingException),
        ("validation", ValidationException),
        ("service_failure", ServiceFailureException),
        ("quota_exceeded", ServiceQuotaExceededException),
    ],
)
async def test_modeled_errors_arrive_typed(kind: str, cls: type[ServiceException], phase: str) -> None:
    async with serve(audio="tone") as (emulator, client):
        emulator.inject(Fault(kind, phase))
        with pytest.raises(cls) as info:
            await collect(client)
        exc = info.value
        assert type(exc) is cls
        assert not isinstance(exc, RuntimeError)
        assert exc.message
        assert exc.request_id == emulator.requests[-1].request_id
        assert exc.audio_delivered is (phase == "after_first_audio")
        if isinstance(exc, ValidationException):
            assert exc.reason == "fieldValidationFailed"
            assert exc.fields
        if isinstance(exc, ThrottlingException):
            assert exc.throttling_reasons
            assert exc.retry_safe is (phase != "after_first_audio")
        if isinstance(exc, ServiceQuotaExceededException):
            assert exc.quota_code == "input-stream-timeout"
            assert exc.service_code == "polly"
        await collect(client)  # the client is fine afterwards


async def test_fault_chosen_in_the_text() -> None:
    async with serve(audio="tone") as (_, client):
        with pytest.raises(ThrottlingException):
            await collect(client, text="{{fault:throttling@after_headers}} Hello.")


async def test_unmodeled_http_errors_are_runtime_errors() -> None:
    async with serve(audio="tone") as (emulator, client):
        emulator.inject(Fault("http_error"))
        with pytest.raises(HTTPStatusError) as info:
            await collect(client)
        assert isinstance(info.value, RuntimeError)
        assert not isinstance(info.value, ServiceException)
        assert info.value.status_code == 500
        assert info.value.error_type == "InternalFailure"


async def test_wrong_secret_and_unknown_key_are_refused() -> None:
    async with serve(audio="tone") as (emulator, _):
        bad = make_client(emulator, credentials=(KEY, "not-the-secret"))
        unknown = make_client(emulator, credentials=("AKIDUNKNOWN", SECRET))
        try:
            with pytest.raises(AuthenticationError) as info:
                await collect(bad)
            assert info.value.error_type == "InvalidSignatureException"
            assert info.value.status_code == 403
            with pytest.raises(AuthenticationError) as info:
                await collect(unknown)
            assert info.value.error_type == "UnrecognizedClientException"
            assert "not-the-secret" not in str(info.value)
        finally:
            await bad.close()
            await unknown.close()


async def test_bad_arguments_fail_before_any_io() -> None:
    async with serve() as (emulator, client):
        with pytest.raises(ValueError, match="output_format"):
            client.start_speech_synthesis_stream(text="x", voice_id="Matthew", output_format="wav")
        with pytest.raises(ValueError, match="sample_rate"):
            client.start_speech_synthesis_stream(text="x", voice_id="Matthew", output_format="pcm", sample_rate="24000")
        with pytest.raises(ValueError, match="voice_id"):
            client.start_speech_synthesis_stream(text="x", voice_id="  ")
        with pytest.raises(TypeError, match="text"):
            client.start_speech_synthesis_stream(text=42, voice_id="Matthew")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="bytes"):
            client.start_speech_synthesis_stream(text=b"hi", voice_id="Matthew")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="text_type"):
            client.start_speech_synthesis_stream(text="x", voice_id="Matthew", text_type="html")
        with pytest.raises(ValueError, match="pool_size"):
            PollyStreamingClient("us-east-1", pool_size=0)
        with pytest.raises(ValueError, match="https"):
            PollyStreamingClient("us-east-1", endpoint_url="http://127.0.0.1:1")
        assert emulator.total_connections == 0


# ------------------------------------------------------------------ never hang


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        (Fault("never_answer"), ReadTimeoutError),
        (Fault("drop", "before_headers"), ConnectionLostError),
        (Fault("drop", "after_headers"), ConnectionLostError),
        (Fault("http_error_no_end"), HTTPStatusError),
        (Fault("http_error_rst"), HTTPStatusError),
        (Fault("stall", "after_headers"), ReadTimeoutError),
        (Fault("stall", "after_first_audio"), ReadTimeoutError),
        (Fault("refuse_stream"), StreamResetError),
        (Fault("rst_stream", "after_first_audio"), StreamResetError),
    ],
    ids=str,
)
async def test_faults_end_in_a_typed_error_within_the_timeout(fault: Fault, cls: type[Exception]) -> None:
    async with serve({"read_timeout": 1.0}, audio="tone") as (emulator, client):
        emulator.inject(fault)
        started = time.monotonic()
        with pytest.raises(cls):
            await collect(client)
        assert time.monotonic() - started < 3.0
        await collect(client)  # and the next call works


async def test_refused_connection() -> None:
    async with Emulator(strict=True) as emulator:
        port = emulator.port
    client = PollyStreamingClient("us-east-1", endpoint_url=f"https://127.0.0.1:{port}", credentials=(KEY, SECRET))
    try:
        with pytest.raises(ConnectError):
            await collect(client)
    finally:
        await client.close()


async def test_waiting_for_headers_does_not_busy_poll() -> None:
    async with serve({"read_timeout": 1.5}, audio="tone") as (emulator, client):
        emulator.inject(Fault("never_answer"))
        cpu = time.process_time()
        with pytest.raises(ReadTimeoutError):
            await collect(client)
        # The wait is a timer, not a loop: the process barely ran.
        assert time.process_time() - cpu < 0.5


# ------------------------------------------------------------------ never truncate


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        (Fault("no_stream_closed"), IncompleteStreamError),
        (Fault("no_stream_closed", "after_first_audio"), IncompleteStreamError),
        (Fault("truncate"), IncompleteStreamError),
        (Fault("corrupt_crc"), EventStreamError),
        (Fault("drop", "after_first_audio"), ConnectionLostError),
        (Fault("drop", "after_close"), ConnectionLostError),
    ],
    ids=str,
)
async def test_incomplete_streams_raise(fault: Fault, cls: type[TransportError]) -> None:
    async with serve(audio="tone") as (emulator, client):
        emulator.inject(fault)
        with pytest.raises(cls) as info:
            await collect(client)
        assert isinstance(info.value, RuntimeError)
        await collect(client)


# ------------------------------------------------------------------ never leak


async def _first_chunk_then(client: PollyStreamingClient, how: str) -> None:
    stream = client.start_speech_synthesis_stream(
        text=SENTENCE * 5, voice_id="Matthew", output_format="pcm", sample_rate="16000"
    )
    if how == "break":
        async for _ in stream:
            break
        del stream  # the generator is finalized: its cleanup runs
        await asyncio.sleep(0.05)
    elif how == "aclose":
        await stream.__anext__()
        await stream.aclose()
    else:

        async def consume() -> None:
            async for _ in stream:
                await asyncio.sleep(10)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("how", ["break", "aclose", "cancel"])
async def test_stopping_early_resets_the_stream_and_frees_the_connection(how: str) -> None:
    config = {"audio": "tone", "real_time_factor": 1.0, "max_concurrent_streams": 1}
    async with serve({"pool_size": 1}, **config) as (emulator, client):
        await _first_chunk_then(client, how)
        await emulator.wait_for(lambda: CANCEL in emulator.client_resets)
        assert emulator.requests[-1].outcome == "client-reset"
        started = time.monotonic()
        await collect(client, text="Next.")
        assert time.monotonic() - started < 2.0
        assert emulator.total_connections == 1  # the same connection served the next call


async def test_close_fails_running_streams_and_leaves_nothing() -> None:
    async with serve(audio="tone", real_time_factor=1.0) as (_, client):
        task = asyncio.create_task(collect(client, text=SENTENCE * 5))
        await asyncio.sleep(0.2)
        await client.close()
        with pytest.raises(TransportError):
            await task


# ------------------------------------------------------------------ TLS


async def test_tls_failures_are_clear_transport_errors(tmp_path: Path) -> None:
    other = make_certificates(tmp_path / "other")
    wrong_host = make_certificates(tmp_path / "host", hosts=("example.invalid",))
    expired = make_certificates(tmp_path / "expired", expired=True)
    cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        ({}, {"verify": other.ca_file}, "certificate verify failed"),
        (
            {"cert_file": wrong_host.cert_file, "key_file": wrong_host.key_file, "ca_file": wrong_host.ca_file},
            {},
            "match",
        ),
        ({"cert_file": expired.cert_file, "key_file": expired.key_file, "ca_file": expired.ca_file}, {}, "expired"),
        ({"alpn": ("http/1.1",)}, {}, "HTTP/2"),
    ]
    for config, options, words in cases:
        async with Emulator(**config) as emulator:
            client = make_client(emulator, **options)
            started = time.monotonic()
            try:
                with pytest.raises(TLSError, match=words):
                    await collect(client)
            finally:
                await client.close()
            assert time.monotonic() - started < 3.0


async def test_verify_false_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="amazon_polly_streaming")
    from amazon_polly_streaming._transport.dial import tls_context

    tls_context.cache_clear()
    async with serve({"verify": False}, audio="tone") as (emulator, client):
        await collect(client)
        await collect(client)
        other = make_client(emulator, verify=False)
        await collect(other)
        await other.close()
    warnings = [r for r in caplog.records if "verification is disabled" in r.getMessage()]
    assert len(warnings) == 1


# ------------------------------------------------------------------ process-level


def test_import_is_light() -> None:
    code = (
        "import sys, amazon_polly_streaming; "
        "heavy = [m for m in ('botocore', 'asyncio', 'ssl', 'h2', 'json', 'typing') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


async def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    async with serve(audio="tone") as (emulator, _):
        client = PollyStreamingClient("us-east-1", endpoint_url=emulator.endpoint_url, verify=emulator.ca_file)
        try:
            assert await collect(client)
        finally:
            await client.close()


# ------------------------------------------------------------------ proxy


async def test_https_proxy_tunnel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through an HTTP CONNECT proxy, explicit or from HTTPS_PROXY (and bypassed by NO_PROXY)."""
    tunnels: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        tunnels.append(head.split(b"\r\n", 1)[0])
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):  # this test sets them itself
        monkeypatch.delenv(name, raising=False)
    try:
        async with serve({"proxy": proxy_url}, audio="tone") as (emulator, client):
            assert await collect(client)
            assert tunnels == [f"CONNECT 127.0.0.1:{emulator.port} HTTP/1.1".encode()]
            monkeypatch.setenv("HTTPS_PROXY", proxy_url)
            from_env = make_client(emulator)
            # A connection of its own: the first client's idle one would be shared.
            assert await collect(from_env, use_pool=False)
            await from_env.close()
            assert len(tunnels) == 2
            monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
            bypass = make_client(emulator)
            assert await collect(bypass)
            await bypass.close()
            assert len(tunnels) == 2
    finally:
        proxy.close()
        await proxy.wait_closed()


# ------------------------------------------------------------------ a second reading


async def test_a_connection_that_timed_out_is_never_lent_again() -> None:
    # A silent connection may be dead (a NAT that forgot it): the next stream
    # gets a new one instead of timing out on the same corpse again.
    async with serve({"read_timeout": 1.0}, audio="tone") as (emulator, client):
        assert await collect(client)
        emulator.inject(Fault("stall", "after_headers"))
        with pytest.raises(ReadTimeoutError):
            await collect(client)
        assert await collect(client)
        assert emulator.total_connections == 2
        assert emulator.requests[-1].connection_id != emulator.requests[-2].connection_id


async def test_prewarm_against_a_server_that_takes_no_streams_is_bounded() -> None:
    # At most one attempt per connection asked for, whatever the server says.
    async with serve(audio="tone", max_concurrent_streams=0) as (emulator, client):
        assert await client.prewarm(3) <= 3
        await asyncio.sleep(0.2)
        assert emulator.total_connections <= 3


def test_credentials_are_ascii_and_a_bad_one_is_not_echoed() -> None:
    from amazon_polly_streaming import Credentials

    with pytest.raises(ValueError, match="secret_access_key") as info:
        Credentials(KEY, "s\u00e9cret-VALUE")
    assert "VALUE" not in str(info.value)


@pytest.mark.parametrize("ending", ["break", "cancel"])
def test_asyncio_run_ending_with_a_stream_left_open_leaks_nothing(tmp_path: Path, ending: str) -> None:
    # The most common script: break out at the end of main() and never close
    # the client. asyncio.run cancels tasks, then closes the generator: the
    # connection it gives back must close with the loop, not linger.
    script = tmp_path / "script.py"
    script.write_text(
        f"""
import asyncio, gc, os, sys
from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.emulator import Emulator
from amazon_polly_streaming._transport.pool import _POOLS

running = Emulator.start_in_thread(audio="tone")
before = len(os.listdir("/proc/self/fd"))

async def consume(client):
    async for _ in client.start_speech_synthesis_stream(
        text="Hello there. " * 50, voice_id="Matthew", output_format="pcm"
    ):
        if {ending!r} == "break":
            break
        await asyncio.sleep(10)

async def main():
    client = PollyStreamingClient(
        region="us-east-1", endpoint_url=running.endpoint_url, verify=running.ca_file,
        credentials=({KEY!r}, {SECRET!r}),
    )
    if {ending!r} == "break":
        stream = client.start_speech_synthesis_stream(text="Hi there.", voice_id="Matthew", output_format="pcm")
        async for _ in stream:
            break  # the generator stays referenced: closed only by asyncio.run's shutdown
        globals()["kept"] = stream
    else:
        asyncio.get_running_loop().create_task(consume(client))
        await asyncio.sleep(0.3)

asyncio.run(main())
gc.collect()
import time
time.sleep(0.3)
fds = len(os.listdir("/proc/self/fd")) - before
print("fds", fds, "pools", len(_POOLS), "server", running.emulator.open_connections)
running.stop()
"""
    )
    out = subprocess.run(
        [sys.executable, "-X", "dev", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["fds", "0", "pools", "0", "server", "0"], out.stdout + out.stderr[-2000:]
    assert "Task was destroyed but it is pending" not in out.stderr
    assert "unclosed transport" not in out.stderr
