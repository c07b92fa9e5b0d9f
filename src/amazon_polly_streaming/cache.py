"""Speak a known phrase from a cache: first audio in well under a millisecond, no characters billed.

    from amazon_polly_streaming.cache import MemoryCache, RedisCache

    client = PollyStreamingClient(region="us-east-1", cache=MemoryCache(max_bytes=64 * 2**20))
    client = PollyStreamingClient(region="us-east-1", cache=RedisCache("redis://127.0.0.1:6379/0", ttl=86400))

Only a call whose ``text`` is a whole string is cached; only speech that
ended with Polly's ``StreamClosedEvent`` is stored; a cache that fails
(Redis down, slow, or a damaged value) sends the call to Polly as if there
were no cache. See docs/cache.md.

Importing this module loads neither asyncio nor Redis: ``redis.asyncio`` is
imported when a ``RedisCache`` is made.
"""

from __future__ import annotations

import logging
import threading
import time

from ._cache_entry import DamagedEntry, Entry, decode_entry, encode_entry, phrase_key
from ._lru import ByteLRU

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    import asyncio
    from typing import Any, NamedTuple

    from ._wire.request import SynthesisParams
else:
    from collections import namedtuple

__all__ = ["CacheStats", "MemoryCache", "PhraseCache", "RedisCache"]

logger = logging.getLogger("amazon_polly_streaming.cache")

_MiB = 2**20

if TYPE_CHECKING:

    class CacheStats(NamedTuple):
        hits: int
        shared: int
        misses: int
        bytes: int
        entries: int
        evictions: int
        errors: int

else:
    CacheStats = namedtuple("CacheStats", "hits shared misses bytes entries evictions errors")
    CacheStats.__doc__ = """What a cache did since it was made.

    ``hits``: calls served from the cache (this process's memory or Redis);
    ``shared``: calls that waited for another call of the same phrase and
    replayed its audio; ``misses``: calls that went to Polly; ``bytes`` and
    ``entries``: what this process holds now (audio plus a fixed overhead per
    entry); ``evictions``: entries dropped to stay within the byte bound;
    ``errors``: failed or timed-out Redis commands and damaged values.
    """


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if value <= 0:
        raise ValueError(f"{name} must be positive")
    return value


def _positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive, finite number of seconds")
    return float(value)


class PhraseCache:
    """What the client asks of a phrase cache: a local LRU, an optional remote store, and counts.

    Use :class:`MemoryCache` or :class:`RedisCache`. One cache may be shared
    by several clients (regions are part of the key) and event loops.
    """

    #: Whether ``get_remote``/``put_remote`` do anything (the client skips them when not).
    remote = False

    def __init__(self, *, local_bytes: int, max_entry_bytes: int, namespace: str, flight_timeout: float) -> None:
        if not isinstance(namespace, str):
            raise TypeError("namespace must be a str")
        self.namespace = namespace
        self.max_entry_bytes = _positive_int("max_entry_bytes", max_entry_bytes)
        self.flight_timeout = _positive_float("flight_timeout", flight_timeout)
        self._lru = ByteLRU(_positive_int("max_bytes", local_bytes))
        #: Calls of one phrase in flight, by (event loop, key): futures belong to one loop.
        self.flights: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future[Entry | None]] = {}
        self.hits = 0
        self.shared = 0
        self.misses = 0
        self.errors = 0

    def stats(self) -> CacheStats:
        lru = self._lru
        return CacheStats(
            hits=self.hits,
            shared=self.shared,
            misses=self.misses,
            bytes=lru.bytes,
            entries=len(lru),
            evictions=lru.evictions,
            errors=self.errors,
        )

    def clear(self) -> None:
        """Forget what this process holds (Redis keeps its entries until their TTL)."""
        self._lru.clear()

    # ------------------------------------------------------------ used by the client

    def key(self, params: SynthesisParams, text: str, *, text_type: str | None, flush: bool, region: str) -> str:
        return phrase_key(params, text, text_type=text_type, flush=flush, region=region, namespace=self.namespace)

    def get_local(self, key: str) -> Entry | None:
        return self._lru.get(key)

    def put_local(self, key: str, entry: Entry) -> None:
        self._lru.put(key, entry)

    async def get_remote(self, key: str, params: SynthesisParams) -> Entry | None:
        """The entry from the shared store, or None (a miss, or the store failed: never raises)."""
        return None

    async def put_remote(self, key: str, entry: Entry) -> None:
        """Store ``entry`` in the shared store; never raises."""

    async def aclose(self) -> None:
        """Close this event loop's connections (a later call opens new ones)."""


class MemoryCache(PhraseCache):
    """An LRU of whole phrases in this process, bounded in bytes.

    ``max_bytes`` bounds the audio held plus a fixed overhead per entry;
    ``max_entry_bytes`` is the largest audio kept (longer speech is spoken
    but not stored). ``namespace`` goes into every key (a lexicon version, a
    tenant): change it and every earlier entry misses. ``flight_timeout``:
    how long a call waits for a concurrent call of the same phrase before it
    makes its own.
    """

    def __init__(
        self,
        max_bytes: int = 64 * _MiB,
        *,
        max_entry_bytes: int = 4 * _MiB,
        namespace: str = "",
        flight_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            local_bytes=max_bytes, max_entry_bytes=max_entry_bytes, namespace=namespace, flight_timeout=flight_timeout
        )

    @property
    def max_bytes(self) -> int:
        return self._lru.max_bytes

    def __repr__(self) -> str:
        return f"MemoryCache(max_bytes={self.max_bytes}, entries={len(self._lru)}, bytes={self._lru.bytes})"


class RedisCache(PhraseCache):
    """Whole phrases in Redis, shared by every process that uses the same Redis and ``namespace``.

    Every entry gets a TTL of ``ttl`` seconds; a small LRU of ``local_bytes``
    in this process answers repeated phrases without a round trip. Keys are
    ``prefix`` plus a hash: no text is stored in a key. Each Redis command
    is bounded by ``timeout`` seconds; a failed or slow Redis sends calls to
    Polly, logs one warning, counts ``errors``, and is tried again after
    ``retry_after`` seconds. ``max_connections`` bounds the connections per
    event loop. Needs the extra: ``pip install 'amazon-polly-streaming[redis]'``.
    """

    remote = True

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 86400,
        local_bytes: int = 8 * _MiB,
        max_entry_bytes: int = 4 * _MiB,
        namespace: str = "",
        prefix: str = "polly:phrase:",
        timeout: float = 0.25,
        retry_after: float = 5.0,
        max_connections: int = 16,
        flight_timeout: float = 10.0,
    ) -> None:
        if not isinstance(url, str):
            raise ValueError("url must be a redis://, rediss:// or unix:// URL")
        from ._redis_url import redis_location

        # redis-py installed and the URL its own, now rather than at the first call.
        self._where = redis_location(url, "RedisCache")
        super().__init__(
            local_bytes=local_bytes, max_entry_bytes=max_entry_bytes, namespace=namespace, flight_timeout=flight_timeout
        )
        self._url = url
        self._ttl_ms = max(1, round(_positive_float("ttl", ttl) * 1000))
        self._prefix = prefix
        self._timeout = _positive_float("timeout", timeout)
        self._retry_after = _positive_float("retry_after", retry_after)
        self._max_connections = _positive_int("max_connections", max_connections)
        # A redis.asyncio client and its pool belong to one event loop.
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._clients_lock = threading.Lock()
        self._down_until = 0.0
        self._warned = False

    def __repr__(self) -> str:
        return f"RedisCache({self._where!r}, ttl={self._ttl_ms / 1000:g}, prefix={self._prefix!r})"

    @property
    def ttl(self) -> float:
        return self._ttl_ms / 1000

    def redis_key(self, key: str) -> str:
        """The Redis key of a phrase key: the prefix and the hash, nothing of the text."""
        return self._prefix + key

    # ------------------------------------------------------------ the connection

    def _client(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        with self._clients_lock:
            for stale in [other for other in self._clients if other.is_closed()]:
                del self._clients[stale]  # that loop and its sockets are gone
            pool = BlockingConnectionPool.from_url(
                self._url,
                max_connections=self._max_connections,
                timeout=self._timeout,  # waiting for a free connection
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),  # our own bound is the only one: no silent retries past it
                health_check_interval=0,
            )
            client = self._clients[loop] = Redis.from_pool(pool)
        return client

    async def aclose(self) -> None:
        """Close this event loop's Redis connections; the cache stays usable (it reconnects)."""
        import asyncio

        with self._clients_lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await client.aclose()
            except Exception as exc:  # closing a dead connection may fail: it is closed either way
                logger.debug("closing the Redis connection: %s", type(exc).__name__)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self._down_until = time.monotonic() + self._retry_after
        if not self._warned:
            self._warned = True
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            logger.warning(
                "phrase cache: Redis %s failed (%s); speaking from Polly without it, retrying in %g s",
                what,
                detail,
                self._retry_after,
            )

    def _succeeded(self) -> None:
        if self._warned:
            self._warned = False
            logger.info("phrase cache: Redis answers again")

    def _available(self) -> bool:
        return not self._down_until or time.monotonic() >= self._down_until

    # ------------------------------------------------------------ the store

    async def get_remote(self, key: str, params: SynthesisParams) -> Entry | None:
        if not self._available():
            return None
        import asyncio

        name = self.redis_key(key)
        try:
            async with asyncio.timeout(self._timeout):
                blob = await self._client().get(name)
        except Exception as exc:  # whatever Redis does, the call goes on to Polly
            self._failed("GET", exc)
            return None
        self._succeeded()
        if blob is None:
            return None
        try:
            return decode_entry(key, blob, params)
        except DamagedEntry as exc:
            self.errors += 1
            # Logged once per damaged value: it is deleted now, and the next
            # call of the phrase stores a whole one.
            logger.warning("phrase cache: deleting damaged entry %s (%s)", name, exc)
            try:
                async with asyncio.timeout(self._timeout):
                    await self._client().delete(name)
            except Exception as delete_exc:
                self._failed("DEL", delete_exc)
            return None

    async def put_remote(self, key: str, entry: Entry) -> None:
        if not self._available():
            return
        import asyncio

        value = encode_entry(key, entry)
        try:
            async with asyncio.timeout(self._timeout):
                await self._client().set(self.redis_key(key), value, px=self._ttl_ms)
        except Exception as exc:
            self._failed("SET", exc)
            return
        self._succeeded()
