"""``RedisLimiter``: one count of open Polly streams for a whole fleet, kept in Redis.

The protocol (see ``_limit_scripts``): a stream's permit is a lease in a
sorted set, timed by the Redis server's clock and kept alive by one heartbeat
per event loop; callers that find the limit reached queue in arrival order
across all processes and are woken by pub/sub when a permit comes back, with
a bounded poll as a safety net. An uncontended stream costs one round trip to
enter and one, off its own path, to leave.

Redis trouble never fails a stream. When Redis does not answer (refused, reset,
past ``redis_timeout``), the limiter falls back to a per-process share,
``fallback_limit``, logs one warning and counts it, and goes back to the
shared count as soon as Redis answers again. The share counts the permits the
process already holds from Redis, so an outage adds no stream to the fleet;
on the way back the process registers every permit it holds before it takes
a new grant (a Redis restarted empty learns them again), and for
RECOVERY_WINDOW more it keeps to its share while the other processes do the
same. A Redis
that answers with a refusal (wrong password, missing ACL rights) is a
misconfiguration: ``LimiterError``, every time, no fallback.

A ``redis.asyncio`` client belongs to one event loop, so the limiter keeps
one ``LoopLink`` (client, waiters, permits, heartbeat; ``_redis_link``) per
loop it is used on. This module holds what is process-wide: the arguments,
the links, and the fallback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time

from ._limit_scripts import channel, keys
from ._redis_link import PROBE_INTERVAL, Down, LoopLink, RedisPermit
from ._redis_url import redis_location
from .exceptions import AdmissionTimeoutError
from .limits import DEFAULT_WAIT_TIMEOUT, LimiterStats, LocalLimiter, LocalPermit, check_limit, check_wait_timeout

__all__ = ["RedisLimiter", "RedisPermit"]

logger = logging.getLogger("amazon_polly_streaming")

DEFAULT_LEASE = 10.0
DEFAULT_REDIS_TIMEOUT = 0.5
#: Leases longer than a Polly stream's 10 minutes protect nothing.
MAX_LEASE = 600.0
#: After Redis answers again, how long a process still keeps to its fallback
#: share: the other processes on the fallback probe (and so re-register their
#: streams before any grant) within PROBE_INTERVAL, and their heartbeat beats
#: every PROBE_INTERVAL meanwhile; twice that covers a probe that was slow.
RECOVERY_WINDOW = 2 * PROBE_INTERVAL


class RedisLimiter:
    """At most ``limit`` Polly streams at once across every process that shares ``url`` and ``name``.

    * ``url`` -- ``redis://[user:password@]host:port/db`` (``rediss://`` for
      TLS, ``unix://`` for a socket).
    * ``limit`` -- the fleet's concurrency (the account's quota for the
      region, or the part of it this fleet may use).
    * ``name`` -- separates fleets (or regions) on one Redis.
    * ``lease_seconds`` (10) -- a permit is a lease on the Redis clock, renewed
      every third of it while the stream runs; a process that dies frees its
      permits within this long.
    * ``wait_timeout`` (30) -- the longest a stream waits for a permit before
      :class:`~amazon_polly_streaming.exceptions.AdmissionTimeoutError`.
    * ``fallback_limit`` (``max(1, limit // 4)``) -- how many streams this
      process runs in all (those it holds from Redis included) while Redis is
      unreachable. Set it to about ``limit / processes``.
    * ``redis_timeout`` (0.5) -- past this a Redis command counts as
      unanswered and the fallback takes over.

    Construction does no I/O; a malformed URL or a bad argument raises here,
    a refused password or ACL at the first stream (``LimiterError``).
    """

    def __init__(
        self,
        url: str,
        *,
        limit: int,
        name: str,
        lease_seconds: float = DEFAULT_LEASE,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        fallback_limit: int | None = None,
        redis_timeout: float = DEFAULT_REDIS_TIMEOUT,
    ) -> None:
        self.limit = check_limit("limit", limit)
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        if "{" in name or "}" in name:
            # The name is the keys' hash tag ({name}), which keeps them in one Redis Cluster slot.
            raise ValueError(f"name must not contain '{{' or '}}': {name!r}")
        self.name = name
        self.lease_seconds = _seconds("lease_seconds", lease_seconds)
        if self.lease_seconds > MAX_LEASE:
            raise ValueError(f"lease_seconds must be at most {MAX_LEASE:.0f} (a Polly stream lasts 10 minutes)")
        self.wait_timeout = check_wait_timeout(wait_timeout)
        self.fallback_limit = (
            max(1, limit // 4) if fallback_limit is None else check_limit("fallback_limit", fallback_limit)
        )
        self.redis_timeout = _seconds("redis_timeout", redis_timeout)
        if not isinstance(url, str):
            raise TypeError("url must be a str")
        self._where = redis_location(url, "RedisLimiter")  # never the password
        self._url = url
        self._keys = keys(name)
        self._channel = channel(name)
        self._host = socket.gethostname()
        self._fallback = LocalLimiter(self.fallback_limit, wait_timeout=self.wait_timeout)
        self._links: dict[asyncio.AbstractEventLoop, LoopLink] = {}
        self._lock = threading.Lock()
        self._fallback_active = False
        self._next_probe = 0.0
        self._recovered_at = -RECOVERY_WINDOW
        self.fallbacks = 0
        self.throttles_seen = 0

    def __repr__(self) -> str:
        return f"RedisLimiter({self._where!r}, limit={self.limit}, name={self.name!r})"

    # ------------------------------------------------------------ per loop

    def _link(self) -> LoopLink:
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None:
            with self._lock:
                for stale in [other for other in self._links if other.is_closed()]:
                    del self._links[stale]
                link = self._links.get(loop)
                if link is None:
                    link = self._links[loop] = LoopLink(self, loop)
        return link

    def _new_id(self) -> str:
        # host:pid names the process for `polly-stream limiter`; the rest is unique.
        return f"{self._host}:{os.getpid()}:{os.urandom(8).hex()}"

    # ------------------------------------------------------------ fallback

    def _went_down(self, exc: BaseException) -> None:
        with self._lock:
            self._next_probe = time.monotonic() + PROBE_INTERVAL
            if self._fallback_active:
                return
            self._fallback_active = True
            self.fallbacks += 1
        logger.warning(
            "RedisLimiter %r: Redis at %s does not answer (%s: %s); this process admits up to %d streams "
            "on its own (fallback_limit) until it does",
            self.name,
            self._where,
            type(exc.__cause__ or exc).__name__,
            exc.__cause__ or exc,
            self.fallback_limit,
        )

    def _came_back(self) -> None:
        if not self._fallback_active:
            return
        with self._lock:
            if not self._fallback_active:
                return
            self._fallback_active = False
            self._recovered_at = time.monotonic()
        logger.warning("RedisLimiter %r: Redis at %s answers again; back to the shared limit", self.name, self._where)

    def _cautious(self) -> bool:
        """On the fallback, or within RECOVERY_WINDOW of leaving it: keep to this process's share."""
        return self._fallback_active or time.monotonic() - self._recovered_at < RECOVERY_WINDOW

    def _try_redis(self) -> bool:
        if not self._fallback_active:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._next_probe:
                return False
            self._next_probe = now + PROBE_INTERVAL  # one caller probes, the others stay local
            return True

    # ------------------------------------------------------------ the API

    async def acquire(self) -> RedisPermit:
        """A permit: from the fleet's count, or from this process's share while Redis is down."""
        link = self._link()
        loop = link.loop
        started = loop.time()
        share = None
        if self._cautious():
            # On the fallback, or just back from it while the other processes
            # re-register their streams: this process keeps to its share
            # (which counts the permits it holds) even when Redis grants.
            share = await self._share(started)
        try:
            if self._try_redis():
                try:
                    if self._fallback_active:
                        await link.reregister()  # held streams first: Redis may have restarted empty
                    permit = await link.wait_turn(self._new_id(), started, share)
                except Down as exc:
                    self._went_down(exc)
                else:
                    self._came_back()
                    return permit
            if share is None:
                share = await self._share(started)
        except BaseException:
            if share is not None:
                share.release()
            raise
        permit = RedisPermit(link, self._new_id(), loop.time() - started, share, local=True)
        link.hold(permit)
        return permit

    async def _share(self, started: float) -> LocalPermit:
        """A place in this process's fallback share, within what is left of the wait."""
        loop = asyncio.get_running_loop()
        try:
            # The time spent on Redis counts: one bound for the whole wait.
            async with asyncio.timeout(max(0.0, started + self.wait_timeout - loop.time())):
                return await self._fallback.acquire()
        except (AdmissionTimeoutError, TimeoutError) as exc:
            waited = loop.time() - started
            raise AdmissionTimeoutError(
                f"RedisLimiter {self.name!r}",
                waited,
                f"Redis unreachable; this process's fallback share of {self.fallback_limit} was full",
            ) from exc

    async def stats(self) -> LimiterStats:
        """The fleet's holders, queue and effective limit as Redis has them (this process's while it is down)."""
        link = self._link()
        try:
            ids, queued, effective, throttles = await link.call(link.stats_script, [self.limit])
        except Down:
            local = await self._fallback.stats()
            return LimiterStats(
                limit=self.limit,
                effective_limit=local.effective_limit,
                holders=local.holders,
                waiters=local.waiters,
                throttles=self.throttles_seen,
                fallbacks=self.fallbacks,
                fallback_active=True,
            )
        by_process: dict[str, int] = {}
        for raw in ids:
            label = raw.decode(errors="replace").rsplit(":", 1)[0]
            by_process[label] = by_process.get(label, 0) + 1
        return LimiterStats(
            limit=self.limit,
            effective_limit=int(float(effective)),
            holders=len(ids),
            waiters=int(queued),
            throttles=int(throttles),
            fallbacks=self.fallbacks,
            fallback_active=self._fallback_active,
            holders_by_process=by_process,
        )

    async def aclose(self) -> None:
        """Finish this event loop's pending releases (bounded) and close its Redis connections."""
        link = self._links.pop(asyncio.get_running_loop(), None)
        if link is not None:
            await link.aclose()


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be positive and finite")
    return float(value)
