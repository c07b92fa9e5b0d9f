"""The blocking helper's loop thread under faults found by trying it as a user would.

``LoopThread`` is driven directly with plain async generators (no network) where
a race between the caller's thread and the loop's must be made to happen every
time; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from amazon_polly_streaming._transport.loop_thread import LoopThread

pytestmark = pytest.mark.timeout(30)


def test_stop_racing_the_end_of_the_stream_does_not_cut_the_close_short() -> None:
    # The caller leaves (stop) while the stream is ending on its own: stop()
    # still sees it running, but by the time its cancellation reaches the loop
    # the clean-up has begun. Cancelling then interrupted the client's close:
    # 15 in 200 abandoned iter_synthesize() calls left "Task was destroyed but
    # it is pending" (the pool's watcher) and an unclosed socket behind.
    closed: list[str] = []

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield b"audio"
        # Holds the loop while the caller calls stop(): its cancellation is
        # queued behind this step, which ends the stream and begins closing.
        time.sleep(0.3)  # noqa: ASYNC251 (blocking the loop is the point)

    async def close() -> None:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            closed.append("cancelled")
            raise
        closed.append("done")

    runner = LoopThread(chunks(), close, 1 << 20)
    assert runner.get() == b"audio"
    runner.stop(5.0)
    assert closed == ["done"]
