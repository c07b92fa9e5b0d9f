"""Benchmark and interop driver for AWS's aws-sdk-polly[awscrt] (run in its own Python 3.13 venv).

It takes an endpoint option; the harness gives it the awscrt HTTP/2 transport
(its default, aiohttp, has no HTTP/2) with the emulator's CA trusted.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from typing import Any

from workloads import main


class Peer:
    client: Any = None

    async def start(self, args: argparse.Namespace) -> None:
        os.environ["AWS_ACCESS_KEY_ID"] = args.key
        os.environ["AWS_SECRET_ACCESS_KEY"] = args.secret
        from aws_sdk_polly import models  # type: ignore[import-not-found]
        from aws_sdk_polly.client import AsyncPollyClient  # type: ignore[import-not-found]
        from aws_sdk_polly.config import AsyncPollyConfig  # type: ignore[import-not-found]
        from awscrt import io as crt_io  # type: ignore[import-not-found]
        from smithy_aws_core.identity import EnvironmentCredentialsResolver  # type: ignore[import-not-found]
        from smithy_http.aio.crt import AWSCRTHTTPClient  # type: ignore[import-not-found]

        self.models = models
        transport = AWSCRTHTTPClient()
        options = crt_io.TlsContextOptions()
        options.override_default_trust_store_from_path(None, args.ca)
        transport._tls_ctx = crt_io.ClientTlsContext(options)
        config = await AsyncPollyConfig.resolve(
            endpoint_uri=args.endpoint,
            region=args.region,
            transport=transport,
            aws_credentials_identity_resolver=EnvironmentCredentialsResolver(),
        )
        self.client = AsyncPollyClient(config)

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
