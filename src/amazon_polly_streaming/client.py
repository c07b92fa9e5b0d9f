"""``PollyStreamingClient``: the public entry point.

This module stays cheap to import: asyncio, ssl and h2 load with the first
stream (``_session``), so ``import amazon_polly_streaming`` costs almost
nothing in a process that only wants the types or the CLI's help.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Iterable
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType
    from typing import Any, TypeAlias

    from ._protocol import SynthesisParams
    from ._session import Runtime, SpeechStream
    from .credentials import CredentialsSource
    from .retries import RetryPolicy

    TextSource: TypeAlias = str | Iterable[str] | AsyncIterable[str]

__all__ = ["DEFAULT_REGION", "Endpoint", "PollyStreamingClient"]

#: The region of a client created without one (and without AWS_REGION set),
#: as in earlier releases.
DEFAULT_REGION = "eu-central-1"


class Endpoint:
    """Where to connect: host, port, and the ``:authority`` that is signed."""

    __slots__ = ("authority", "host", "port", "url")

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "https":
            raise ValueError(f"endpoint_url must be an https:// URL (Polly speaks HTTP/2 over TLS), not {url!r}")
        if not parts.hostname:
            raise ValueError(f"endpoint_url has no host: {url!r}")
        try:
            port = parts.port or 443
        except ValueError as exc:
            raise ValueError(f"endpoint_url has an invalid port: {url!r}") from exc
        self.url = url
        self.host = parts.hostname
        self.port = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if port == 443 else f"{host}:{port}"

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r})"


def _check_region(region: object) -> str:
    if not isinstance(region, str):
        raise TypeError(f"region must be a str, not {type(region).__name__}")
    if not region or not all(c.isalnum() or c == "-" for c in region) or not region.isascii():
        raise ValueError(f"invalid region {region!r}")
    return region


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds")
    if not value > 0:
        raise ValueError(f"{name} must be positive")
    return float(value)


class PollyStreamingClient:
    """An asyncio client for Polly's bidirectional ``StartSpeechSynthesisStream``.

    Construction does no I/O. Each stream leases one pooled HTTP/2
    connection; ``pool_size`` streams run at once and further calls wait for
    a lease. Use one client per process (and per event loop), and close it
    with ``await client.close()`` or ``async with client:``.

    Parameters beyond the documented ``region`` and ``pool_size``:

    * ``endpoint_url`` -- connect here instead of ``polly.<region>.amazonaws.com``
      (default from ``AWS_ENDPOINT_URL_POLLY``, then ``AWS_ENDPOINT_URL``).
    * ``verify`` -- ``True`` (system CAs), ``False`` (no verification; logs a
      warning) or a CA bundle path (default from ``AWS_CA_BUNDLE``).
    * ``connect_timeout`` -- seconds for TCP + TLS + HTTP/2 set-up.
    * ``read_timeout`` -- seconds of server silence tolerated while it owes a
      response; a silent connection with open input is probed with PING.
    * ``pool_timeout`` -- seconds to wait for a free pooled connection
      (``None``: as long as it takes).
    * ``idle_timeout`` -- idle pooled connections older than this are replaced.
    * ``credentials`` -- ``Credentials``, a ``(key, secret[, token])`` tuple, a
      provider callable, or botocore credentials; default: environment, then
      botocore's chain.
    * ``proxy`` -- ``http://[user:pass@]host:port`` to tunnel through with
      CONNECT (default from ``HTTPS_PROXY`` unless ``NO_PROXY`` matches).
    * ``keepalive_interval`` -- while a stream's input is open and the text
      source is silent, send the documented whitespace keep-alive this often
      (seconds; ``None`` turns it off). Polly closes input idle for 5 s.
    * ``retries`` -- a :class:`~amazon_polly_streaming.retries.RetryPolicy`
      or a number of attempts; retries only happen before any audio reached
      the caller. Off by default.
    """

    def __init__(
        self,
        region: str | None = None,
        pool_size: int = 8,
        *,
        endpoint_url: str | None = None,
        verify: bool | str = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        pool_timeout: float | None = None,
        idle_timeout: float = 45.0,
        credentials: CredentialsSource | None = None,
        proxy: str | None = None,
        keepalive_interval: float | None = 3.0,
        retries: RetryPolicy | int | None = None,
    ) -> None:
        if region is None:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        self._region = _check_region(region)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int):
            raise TypeError("pool_size must be an int")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.pool_size = pool_size
        url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_POLLY") or os.environ.get("AWS_ENDPOINT_URL")
        self.endpoint = Endpoint(url or f"https://polly.{self._region}.amazonaws.com")
        if verify is True and os.environ.get("AWS_CA_BUNDLE"):
            verify = os.environ["AWS_CA_BUNDLE"]
        if not isinstance(verify, bool | str):
            raise TypeError("verify must be True, False or a CA bundle path")
        self.verify: bool | str = verify
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self.read_timeout = _positive("read_timeout", read_timeout)
        self.pool_timeout = None if pool_timeout is None else _positive("pool_timeout", pool_timeout)
        self.idle_timeout = _positive("idle_timeout", idle_timeout)
        self.keepalive_interval = (
            None if keepalive_interval is None else _positive("keepalive_interval", keepalive_interval)
        )
        if self.keepalive_interval is not None and self.keepalive_interval >= 5:
            raise ValueError("keepalive_interval must be under Polly's 5 s input idle limit")
        self.proxy = proxy
        from .credentials import CredentialResolver

        self._credentials_source = credentials
        # Validates the source's type now, before any I/O.
        CredentialResolver(credentials)
        self._retries = retries
        self._runtime: Runtime | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"PollyStreamingClient(region={self._region!r}, pool_size={self.pool_size}, endpoint={self.endpoint.url!r})"
        )

    @property
    def region(self) -> str:
        return self._region

    def _get_runtime(self) -> Runtime:
        from ._session import Runtime, current_loop

        runtime = self._runtime
        if runtime is None or runtime.loop is not current_loop():
            if self._closed:
                from .exceptions import TransportError

                raise TransportError("the client is closed")
            # First use, or use from a new event loop (asyncio.run called
            # again): connections belong to one loop, so start afresh.
            if runtime is not None:
                runtime.abandon()
            runtime = self._runtime = Runtime(self, self._credentials_source)
        return runtime

    def start_speech_synthesis_stream(
        self,
        *,
        text: TextSource,
        voice_id: str,
        engine: str = "generative",
        language_code: str = "en-US",
        output_format: str = "mp3",
        sample_rate: str = "24000",
        use_pool: bool = True,
        text_type: str | None = None,
        lexicon_names: Iterable[str] | None = None,
        flush: bool = False,
    ) -> AsyncIterator[bytes]:
        """Synthesize ``text`` and yield the audio bytes as Polly sends them.

        Returns an async generator. ``text`` is a string, or an iterable or
        async iterable of strings that are sent as TextEvents the moment they
        are produced (LLM tokens), while audio already flows back.
        ``text_type`` is ``"text"`` or ``"ssml"`` (one SSML document per
        chunk); ``flush=True`` asks Polly to synthesize each chunk at once.

        The stream ends only after Polly's ``StreamClosedEvent``; anything
        else raises. Breaking out, ``aclose()`` or cancelling resets the
        HTTP/2 stream and returns the connection to the pool.
        """
        params = _stream_params(voice_id, engine, language_code, output_format, sample_rate, lexicon_names, text_type)
        if not isinstance(text, str) and not (hasattr(text, "__aiter__") or hasattr(text, "__iter__")):
            raise TypeError(f"text must be a str or an (async) iterable of str, not {type(text).__name__}")
        if isinstance(text, bytes | bytearray | memoryview):
            raise TypeError("text must be str, not bytes")
        from ._session import synthesize

        return synthesize(self, params, text, use_pool=use_pool, text_type=text_type, flush=flush)

    def open_stream(
        self,
        *,
        voice_id: str,
        engine: str = "generative",
        language_code: str = "en-US",
        output_format: str = "mp3",
        sample_rate: str = "24000",
        use_pool: bool = True,
        lexicon_names: Iterable[str] | None = None,
        text_type: str | None = None,
    ) -> AbstractAsyncContextManager[SpeechStream]:
        """A full-duplex session: ``async with client.open_stream(voice_id=...) as stream:``.

        Send with ``await stream.send(text, flush=False)``, ``await stream.flush()``
        and ``await stream.close_input()``; read audio with ``async for chunk in
        stream`` (or events with ``stream.events()``). Leaving the block early
        aborts both directions at once.
        """
        params = _stream_params(voice_id, engine, language_code, output_format, sample_rate, lexicon_names, text_type)
        from ._session import open_session

        return open_session(self, params, use_pool=use_pool, text_type=text_type)

    async def prewarm(self, connections: int = 1) -> int:
        """Open up to ``connections`` pooled connections ahead of the first stream.

        Returns how many were opened. Credentials are resolved too.
        """
        runtime = self._get_runtime()
        await runtime.credentials.get()
        return await runtime.pool.prewarm(min(connections, self.pool_size))

    async def close(self) -> None:
        """Close every connection. Streams still running fail with ``TransportError``."""
        self._closed = True
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.close()

    async def __aenter__(self) -> PollyStreamingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _retry_policy(self) -> Any:
        from .retries import as_policy

        return as_policy(self._retries)


def _stream_params(
    voice_id: str,
    engine: str,
    language_code: str,
    output_format: str,
    sample_rate: str,
    lexicon_names: Iterable[str] | None,
    text_type: str | None,
) -> SynthesisParams:
    """Every stream argument checked, before any I/O."""
    from ._protocol import synthesis_params

    if text_type is not None and text_type not in ("text", "ssml"):
        raise ValueError(f"text_type must be 'text' or 'ssml', not {text_type!r}")
    return synthesis_params(
        voice_id=voice_id,
        engine=engine,
        language_code=language_code,
        output_format=output_format,
        sample_rate=sample_rate,
        lexicon_names=lexicon_names,
    )
