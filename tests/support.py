"""Shared test helpers: an emulator with a client pointed at it, leak checks, child processes' signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS, Emulator
from hostile_h2 import H2Peer, HostileServer

KEY, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
SENTENCE = "Hello there. This is a test of the streaming client."


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def default_signals(*signals: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn``: in the child, ``signals`` get their default disposition and are not blocked.

    A test that signals its child must not depend on how the suite was started: an ignored signal stays
    ignored across exec (POSIX ``execve``: only caught ones are reset), and a suite run under ``nohup`` or
    as ``bash scripts/test &`` from a script starts with SIGINT ignored. A program should keep that (the
    CLI does), so the test's own Ctrl-C would never arrive.
    """

    def reset() -> None:  # runs in the child between fork and exec: signal calls only
        for number in signals:
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)

    return reset


def stop(process: subprocess.Popen[Any]) -> None:
    """End a child so that its own clean-up runs (SIGTERM: an emulator removes its certificates' folder);
    SIGKILL only if it does not go. Start it with ``default_signals(signal.SIGTERM)``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
            closer = getattr(client.limiter, "aclose", None)
            if closer is not None:
                await closer()  # a RedisLimiter's connections and tasks on this loop
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


async def within(timeout: float, predicate: Callable[[], object]) -> bool:
    """Poll ``predicate()`` for up to ``timeout`` seconds; whether it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def client_for(url: str, ca_file: str | bool, **options: Any) -> PollyStreamingClient:
    options.setdefault("region", "us-east-1")
    options.setdefault("credentials", (KEY, SECRET))
    options.setdefault("read_timeout", 5.0)
    options.setdefault("connect_timeout", 5.0)
    return PollyStreamingClient(endpoint_url=url, verify=ca_file, **options)


@asynccontextmanager
async def hostile(
    script: Callable[[H2Peer], Awaitable[None]], client_options: dict[str, Any] | None = None, **server_options: Any
) -> AsyncIterator[tuple[HostileServer, PollyStreamingClient]]:
    """A hostile server running ``script`` and a client pointed at it; on exit, checks nothing leaked."""
    fds = open_fds()
    tasks_before = set(asyncio.all_tasks())
    async with HostileServer(script, **server_options) as server:
        client = client_for(server.endpoint_url, server.ca_file, **(client_options or {}))
        try:
            yield server, client
        finally:
            await client.close()
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() - tasks_before if not t.done()]
    assert not leftover, f"tasks outlived close(): {leftover}"
    assert open_fds() <= fds, "sockets or files outlived close()"


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


class Peak:
    """How many tasks, in any thread, held a limiter's permit at once."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self._lock = threading.Lock()

    async def hold(self, limiter: Any, rounds: int, pause: float) -> None:
        for _ in range(rounds):
            permit = await limiter.acquire()
            with self._lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            await asyncio.sleep(pause)
            with self._lock:
                self.now -= 1
            permit.release()
