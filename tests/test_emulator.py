"""The emulator as the service: request checks, signatures, text handling, limits, audio, ways to run it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming._wire.event_signer import EventSigner
from amazon_polly_streaming.emulator import Emulator
from amazon_polly_streaming.exceptions import ServiceQuotaExceededException, ValidationException
from raw_h2 import raw_request, signed_headers, text_body
from support import KEY, SECRET, collect, default_signals, make_client, serve

pytestmark = pytest.mark.timeout(60)
PROTOCOL_ERROR = 1


def _replace(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes | None) -> list[tuple[bytes, bytes]]:
    out = [(n, v) for n, v in headers if n != name]
    if value is not None:
        out.insert(4 if name.startswith(b":") else len(out), (name, value))
    return out


def _error(response: Any) -> tuple[int | None, str, dict[str, Any]]:
    return (
        response.status,
        response.headers.get(b"x-amzn-errortype", b"").decode(),
        json.loads(response.body or b"{}"),
    )


# ------------------------------------------------------------------ request checks


async def test_path_method_and_content_type() -> None:
    async with Emulator() as emulator:
        headers, signer = signed_headers(emulator)
        response = await raw_request(emulator, _replace(headers, b":path", b"/v1/speech"), text_body(signer))
        assert _error(response)[:2] == (404, "UnknownOperationException")
        headers, signer = signed_headers(emulator)
        response = await raw_request(emulator, _replace(headers, b":method", b"PUT"), text_body(signer))
        assert _error(response)[:2] == (405, "MethodNotAllowedException")
        headers, _ = signed_headers(emulator)
        # content-type is signed, so the signature check fails first for a changed one:
        # switch signature checks off to reach the content-type check.
    async with Emulator(verify_signatures=False) as emulator:
        headers, signer = signed_headers(emulator)
        response = await raw_request(
            emulator, _replace(headers, b"content-type", b"application/json"), text_body(signer)
        )
        assert _error(response)[:2] == (400, "ValidationException")
        assert response.headers[b"x-amzn-requestid"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"engine": "neural"}, "Engine"),
        ({"voice_id": "Nobody"}, "VoiceId"),
        ({"voice_id": "Kajal", "language_code": "fr-FR"}, "LanguageCode"),
        ({"language_code": "english"}, "LanguageCode"),
    ],
)
async def test_parameter_validation(params: dict[str, Any], field: str) -> None:
    async with Emulator() as emulator:
        client = make_client(emulator)
        try:
            with pytest.raises(ValidationException) as info:
                await collect(client, **params)
        finally:
            await client.close()
    assert info.value.status_code == 400
    assert info.value.reason == "fieldValidationFailed"
    assert info.value.fields[0]["name"] == field


async def test_format_and_rate_are_checked_by_the_server_too() -> None:
    async with Emulator(verify_signatures=False) as emulator:
        headers, signer = signed_headers(emulator)
        response = await raw_request(emulator, _replace(headers, b"x-amzn-samplerate", b"11025"), text_body(signer))
        assert _error(response)[0] == 400
        assert _error(response)[2]["fields"][0]["name"] == "SampleRate"
        response = await raw_request(emulator, _replace(headers, b"x-amzn-outputformat", b"flac"), text_body(signer))
        assert _error(response)[2]["fields"][0]["name"] == "OutputFormat"


async def test_monolingual_voice_ignores_the_language_code() -> None:
    async with serve(audio="tone") as (_, client):
        assert await collect(client, voice_id="Matthew", language_code="fr-FR")
        assert await collect(client, voice_id="Kajal", language_code="hi-IN")


async def test_duplicate_authority_default_versus_strict() -> None:
    for strict in (False, True):
        async with Emulator(strict=strict, audio="tone") as emulator:
            headers, signer = signed_headers(emulator)
            authority = dict(headers)[b":authority"]
            doubled = [*headers[:4], (b":authority", authority), *headers[4:]]
            response = await raw_request(emulator, doubled, text_body(signer, "Hello."))
            if strict:
                assert response.reset_code == PROTOCOL_ERROR
            else:
                assert response.status == 200
                assert response.messages()[-1].headers[":event-type"] == "StreamClosedEvent"
            missing = [h for h in headers if h[0] != b":authority"]
            response = await raw_request(emulator, missing, text_body(signer, "Hello."))
            assert (response.reset_code == PROTOCOL_ERROR) is strict


# ------------------------------------------------------------------ signatures


async def test_signature_checks() -> None:
    async with Emulator() as emulator:
        headers, signer = signed_headers(emulator, when=time.time() - 600)
        response = await raw_request(emulator, headers, text_body(signer, "Hi."))
        status, kind, body = _error(response)
        assert (status, kind) == (403, "InvalidSignatureException")
        assert "Signature expired" in body["message"]
        headers, signer = signed_headers(emulator)
        response = await raw_request(emulator, _replace(headers, b"authorization", None), text_body(signer))
        assert _error(response)[:2] == (403, "MissingAuthenticationTokenException")
        response = await raw_request(emulator, _replace(headers, b"authorization", b"AWS4-HMAC-SHA256 nonsense"))
        assert _error(response)[:2] == (403, "IncompleteSignatureException")
        # A header changed after signing breaks the signature.
        response = await raw_request(emulator, _replace(headers, b"x-amzn-voiceid", b"Joanna"), text_body(signer))
        assert _error(response)[:2] == (403, "InvalidSignatureException")


async def test_empty_payload_hash_style_is_accepted() -> None:
    from amazon_polly_streaming._wire import sigv4 as _sigv4

    async with Emulator(audio="tone") as emulator:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        authority = emulator.endpoint_url.removeprefix("https://")
        signed = [
            ("content-type", "application/vnd.amazon.eventstream"),
            ("host", authority),
            ("x-amz-date", amz_date),
            ("x-amzn-engine", "generative"),
            ("x-amzn-outputformat", "pcm"),
            ("x-amzn-samplerate", "16000"),
            ("x-amzn-voiceid", "Matthew"),
        ]
        scope = _sigv4.credential_scope(amz_date[:8], "us-east-1", "polly")
        key = _sigv4.derive_signing_key(SECRET, amz_date[:8], "us-east-1", "polly")
        auth = _sigv4.sign_request(
            method="POST",
            path="/v1/synthesisStream",
            headers=signed,
            payload_hash=_sigv4.EMPTY_SHA256,
            access_key_id=KEY,
            signing_key=key,
            scope=scope,
            amz_date=amz_date,
        )
        headers = [(b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/v1/synthesisStream")]
        headers.append((b":authority", authority.encode()))
        headers += [(n.encode(), v.encode()) for n, v in signed if n != "host"]
        headers.append((b"authorization", auth.header.encode()))
        response = await raw_request(emulator, headers, text_body(EventSigner(key, scope, auth.signature), "Hi."))
        assert response.status == 200
        assert response.messages()[-1].headers[":event-type"] == "StreamClosedEvent"


async def test_broken_event_chain_is_an_invalid_inbound_event() -> None:
    async with Emulator(audio="tone") as emulator:
        headers, signer = signed_headers(emulator)
        forged = EventSigner(signer._key, signer._scope, bytes(32))  # type: ignore[attr-defined]
        response = await raw_request(emulator, headers, text_body(forged, "Hi."))
        assert response.status == 200
        message = response.messages()[-1]
        assert message.headers[":exception-type"] == "ValidationException"
        assert json.loads(message.payload)["reason"] == "invalidInboundEvent"


async def test_bad_framing_and_events_after_close() -> None:
    async with Emulator(audio="tone") as emulator:
        headers, signer = signed_headers(emulator)
        body = bytearray(text_body(signer, "Hi."))
        body[20] ^= 0xFF
        response = await raw_request(emulator, headers, bytes(body))
        assert response.messages()[-1].headers[":exception-type"] == "ValidationException"
        headers, signer = signed_headers(emulator)
        from amazon_polly_streaming._wire.request import CLOSE_STREAM_EVENT, text_event

        now = int(time.time() * 1000)
        late = b"".join(
            signer.sign(event, now)  # type: ignore[attr-defined]
            for event in (text_event("Hi."), CLOSE_STREAM_EVENT, text_event("Too late."))
        )
        response = await raw_request(emulator, headers, late)
        last = response.messages()[-1]
        assert last.headers[":exception-type"] == "ValidationException"
        assert "after CloseStreamEvent" in json.loads(last.payload)["message"]


# ------------------------------------------------------------------ text handling


async def _audio_before_close(client: PollyStreamingClient, *sends: tuple[str, bool]) -> bool:
    async with client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as stream:
        for text, flush in sends:
            await stream.send(text, flush=flush)
        try:
            async with asyncio.timeout(1.0):
                await stream.audio().__anext__()
                early = True
        except TimeoutError:
            early = False
        await stream.abort()
    return early


async def test_natural_boundaries_and_flush() -> None:
    async with serve(audio="tone") as (_, client):
        assert await _audio_before_close(client, ("A whole sentence. And the start of", False))
        assert not await _audio_before_close(client, ("no boundary here", False))
        assert await _audio_before_close(client, ("no boundary here", True))


async def test_ssml_and_billing() -> None:
    async with serve() as (emulator, client):
        plain = await collect(client, text="Hello world")
        ssml = "<speak>Hello <break time='800ms'/> world</speak>"
        paused = await collect(client, text=ssml, text_type="ssml")
        assert len(paused) > len(plain) + 16000 * 2 * 0.5
        assert emulator.requests[-1].billed_characters == len("Hello  world")
        async with client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as stream:
            await stream.send("One. ")
            await stream.send("   ")  # a keep-alive: not billed
            await stream.send("<speak>Two.</speak>", text_type="ssml")
            await stream.close_input()
            _ = [c async for c in stream]
        assert stream.request_characters == len("One. ") + len("Two.")


# ------------------------------------------------------------------ limits


@pytest.mark.parametrize(
    ("config", "quota_code"),
    [
        ({"idle_timeout": 0.5}, "input-stream-inbound-event-timeout"),
        ({"max_stream_duration": 0.5}, "input-stream-timeout"),
    ],
)
async def test_service_limits(config: dict[str, float], quota_code: str) -> None:
    async with serve({"keepalive_interval": None}, audio="tone", **config) as (_, client):
        async with client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as stream:
            await stream.send("Hello.")
            with pytest.raises(ServiceQuotaExceededException) as info:
                _ = [c async for c in stream]
        assert info.value.quota_code == quota_code


# ------------------------------------------------------------------ audio


@pytest.mark.parametrize(("fmt", "rate"), [("mp3", "24000"), ("ogg_vorbis", "24000"), ("ogg_opus", "48000")])
async def test_compressed_audio_decodes_with_a_plausible_duration(fmt: str, rate: str) -> None:
    soundfile = pytest.importorskip("soundfile")
    text = "The quick brown fox jumps over the lazy dog, and then it runs far away."
    async with serve() as (_, client):
        audio = await collect(client, text=text, output_format=fmt, sample_rate=rate)
    data, samplerate = soundfile.read(io.BytesIO(audio))
    seconds = len(data) / samplerate
    assert 2.0 < seconds < 10.0  # fourteen words of speech
    assert abs(data).max() > 0.05  # not silence


# ------------------------------------------------------------------ ways to run it


def test_command_line_prints_one_json_line_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "amazon_polly_streaming.emulator", "--audio", "tone", "--strict"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals(signal.SIGTERM),  # the test stops it with SIGTERM
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["endpoint_url"].startswith("https://127.0.0.1:")
        assert os.path.exists(ready["ca_file"])

        async def call() -> bytes:
            client = PollyStreamingClient(
                "us-east-1", endpoint_url=ready["endpoint_url"], verify=ready["ca_file"], credentials=(KEY, SECRET)
            )
            try:
                return await collect(client)
            finally:
                await client.close()

        assert asyncio.run(call())
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_command_line_removes_its_keys_when_stopped_by_a_signal(signum: signal.Signals) -> None:
    # SIGHUP (its terminal closed) killed it outright, leaving its temporary
    # folder with the CA's and the server's private keys in /tmp.
    process = subprocess.Popen(
        [sys.executable, "-m", "amazon_polly_streaming.emulator", "--audio", "tone"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=default_signals(signal.SIGTERM, signal.SIGHUP, signal.SIGINT),
    )
    try:
        assert process.stdout is not None
        folder = os.path.dirname(json.loads(process.stdout.readline())["ca_file"])
        assert os.path.isdir(folder)
    finally:
        process.send_signal(signum)
        code = process.wait(10)
    left = os.path.exists(folder)
    shutil.rmtree(folder, ignore_errors=True)  # a failing run leaves no keys behind either
    assert code == 0
    assert not left


def test_thread_runner_serves_sync_code() -> None:
    from amazon_polly_streaming.sync import synthesize

    with Emulator.start_in_thread(audio="tone") as running:
        audio = synthesize(
            "Hello.",
            "Matthew",
            output_format="pcm",
            sample_rate="16000",
            region="us-east-1",
            endpoint_url=running.endpoint_url,
            verify=running.ca_file,
            credentials=(KEY, SECRET),
        )
        assert audio
        assert running.emulator.requests[-1].outcome == "ok"


def test_pytest_plugin_points_a_default_client_at_the_emulator(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        from amazon_polly_streaming import PollyStreamingClient

        def test_default_client(polly_env):
            async def main():
                client = PollyStreamingClient()
                try:
                    return [c async for c in client.start_speech_synthesis_stream(
                        text="Hello.", voice_id="Matthew", output_format="pcm", sample_rate="16000")]
                finally:
                    await client.close()
            assert asyncio.run(main())
            assert polly_env.emulator.requests[-1].outcome == "ok"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_client_that_goes_away_mid_stream_is_not_written_to(caplog: pytest.LogCaptureFixture) -> None:
    # The emulator notices the lost connection between two messages instead of
    # writing into the dead socket until the stream's window runs out.
    import logging

    from amazon_polly_streaming.sync import iter_synthesize
    from support import KEY, SECRET

    caplog.set_level(logging.WARNING, logger="asyncio")
    with Emulator.start_in_thread() as running:
        chunks = iter_synthesize(
            "A long text to speak. " * 20,
            "Matthew",
            region="us-east-1",
            endpoint_url=running.endpoint_url,
            verify=running.ca_file,
            credentials=(KEY, SECRET),
        )
        next(chunks)
        chunks.close()  # its event loop and connection go at once
        time.sleep(1.0)
    assert not [r for r in caplog.records if "socket.send() raised exception" in r.getMessage()]
