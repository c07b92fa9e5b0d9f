"""A signed request's HTTP/2 headers: made once for the streams of one signing second, never shown."""

from __future__ import annotations

import time

import pytest

import amazon_polly_streaming._session as session_module
from support import SECRET, collect, serve

pytestmark = [pytest.mark.timeout(60), pytest.mark.all_loops]


async def test_the_streams_of_one_second_share_their_headers_and_a_new_second_signs_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [int(time.time()) + 0.25]  # held still: the emulator allows 5 minutes of skew
    monkeypatch.setattr(session_module, "wall_clock", lambda: now[0])
    async with serve(audio="tone") as (emulator, client):
        assert await collect(client)
        runtime = client._runtime()
        first = runtime.http2_headers[1]
        assert await collect(client)
        assert runtime.http2_headers[1] is first  # the same second: the same headers, encoded once
        now[0] += 1.0
        assert await collect(client)  # the emulator checks every signature: stale headers would fail here
        assert runtime.http2_headers[1] is not first
        assert [request.status for request in emulator.requests] == [200, 200, 200]
        shown = repr(runtime.http2_headers)
        assert "Signature" not in shown
        assert SECRET not in shown
