"""``PollyStreamingClient``: the public entry point.

This module stays cheap to import: asyncio, ssl and h2 load with the first
stream, so ``import amazon_polly_streaming`` costs almost nothing in a
process that only wants the types or the CLI's help. It checks every
argument before any I/O and hands the work down: ``_runtime`` (one per event
loop), ``_session`` (one stream), ``_synthesize`` (the one-call generator).
"""

from __future__ import annotations

import os

from ._config import (
    ClientConfig,
    Endpoint,
    ProxyConfig,
    check_limiter,
    check_region,
    check_verify,
    positive,
    proxy_for,
)
from ._region import DEFAULT_REGION, resolve_region

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType
    from typing import TypeAlias

    from ._admission import Limiter
    from ._runtime import Runtime
    from ._session import SpeechStream
    from ._wire.request import SynthesisParams
    from .cache import PhraseCache
    from .credentials import CredentialsSource
    from .retries import RetryPolicy

    TextSource: TypeAlias = str | Iterable[str] | AsyncIterable[str]

__all__ = ["DEFAULT_REGION", "Endpoint", "PollyStreamingClient"]

# What every stream calls, imported with the first one (it loads asyncio, ssl
# and h2) and kept here: an import statement in a function looks the package
# up again on every call.
_synthesize: Callable[..., AsyncGenerator[bytes, None]] | None = None
_text_events: Callable[..., list[bytes]] | None = None
_synthesis_params: Callable[..., SynthesisParams] | None = None


def _running_loop() -> asyncio.AbstractEventLoop:
    import asyncio

    return asyncio.get_running_loop()


def _load_stream_machinery() -> None:
    global _synthesize, _text_events, _synthesis_params, _running_loop
    from asyncio import get_running_loop

    from ._synthesize import synthesize
    from ._wire.request import synthesis_params, text_events

    _synthesize, _text_events, _synthesis_params = synthesize, text_events, synthesis_params
    _running_loop = get_running_loop


class PollyStreamingClient:
    """An asyncio client for Polly's bidirectional ``StartSpeechSynthesisStream``.

    Construction does no network I/O. Each stream leases one pooled HTTP/2
    connection; ``pool_size`` streams of this client run at once and further
    calls wait for a lease. Clients of one event loop that point at the same
    endpoint with the same TLS and proxy settings share their idle
    connections. Close a client with ``await client.close()`` or
    ``async with client:``; one used from several event loops (a thread each)
    keeps separate connections per loop.

    Parameters beyond the documented ``region`` and ``pool_size``:

    * ``endpoint_url`` -- connect here instead of ``polly.<region>.amazonaws.com``
      (default from ``AWS_ENDPOINT_URL_POLLY``, then ``AWS_ENDPOINT_URL``);
      ``https://host[:port]`` only.
    * ``verify`` -- ``True`` (system CAs), ``False`` (no verification; logs a
      warning) or a CA bundle path (default from ``AWS_CA_BUNDLE``).
    * ``connect_timeout`` -- seconds for credentials, TCP, TLS and HTTP/2 set-up.
    * ``read_timeout`` -- seconds of server silence tolerated while it owes a
      response; a silent connection with open input is probed with PING.
    * ``pool_timeout`` -- seconds to wait for a free pooled connection
      (``None``: as long as it takes).
    * ``idle_timeout`` -- idle pooled connections close after this long.
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
    * ``cache`` -- a :class:`~amazon_polly_streaming.cache.MemoryCache` or
      :class:`~amazon_polly_streaming.cache.RedisCache`: calls whose ``text``
      is a whole string replay phrases spoken before instead of calling
      Polly (see docs/cache.md). Not closed with the client.
    * ``limiter`` -- admission control: a
      :class:`~amazon_polly_streaming.limits.LocalLimiter`, a
      :class:`~amazon_polly_streaming.limits.RedisLimiter` (a whole fleet's
      count), or an int ``n`` for ``LocalLimiter(n)``. Each stream holds one
      permit from before its request is sent until it ends; independent of
      ``pool_size``. None by default.
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
        limiter: Limiter | int | None = None,
        cache: PhraseCache | None = None,
    ) -> None:
        import threading

        from .credentials import CredentialResolver
        from .retries import as_policy

        environ = os.environ
        region = resolve_region(region, environ)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int):
            raise TypeError("pool_size must be an int")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        region = check_region(region)
        url = endpoint_url or environ.get("AWS_ENDPOINT_URL_POLLY") or environ.get("AWS_ENDPOINT_URL")
        endpoint = Endpoint(url or f"https://polly.{region}.amazonaws.com")
        if verify is True and environ.get("AWS_CA_BUNDLE"):
            verify = environ["AWS_CA_BUNDLE"]
        interval = None if keepalive_interval is None else positive("keepalive_interval", keepalive_interval)
        if interval is not None and interval >= 5:
            raise ValueError("keepalive_interval must be under Polly's 5 s input idle limit")
        self._config = ClientConfig(
            region=region,
            pool_size=pool_size,
            endpoint=endpoint,
            verify=check_verify(verify),
            connect_timeout=positive("connect_timeout", connect_timeout),
            read_timeout=positive("read_timeout", read_timeout),
            pool_timeout=None if pool_timeout is None else positive("pool_timeout", pool_timeout),
            idle_timeout=positive("idle_timeout", idle_timeout),
            proxy=proxy_for(endpoint.host, proxy, environ),
            keepalive_interval=interval,
            retries=as_policy(retries),
            limiter=check_limiter(limiter),
        )
        # Checks the source's type now; secrets stay inside Credentials,
        # whose repr redacts them.
        self._credentials = CredentialResolver(credentials)
        if cache is not None:
            from .cache import PhraseCache

            if not isinstance(cache, PhraseCache):
                raise TypeError(f"cache must be a MemoryCache or a RedisCache, not {type(cache).__name__}")
        self._cache = cache
        self._runtimes: dict[asyncio.AbstractEventLoop, Runtime] = {}
        self._runtimes_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        config = self._config
        return (
            f"PollyStreamingClient(region={config.region!r}, pool_size={config.pool_size}, "
            f"endpoint={config.endpoint.url!r})"
        )

    # ------------------------------------------------------------ settings

    @property
    def region(self) -> str:
        return self._config.region

    @property
    def pool_size(self) -> int:
        return self._config.pool_size

    @property
    def endpoint(self) -> Endpoint:
        return self._config.endpoint

    @property
    def verify(self) -> bool | str:
        return self._config.verify

    @property
    def proxy(self) -> ProxyConfig | None:
        """The proxy in use (its credentials redacted from ``repr``), or None."""
        return self._config.proxy

    @property
    def connect_timeout(self) -> float:
        return self._config.connect_timeout

    @property
    def read_timeout(self) -> float:
        return self._config.read_timeout

    @property
    def pool_timeout(self) -> float | None:
        return self._config.pool_timeout

    @property
    def idle_timeout(self) -> float:
        return self._config.idle_timeout

    @property
    def keepalive_interval(self) -> float | None:
        return self._config.keepalive_interval

    @property
    def cache(self) -> PhraseCache | None:
        """The phrase cache whole-text calls look up first, or None."""
        return self._cache

    @property
    def limiter(self) -> Limiter | None:
        """The admission limiter streams take a permit from, or None."""
        return self._config.limiter

    # ------------------------------------------------------------ runtimes

    def _runtime(self) -> Runtime:
        """This client's state on the running event loop (made on first use there)."""
        loop = _running_loop()
        runtime = self._runtimes.get(loop)
        if runtime is not None and not runtime.closed:
            return runtime
        from ._runtime import Runtime
        from .exceptions import TransportError

        with self._runtimes_lock:
            if self._closed:
                raise TransportError("the client is closed")
            for stale in [other for other in self._runtimes if other.is_closed()]:
                del self._runtimes[stale]  # asyncio.run ended there; its pool closed with it
            runtime = self._runtimes[loop] = Runtime(self._config, self._credentials)
        return runtime

    # ------------------------------------------------------------ streams

    def start_speech_synthesis_stream(
        self,
        *,
        text: TextSource,
        voice_id: str,
        engine: str = "generative",
        language_code: str | None = None,
        output_format: str = "mp3",
        sample_rate: str | None = None,
        use_pool: bool = True,
        text_type: str | None = None,
        lexicon_names: Iterable[str] | None = None,
        flush: bool = False,
        cache: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        """Synthesize ``text`` and yield the audio bytes as Polly sends them.

        Returns an async generator. ``text`` is a string, or an iterable or
        async iterable of strings that are sent as TextEvents the moment they
        are produced (LLM tokens), while audio already flows back.
        ``language_code`` is sent only when given (it matters for bilingual
        voices); ``sample_rate`` defaults to the format's documented default
        (24000 for mp3 and ogg_vorbis, 16000 for pcm, 48000 for ogg_opus,
        8000 for mulaw and alaw). ``text_type`` is ``"text"`` or ``"ssml"``
        (one SSML document per chunk); ``flush=True`` asks Polly to
        synthesize each chunk at once. Every argument, and a string ``text``,
        is checked here, before any I/O.

        With the client's ``cache``, a string ``text`` is looked up first and
        the call returns a :class:`~amazon_polly_streaming._cached_synthesis.CachedSpeech`
        (an async generator that also tells ``cache_hit``, ``metrics`` and
        ``request_characters``); ``cache=False`` skips the cache for this call.

        The stream ends only after Polly's ``StreamClosedEvent``; anything
        else raises. Breaking out, ``aclose()`` or cancelling resets the
        HTTP/2 stream and returns the connection to the pool; a generator
        left unclosed keeps its lease until it is collected, so wrap it in
        ``contextlib.aclosing`` when you may break out early.
        """
        params = _stream_params(voice_id, engine, language_code, output_format, sample_rate, lexicon_names, text_type)
        synthesize = _synthesize
        assert synthesize is not None  # _stream_params loaded it
        policy = self._config.retries
        if isinstance(text, str):
            assert _text_events is not None
            events = _text_events(text, text_type=text_type, flush=flush)

            def speak(on_session: Callable[[SpeechStream], None] | None = None) -> AsyncGenerator[bytes, None]:
                return synthesize(
                    self._runtime,
                    params,
                    events,
                    whole=True,
                    use_pool=use_pool,
                    text_type=text_type,
                    flush=flush,
                    policy=policy,
                    on_session=on_session,
                )

            phrase_cache = self._cache
            if phrase_cache is not None and cache:
                # Before synthesize: a hit takes no connection and no admission.
                from ._cached_synthesis import cached_synthesize

                key = phrase_cache.key(params, text, text_type=text_type, flush=flush, region=self._config.region)
                return cached_synthesize(phrase_cache, key, params, speak)
            return speak()
        if isinstance(text, bytes | bytearray | memoryview):
            raise TypeError("text must be str, not bytes")
        if not (hasattr(text, "__aiter__") or hasattr(text, "__iter__")):
            raise TypeError(f"text must be a str or an (async) iterable of str, not {type(text).__name__}")
        return synthesize(
            self._runtime,
            params,
            text,
            whole=False,
            use_pool=use_pool,
            text_type=text_type,
            flush=flush,
            policy=policy,
        )

    def open_stream(
        self,
        *,
        voice_id: str,
        engine: str = "generative",
        language_code: str | None = None,
        output_format: str = "mp3",
        sample_rate: str | None = None,
        use_pool: bool = True,
        lexicon_names: Iterable[str] | None = None,
        text_type: str | None = None,
    ) -> AbstractAsyncContextManager[SpeechStream]:
        """A full-duplex session: ``async with client.open_stream(voice_id=...) as stream:``.

        The request leaves when the block is entered. Send with ``await
        stream.send(text, flush=False)``, ``await stream.flush()`` and ``await
        stream.close_input()`` (concurrent sends are serialized); read audio
        with ``async for chunk in stream`` (or events with ``stream.events()``).
        Leaving the block early aborts both directions at once.
        """
        params = _stream_params(voice_id, engine, language_code, output_format, sample_rate, lexicon_names, text_type)
        from ._session import open_session

        return open_session(self._runtime, params, use_pool=use_pool, text_type=text_type)

    async def prewarm(self, connections: int = 1) -> int:
        """Open up to ``connections`` pooled connections ahead of the first stream.

        Returns how many were opened. Credentials are resolved too.
        """
        runtime = self._runtime()
        await runtime.credentials.get(self._config.connect_timeout)
        return await runtime.prewarm(connections)

    async def close(self) -> None:
        """End this client's streams (they fail with ``TransportError``) and its connections.

        Idle connections shared with other open clients stay for them. A
        runtime of another event loop is closed on that loop.
        """
        import asyncio

        self._closed = True
        with self._runtimes_lock:
            runtimes, self._runtimes = self._runtimes, {}
        loop = asyncio.get_running_loop()
        waits = []
        for owner, runtime in runtimes.items():
            if owner is loop:
                waits.append(runtime.close())
            elif not owner.is_closed():
                # Never touch another loop's transports from here: ask it.
                future = asyncio.run_coroutine_threadsafe(runtime.close(), owner)
                if owner.is_running():
                    waits.append(asyncio.wait_for(asyncio.wrap_future(future), 2.0))
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)

    async def __aenter__(self) -> PollyStreamingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


#: Stream arguments already checked, by their values and types: an application
#: speaks with the same few settings all day, and checking them costs more
#: than looking them up. Bounded; only arguments that passed are kept.
_checked: dict[tuple[object, ...], SynthesisParams] = {}
_CHECKED_LIMIT = 64


def _stream_params(
    voice_id: str,
    engine: str,
    language_code: str | None,
    output_format: str,
    sample_rate: str | None,
    lexicon_names: Iterable[str] | None,
    text_type: str | None,
) -> SynthesisParams:
    """Every stream argument checked, before any I/O."""
    key: tuple[object, ...] | None = None
    if lexicon_names is None:
        # The sample rate's type too: 16000.0 equals 16000 (and hashes alike) but is refused. The others
        # are refused unless they are str, and a str equal to a checked one is that one.
        key = (voice_id, engine, language_code, output_format, sample_rate, text_type, type(sample_rate))
        try:
            checked = _checked.get(key)
        except TypeError:  # an unhashable argument: refused below
            key = checked = None
        if checked is not None:
            return checked
    synthesis_params = _synthesis_params
    if synthesis_params is None:
        _load_stream_machinery()
        synthesis_params = _synthesis_params
        assert synthesis_params is not None
    if text_type is not None and text_type not in ("text", "ssml"):
        raise ValueError(f"text_type must be 'text' or 'ssml', not {text_type!r}")
    params = synthesis_params(
        voice_id=voice_id,
        engine=engine,
        language_code=language_code,
        output_format=output_format,
        sample_rate=sample_rate,
        lexicon_names=lexicon_names,
    )
    if key is not None:
        if len(_checked) >= _CHECKED_LIMIT:
            _checked.clear()
        _checked[key] = params
    return params
