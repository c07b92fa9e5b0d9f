"""Blocking helpers for scripts and notebooks without an event loop.

    audio = synthesize("Hello there.", "Matthew", output_format="mp3")
    for chunk in iter_synthesize("Hello there.", "Matthew"):
        player.write(chunk)

Each call runs its own event loop, in a thread of its own, and its own
client. The loop runs while the caller holds a chunk (plays it, uploads it):
keep-alive and the text source go on, so a slow consumer does not lose the
stream to Polly's 5 s input idle limit. Audio waits for the caller in a
bounded buffer (:data:`BUFFER_BYTES`); beyond it, reading the stream pauses
and HTTP/2 flow control holds the rest at the server. Inside a running loop
(async code, Jupyter) they refuse with an explanation: use the async client.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Generator, Iterable
    from typing import Any

__all__ = ["BUFFER_BYTES", "iter_synthesize", "synthesize"]

#: Audio received ahead of the caller, at most (then the stream waits): 1 MiB
#: is 30 s of 16 kHz PCM, minutes of MP3.
BUFFER_BYTES = 1 << 20
#: How long closing early waits for the stream and its thread to end (every
#: step of it is bounded below this; the thread is a daemon in any case).
_CLOSE_WAIT = 10.0

#: Keyword arguments that configure the client; the rest go to the stream.
_CLIENT_OPTIONS = frozenset(
    {
        "region",
        "pool_size",
        "endpoint_url",
        "verify",
        "connect_timeout",
        "read_timeout",
        "pool_timeout",
        "idle_timeout",
        "credentials",
        "proxy",
        "keepalive_interval",
        "retries",
        "limiter",
    }
)


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    client = {k: v for k, v in options.items() if k in _CLIENT_OPTIONS}
    stream = {k: v for k, v in options.items() if k not in _CLIENT_OPTIONS}
    # ``cache`` names both the client's cache and the call's ``cache=False``.
    if "cache" in stream and not isinstance(stream["cache"], bool):
        client["cache"] = stream.pop("cache")
    return client, stream


def _refuse_inside_loop(name: str) -> None:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{name}() runs its own event loop and cannot be called from a running one (async code, Jupyter). "
        "Use the async API instead: `async for chunk in client.start_speech_synthesis_stream(text=..., "
        "voice_id=...)` with a PollyStreamingClient."
    )


def iter_synthesize(text: str | Iterable[str], voice_id: str, **options: Any) -> Generator[bytes, None, None]:
    """Yield audio chunks as they arrive, blocking between them.

    ``options`` are any of ``PollyStreamingClient``'s and
    ``start_speech_synthesis_stream``'s keyword arguments. Closing the
    generator early (``break``, ``close()``, garbage collection) ends the
    stream and its thread. A ``cache=MemoryCache(...)`` passed to several
    calls serves each phrase from memory after its first call.
    """
    _refuse_inside_loop("iter_synthesize")
    from ._transport.loop_thread import LoopThread
    from .client import PollyStreamingClient

    client_options, stream_options = _split(options)
    client = PollyStreamingClient(**client_options)
    # Validates the arguments here, in the caller's thread, before any loop exists.
    generator = client.start_speech_synthesis_stream(text=text, voice_id=voice_id, **stream_options)

    async def close() -> None:
        await client.close()
        # A RedisLimiter's release of this call's permit, and a RedisCache's
        # connections, belong to this call's loop, which ends after this.
        closer = getattr(client.limiter, "aclose", None)
        if closer is not None:
            await closer()
        if client.cache is not None:
            await client.cache.aclose()

    runner = LoopThread(generator, close, BUFFER_BYTES)
    try:
        while (chunk := runner.get()) is not None:
            yield chunk
    finally:
        # Exhausted, failed, or left early: the stream and the thread end.
        runner.stop(_CLOSE_WAIT)


def synthesize(text: str | Iterable[str], voice_id: str, **options: Any) -> bytes:
    """Synthesize ``text`` and return all of its audio."""
    _refuse_inside_loop("synthesize")
    return b"".join(iter_synthesize(text, voice_id, **options))
