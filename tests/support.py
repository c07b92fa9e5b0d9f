"""Shared test helpers: an emulator with a client pointed at it, and leak checks."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS, Emulator

KEY, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
SENTENCE = "Hello there. This is a test of the streaming client."


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def make_client(emulator: Emulator, **options: Any) -> PollyStreamingClient:
    options.setdefault("region", "us-east-1")
    options.setdefault("credentials", (KEY, SECRET))
    options.setdefault("read_timeout", 5.0)
    options.setdefault("connect_timeout", 5.0)
    options.setdefault("verify", emulator.ca_file)
    return PollyStreamingClient(endpoint_url=emulator.endpoint_url, **options)


@asynccontextmanager
async def serve(
    client_options: dict[str, Any] | None = None, **config: Any
) -> AsyncIterator[tuple[Emulator, PollyStreamingClient]]:
    """An emulator (strict HTTP/2 unless told otherwise) and a client; on exit, checks nothing leaked."""
    config.setdefault("strict", True)
    fds = open_fds()
    tasks_before = set(asyncio.all_tasks())
    async with Emulator(**config) as emulator:
        client = make_client(emulator, **(client_options or {}))
        try:
            yield emulator, client
        finally:
            await client.close()
        # The client closed its connections: the server sees them go.
        await emulator.wait_for(lambda: emulator.open_connections == 0, 5.0)
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() - tasks_before if not t.done()]
    assert not leftover, f"tasks outlived close(): {leftover}"
    assert open_fds() <= fds, "sockets or files outlived close()"


async def collect(client: PollyStreamingClient, text: Any = SENTENCE, **options: Any) -> bytes:
    options.setdefault("voice_id", "Matthew")
    options.setdefault("output_format", "pcm")
    options.setdefault("sample_rate", "16000")
    out = bytearray()
    async for chunk in client.start_speech_synthesis_stream(text=text, **options):
        out += chunk
    return bytes(out)


def spoken_words(texts: list[str], voice_id: str = "Joanna") -> tuple[float, list[tuple[int, float]]]:
    """What the emulator's speech of a stream's TextEvents says when: its duration,
    and eSpeak's start of each word as (character of the joined text, second).

    The emulator synthesizes each completed sentence of its buffer on its own,
    so the words of each segment start after the audio of the segments before.
    """
    from amazon_polly_streaming.emulator._audio import synthesize_pcm, word_starts
    from amazon_polly_streaming.emulator._text import SentenceBuffer

    buffer = SentenceBuffer()
    segments = [buffer.add(text) for text in texts]
    segments.append(buffer.flush())
    starts: list[tuple[int, float]] = []
    characters, seconds = 0, 0.0
    for segment in segments:
        for position, start in word_starts(segment, voice_id=voice_id, language_code=None):
            starts.append((characters + position, seconds + start))
        characters += len(segment)
        seconds += len(synthesize_pcm(segment, voice_id=voice_id, language_code=None, sample_rate=16000)) / 32000
    return seconds, starts


def heard_text(text: str, starts: list[tuple[int, float]], played: float) -> str:
    """``text`` up to the end of the last word that had started after ``played`` seconds of its speech."""
    heard = 0
    for position, start in starts:
        if start <= played:
            end = position
            while end < len(text) and not text[end].isspace():
                end += 1
            heard = end
    return text[:heard]
