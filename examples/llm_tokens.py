"""Speak an LLM's answer while it is still being generated.

Runs against the bundled emulator (pip install 'amazon-polly-streaming[emulator]'):

    python examples/llm_tokens.py

Against Polly, drop the emulator and create the client with your region.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS, Emulator

ANSWER = "Sure! The quickest way downtown is the number four bus. It leaves every ten minutes from the corner."


async def fake_llm() -> AsyncIterator[str]:
    """Stands in for a model's token stream: a word every 60 ms."""
    for word in ANSWER.split(" "):
        await asyncio.sleep(0.06)
        yield word + " "


async def main() -> None:
    async with Emulator() as emulator:
        client = PollyStreamingClient(
            "us-east-1",
            endpoint_url=emulator.endpoint_url,
            verify=emulator.ca_file,
            credentials=next(iter(DEFAULT_CREDENTIALS.items())),
        )
        async with client:
            started = time.monotonic()
            first = None
            audio = bytearray()
            async for chunk in client.start_speech_synthesis_stream(
                text=fake_llm(), voice_id="Joanna", output_format="pcm", sample_rate="16000"
            ):
                if first is None:
                    first = time.monotonic() - started
                    print(f"first audio after {first * 1000:.0f} ms, while the model was still talking")
                audio += chunk  # a voice agent would play it now
            total = time.monotonic() - started
            print(f"{len(audio) / 32000:.1f} s of audio; the model took {total:.1f} s to finish its answer")


if __name__ == "__main__":
    asyncio.run(main())
