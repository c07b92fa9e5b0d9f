"""Benchmark and interop driver for AWS's aws-sdk-polly[awscrt] (run in its own Python 3.12+ venv).

The client's config takes the endpoint (``endpoint_uri``). Its default
transport (aiohttp) has no HTTP/2, so the driver gives it the awscrt transport
that bidirectional streaming needs; that transport has no TLS option yet, so
its TLS context is replaced by one that trusts the emulator's CA. Credentials
come from the environment (``EnvironmentCredentialsResolver``).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import AsyncIterator
from typing import Any

from workloads import main


class Peer:
    client: Any = None
    models: Any = None

    async def start(self, args: argparse.Namespace) -> None:
        self.models = importlib.import_module("aws_sdk_polly.models")
        client_module = importlib.import_module("aws_sdk_polly.client")
        config_module = importlib.import_module("aws_sdk_polly.config")
        crt_io = importlib.import_module("awscrt.io")
        identity = importlib.import_module("smithy_aws_core.identity")
        crt_transport = importlib.import_module("smithy_http.aio.crt")

        transport = crt_transport.AWSCRTHTTPClient()
        options = crt_io.TlsContextOptions()
        options.override_default_trust_store_from_path(None, args.ca)
        transport._tls_ctx = crt_io.ClientTlsContext(options)
        config = await config_module.AsyncPollyConfig.resolve(
            endpoint_uri=args.endpoint,
            region=args.region,
            transport=transport,
            aws_credentials_identity_resolver=identity.EnvironmentCredentialsResolver(),
        )
        self.client = client_module.AsyncPollyClient(config)

    async def stream(self, text: str, args: argparse.Namespace) -> AsyncIterator[bytes]:
        m = self.models
        stream = await self.client.start_speech_synthesis_stream(
            m.StartSpeechSynthesisStreamInput(
                voice_id=args.voice, engine="generative", output_format=args.format, sample_rate=args.rate
            )
        )
        await stream.input_stream.send(m.StartSpeechSynthesisStreamActionStreamTextEvent(m.TextEvent(text=text)))
        await stream.input_stream.send(m.StartSpeechSynthesisStreamActionStreamCloseStreamEvent(m.CloseStreamEvent()))
        await stream.input_stream.close()
        _, events = await stream.await_output()
        async for event in events:
            if isinstance(event, m.StartSpeechSynthesisStreamEventStreamAudioEvent):
                yield event.value.audio_chunk
            elif not isinstance(event, m.StartSpeechSynthesisStreamEventStreamStreamClosedEvent):
                value = getattr(event, "value", None)
                if isinstance(value, BaseException):
                    raise value

    async def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            await close()


if __name__ == "__main__":
    main(Peer())
