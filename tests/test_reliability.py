"""Every fault at every phase, credentials that expire mid-run, and secrets that never show."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.credentials import REFRESH_MARGIN_SECONDS, Credentials
from amazon_polly_streaming.emulator import FAULT_KINDS, PHASES, Fault
from amazon_polly_streaming.exceptions import (
    AuthenticationError,
    ConnectionLostError,
    EventStreamError,
    HTTPStatusError,
    IncompleteStreamError,
    PollyStreamingError,
    ReadTimeoutError,
    ServiceFailureException,
    ServiceQuotaExceededException,
    StreamResetError,
    ThrottlingException,
    ValidationException,
)
from support import KEY, SECRET, collect, default_signals, serve, stop

_BY_KIND: dict[str, type[PollyStreamingError] | None] = {
    "throttling": ThrottlingException,
    "validation": ValidationException,
    "service_failure": ServiceFailureException,
    "quota_exceeded": ServiceQuotaExceededException,
    "http_error": HTTPStatusError,
    "http_error_no_end": HTTPStatusError,
    "http_error_rst": HTTPStatusError,
    "never_answer": ReadTimeoutError,
    "stall": ReadTimeoutError,
    "drop": ConnectionLostError,
    "rst_stream": StreamResetError,
    "refuse_stream": StreamResetError,
    "goaway": ConnectionLostError,
    "corrupt_crc": EventStreamError,
    "no_stream_closed": IncompleteStreamError,
    "truncate": IncompleteStreamError,
}
READ_TIMEOUT = 0.5


def _matrix() -> Iterator[Any]:
    assert set(_BY_KIND) == set(FAULT_KINDS)
    for kind in sorted(FAULT_KINDS):
        for phase in PHASES:
            for use_pool in (True, False):
                yield pytest.param(kind, phase, use_pool, id=f"{kind}@{phase}-{'pool' if use_pool else 'nopool'}")


async def _text() -> AsyncIterator[str]:
    # Input stays open for a while, so "during_input" really is during input.
    for piece in ("The first part of the text. ", "A second part. ", "The end."):
        yield piece
        await asyncio.sleep(0.05)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("kind", "phase", "use_pool"), list(_matrix()))
async def test_fault_matrix(kind: str, phase: str, use_pool: bool) -> None:
    expected = _BY_KIND[kind]
    options = {"read_timeout": READ_TIMEOUT, "connect_timeout": 2.0}
    async with serve(options, audio="tone") as (emulator, client):
        emulator.inject(Fault(kind, phase))
        started = time.monotonic()
        with pytest.raises(PollyStreamingError) as info:
            await collect(client, text=_text(), use_pool=use_pool)
        elapsed = time.monotonic() - started
        assert type(info.value) is expected or isinstance(info.value, expected)  # type: ignore[arg-type]
        # Bounded: the timeouts plus the text source's own 0.15 s.
        assert elapsed < 2 * READ_TIMEOUT + 1.0, f"took {elapsed:.2f} s"
        # The same client goes on working...
        assert await collect(client, use_pool=use_pool)
        # ...with no stream left on any of its connections.
        runtime = client._runtime()
        assert not runtime.streams
        assert all(not conn.streams for conn in runtime.pool.connections)
        await emulator.wait_for(lambda: emulator.active_streams == 0)
    # serve() checked that no task, socket or connection outlived close().


# ------------------------------------------------------------------ credentials


@pytest.mark.timeout(60)
async def test_expiring_credentials_refresh_without_failures_and_streams_keep_theirs() -> None:
    keys = [f"AKIDROTATE{i:04d}" for i in range(50)]
    issued: list[str] = []

    def provider() -> Credentials:
        key = keys[len(issued)]
        issued.append(key)
        # Valid one second past the refresh margin: each set lasts a second.
        return Credentials(key, f"secret-{key}", f"token-{key}", expiry=time.time() + REFRESH_MARGIN_SECONDS + 1.0)

    table = {key: f"secret-{key}" for key in keys}
    async with serve({"credentials": provider}, audio="tone", credentials=table) as (emulator, client):
        # A long stream signed with the first credentials...
        async with client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as long_stream:
            await long_stream.send("A stream that outlives its credentials. ")
            first_key = issued[0]
            deadline = time.monotonic() + 3.5
            while time.monotonic() < deadline:
                assert await collect(client, text="Short.")  # new streams, new credentials
                await long_stream.send("More. ")
                await asyncio.sleep(0.1)
            # ...whose key is no longer accepted for new requests: it goes on
            # with the chain it was signed with.
            del emulator.config.credentials[first_key]
            await long_stream.send("The end.")
            await long_stream.close_input()
            audio = b"".join([chunk async for chunk in long_stream])
        assert audio
        records = emulator.requests
        assert records[0].access_key_id == first_key
        assert all(record.outcome == "ok" for record in records)
        assert len(issued) >= 3  # refreshed during the run
        assert {r.access_key_id for r in records[1:]} - {first_key}


# ------------------------------------------------------------------ secrets


@pytest.mark.timeout(60)
def test_no_secret_in_logs_messages_or_reprs(tmp_path: Any) -> None:
    """A whole run at DEBUG with a session token: keys, token and signatures never appear."""
    token = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENVALUE0123456789"
    process = subprocess.Popen(
        [sys.executable, "-m", "amazon_polly_streaming.emulator", "--audio", "tone"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals(signal.SIGTERM),
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        captured = asyncio.run(_secret_run(ready, token))
    finally:
        stop(process)
    text = "\n".join(captured["texts"])
    assert "DEBUG" in text  # the run did log
    for secret in (SECRET, token, *captured["signatures"]):
        assert secret not in text, "a secret reached the logs, messages or reprs"
    assert "Signature=" not in text


async def _secret_run(ready: dict[str, Any], token: str) -> dict[str, Any]:
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.levelname} {record.name} {record.getMessage()}")

    root = logging.getLogger()
    handler = Capture(level=logging.DEBUG)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    texts: list[str] = []
    signatures: list[str] = []
    try:
        client = PollyStreamingClient(
            "us-east-1",
            endpoint_url=ready["endpoint_url"],
            verify=ready["ca_file"],
            credentials=Credentials(KEY, SECRET, token),
            read_timeout=1.0,
        )
        texts.append(repr(client))
        async with client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as stream:
            await stream.send("Hello there.")
            await stream.close_input()
            _ = [c async for c in stream]
            texts.append(repr(stream))
            signer = stream._signer
            assert signer is not None
            signatures.append(signer.last_signature.hex())
            texts.append(repr(signer))
        texts.append(repr(client._runtime().signer))
        texts.append(repr(Credentials(KEY, SECRET, token)))
        # Errors of every family, with the secret in play.
        for text in ("{{fault:throttling}} x", "{{fault:drop@after_headers}} x", "{{fault:http_error}} x"):
            with pytest.raises(PollyStreamingError) as info:
                await collect(client, text=text)
            texts += [str(info.value), repr(info.value)]
        wrong = PollyStreamingClient(
            "us-east-1",
            endpoint_url=ready["endpoint_url"],
            verify=ready["ca_file"],
            credentials=Credentials(KEY, "wrong-" + SECRET, token),
        )
        with pytest.raises(AuthenticationError) as auth:
            await collect(wrong)
        texts += [str(auth.value), repr(auth.value)]
        await wrong.close()
        await client.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    texts += records
    return {"texts": texts, "signatures": signatures}
