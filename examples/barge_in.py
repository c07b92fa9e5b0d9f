"""Barge-in: the caller starts talking, so the agent stops speaking at once.

Runs against the bundled emulator (pip install 'amazon-polly-streaming[emulator]'):

    python examples/barge_in.py

Cancelling the speaking task resets the HTTP/2 stream and returns the
connection to the pool, so the next answer starts on it immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS, Emulator

LONG_ANSWER = "Let me tell you about all of our plans in detail. " * 20


async def speak(client: PollyStreamingClient, text: str, label: str) -> None:
    async with client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as stream:
        await stream.send(text)
        await stream.close_input()
        async for chunk in stream:
            await asyncio.sleep(len(chunk) / 32000)  # "play" it in real time
        print(f"{label}: done, {stream.request_characters} characters billed")


async def main() -> None:
    # real_time_factor=1: the emulator produces audio at the pace of speech.
    async with Emulator(real_time_factor=1.0) as emulator:
        client = PollyStreamingClient(
            "us-east-1",
            pool_size=1,
            endpoint_url=emulator.endpoint_url,
            verify=emulator.ca_file,
            credentials=next(iter(DEFAULT_CREDENTIALS.items())),
        )
        async with client:
            speaking = asyncio.create_task(speak(client, LONG_ANSWER, "long answer"))
            await asyncio.sleep(1.5)
            print("caller interrupts: stopping the agent")
            interrupted = time.monotonic()
            speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await speaking
            async with client.open_stream(voice_id="Matthew", output_format="pcm", sample_rate="16000") as stream:
                await stream.send("Yes? How can I help?")
                await stream.close_input()
                async for _ in stream:
                    waited = time.monotonic() - interrupted
                    print(
                        f"new answer's first audio {waited * 1000:.0f} ms after the interruption, same connection:"
                        f" {stream.metrics.connection_reused}"
                    )
                    break


if __name__ == "__main__":
    asyncio.run(main())
