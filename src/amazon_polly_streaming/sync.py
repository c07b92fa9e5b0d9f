"""Blocking helpers for scripts and notebooks without an event loop.

    audio = synthesize("Hello there.", "Matthew", output_format="mp3")
    for chunk in iter_synthesize("Hello there.", "Matthew"):
        player.write(chunk)

Each call runs its own event loop and its own client. Inside a running loop
(async code, Jupyter) they refuse with an explanation: use the async client.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Generator, Iterable
    from typing import Any

__all__ = ["iter_synthesize", "synthesize"]

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
    ``start_speech_synthesis_stream``'s keyword arguments. A
    ``cache=MemoryCache(...)`` passed to several calls serves each phrase
    from memory after its first call.
    """
    _refuse_inside_loop("iter_synthesize")
    import asyncio

    from .client import PollyStreamingClient

    client_options, stream_options = _split(options)
    client = PollyStreamingClient(**client_options)
    # Validates the arguments before the loop exists.
    generator = client.start_speech_synthesis_stream(text=text, voice_id=voice_id, **stream_options)
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                chunk = loop.run_until_complete(generator.__anext__())
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        # Runs on exhaustion, error, or when the caller stops early (close()).
        try:
            loop.run_until_complete(generator.aclose())
            loop.run_until_complete(client.close())
            closer = getattr(client.limiter, "aclose", None)
            if closer is not None:
                # A RedisLimiter's release of this call's permit runs on this loop: let it finish.
                loop.run_until_complete(closer())
            if client.cache is not None:
                # Its Redis connections belong to this loop, which ends here.
                loop.run_until_complete(client.cache.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def synthesize(text: str | Iterable[str], voice_id: str, **options: Any) -> bytes:
    """Synthesize ``text`` and return all of its audio."""
    _refuse_inside_loop("synthesize")
    return b"".join(iter_synthesize(text, voice_id, **options))
