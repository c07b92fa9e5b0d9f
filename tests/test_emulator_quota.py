"""The emulator's account quota (``max_active_streams``): streams at once over all connections."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.cli.emulator import build_parser
from amazon_polly_streaming.emulator import Emulator, EmulatorConfig
from amazon_polly_streaming.emulator._quota import StreamQuota
from amazon_polly_streaming.exceptions import ThrottlingException
from support import collect, make_client, serve

pytestmark = [pytest.mark.timeout(60), pytest.mark.all_loops]
PCM: dict[str, Any] = {"voice_id": "Matthew", "output_format": "pcm", "sample_rate": "16000"}


@contextlib.asynccontextmanager
async def _held(client: PollyStreamingClient) -> Any:
    """A stream open on the emulator (its headers came back) until the block ends."""
    async with client.open_stream(**PCM) as stream:
        await stream.send("Hello.")
        yield stream


async def test_stream_over_the_quota_is_throttled_over_all_connections() -> None:
    async with Emulator(audio="tone", max_active_streams=2, strict=True) as emulator:
        # One client per stream: each has its own connection, and the quota counts them all.
        clients = [make_client(emulator, pool_size=1) for _ in range(3)]
        try:
            async with _held(clients[0]), _held(clients[1]):
                await emulator.wait_for(lambda: emulator.quota.active == 2)
                with pytest.raises(ThrottlingException) as info:
                    await collect(clients[2])
            # Polly's quotas page: HTTP 400 and a ThrottlingException header, before any response headers.
            assert info.value.status_code == 400
            assert info.value.throttling_reasons == [
                {"reason": "ConcurrentStreamsExceeded", "resource": "synthesisStream"}
            ]
            assert info.value.retry_safe
            assert emulator.requests[-1].outcome == "error:ThrottlingException"
            assert len({record.connection_id for record in emulator.requests}) == 3
            stats = emulator.quota.stats()
            assert (stats.admitted, stats.throttled, stats.peak, stats.limit) == (2, 1, 2, 2)
            # The held streams ended: the third client gets in now.
            await emulator.wait_for(lambda: emulator.quota.active == 0)
            assert await collect(clients[2])
        finally:
            for client in clients:
                await client.close()


async def test_a_finished_stream_frees_its_place_before_its_last_bytes_leave() -> None:
    """A client that read StreamClosedEvent and starts its next stream at once is never throttled.

    The emulator runs on a thread of its own, so that the client's next request races the end of the
    emulator's stream task (where the place used to be given back).
    """
    with Emulator.start_in_thread(EmulatorConfig(audio="tone", max_active_streams=1, strict=True)) as running:
        client = make_client(running.emulator, pool_size=1)
        try:
            for _ in range(150):
                await collect(client, text="Hi.")
        finally:
            await client.close()
        assert running.emulator.quota.stats().throttled == 0


async def test_reset_and_cancelled_streams_free_their_place_at_once() -> None:
    async with serve({"pool_size": 1}, audio="tone", real_time_factor=1.0, max_active_streams=1) as (emulator, client):
        for _ in range(20):
            # Left early: the client resets the stream, and its next request follows on the same connection,
            # often in the same read as the RST_STREAM.
            async with contextlib.aclosing(
                client.start_speech_synthesis_stream(text="A sentence that takes a while to say.", **PCM)
            ) as audio:
                async for _chunk in audio:
                    break
            async with _held(client) as stream:
                await stream.abort()
        await emulator.wait_for(lambda: emulator.quota.active == 0)
        task = asyncio.create_task(collect(client, text="A sentence that takes a while to say."))
        await emulator.wait_for(lambda: emulator.quota.active == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await collect(client, text="Hi.")
        assert emulator.quota.stats().throttled == 0
        assert [record.outcome for record in emulator.requests] == ["client-reset"] * 41 + ["ok"]


async def test_a_lost_connection_frees_its_streams_places() -> None:
    async with Emulator(audio="tone", real_time_factor=1.0, max_active_streams=2, strict=True) as emulator:
        first, second = make_client(emulator, pool_size=2), make_client(emulator, pool_size=2)
        try:
            held = [asyncio.create_task(collect(first, text="A sentence that takes a while to say.")) for _ in "ab"]
            await emulator.wait_for(lambda: emulator.quota.active == 2)
            await first.close()  # its connection goes, with both streams on it
            for task in held:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
            await emulator.wait_for(lambda: emulator.quota.active == 0)
            await asyncio.gather(collect(second, text="Hi."), collect(second, text="Hi."))
            assert emulator.quota.stats().throttled == 0
        finally:
            await first.close()
            await second.close()


def test_quota_counts_stream_seconds() -> None:
    now = [100.0]
    quota = StreamQuota(2, lambda: now[0])
    a = quota.admit()
    now[0] += 1.0
    b = quota.admit()
    assert a is not None
    assert b is not None
    assert quota.admit() is None
    now[0] += 2.0
    a.release()
    a.release()  # idempotent
    now[0] += 1.0
    stats = quota.stats()
    assert (stats.active, stats.peak, stats.admitted, stats.throttled) == (1, 2, 2, 1)
    assert stats.stream_seconds == pytest.approx(1.0 + 2 * 2.0 + 1.0)
    assert stats.at == 104.0
    assert StreamQuota(None, lambda: 0.0).admit() is not None


def test_command_line_option() -> None:
    assert build_parser().parse_args(["--max-active-streams", "26"]).max_active_streams == 26
    assert build_parser().parse_args([]).max_active_streams is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--max-active-streams", "0"])
    with pytest.raises(ValueError, match="max_active_streams"):
        EmulatorConfig(max_active_streams=0)
