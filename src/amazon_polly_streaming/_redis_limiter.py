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
shared count as soon as Redis answers again: the heartbeat then registers
the permits it holds (so a Redis restarted empty learns them again). A Redis
that answers with a refusal (wrong password, missing ACL rights) is a
misconfiguration: ``LimiterError``, every time, no fallback.

A ``redis.asyncio`` client belongs to one event loop, so the limiter keeps
one ``_LoopLink`` (client, waiters, permits, heartbeat) per loop it is used on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._admission import NEUTRAL, THROTTLED
from ._aimd import BACKOFF
from ._limit_scripts import ACQUIRE, HEARTBEAT, RELEASE, STATS, channel, keys
from .exceptions import AdmissionTimeoutError, LimiterError
from .limits import DEFAULT_WAIT_TIMEOUT, LimiterStats, LocalLimiter, LocalPermit, check_limit, check_wait_timeout

__all__ = ["RedisLimiter", "RedisPermit"]

logger = logging.getLogger("amazon_polly_streaming")

#: A waiter re-checks its place at least this often, even with no wake-up
#: (a lease that expired publishes nothing). Seconds.
SAFETY_POLL = 1.0
#: A waiter that stops polling (its process died) leaves the queue after this.
WAITER_TTL = 3.0
#: While on the fallback share, how often Redis is tried again.
PROBE_INTERVAL = 1.0
DEFAULT_LEASE = 10.0
DEFAULT_REDIS_TIMEOUT = 0.5
#: Leases longer than a Polly stream's 10 minutes protect nothing.
MAX_LEASE = 600.0


class _Down(Exception):
    """Redis did not answer (internal: the caller falls back)."""


class RedisPermit:
    """A permit of a :class:`RedisLimiter` (on the fallback share when ``local`` is set)."""

    __slots__ = ("_link", "id", "local", "released", "wait")

    def __init__(self, link: _LoopLink, permit_id: str, wait: float, local: LocalPermit | None = None) -> None:
        self._link = link
        self.id = permit_id
        self.wait = wait
        self.local = local
        self.released = False

    def __repr__(self) -> str:
        return f"<RedisPermit {self.id} {'released' if self.released else 'held'}>"

    def release(self, outcome: str = NEUTRAL) -> None:
        if self.released:
            return
        self.released = True
        if self.local is not None:
            self.local.release(outcome)
        self._link.release(self, outcome)


def _misconfigured(exc: BaseException) -> bool:
    """Redis answered and refused us: a person has to fix the URL, password or ACL."""
    import redis.exceptions as errors

    refused: tuple[type[BaseException], ...] = (
        errors.AuthenticationError,
        errors.AuthenticationWrongNumberOfArgsError,
        errors.NoPermissionError,
    )
    authorization = getattr(errors, "AuthorizationError", None)  # redis-py 6+
    if authorization is not None:
        refused += (authorization,)
    if isinstance(exc, refused):
        return True
    text = str(exc)
    return isinstance(exc, errors.ResponseError) and text.startswith(("NOAUTH", "WRONGPASS", "NOPERM", "DB index"))


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
      process admits on its own while Redis is unreachable. Set it to about
      ``limit / processes``.
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
        try:
            import redis.asyncio
        except ImportError as exc:
            raise ImportError("RedisLimiter needs redis-py: pip install 'amazon-polly-streaming[redis]'") from exc
        # Parses the URL (bad scheme, port or db raise ValueError) without connecting.
        pool = redis.asyncio.ConnectionPool.from_url(url)
        kwargs = pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        self._where = f"{where}/{kwargs.get('db', 0)}"  # never the password
        self._url = url
        self._keys = keys(name)
        self._channel = channel(name)
        self._host = socket.gethostname()
        self._fallback = LocalLimiter(self.fallback_limit, wait_timeout=self.wait_timeout)
        self._links: dict[asyncio.AbstractEventLoop, _LoopLink] = {}
        self._lock = threading.Lock()
        self._fallback_active = False
        self._next_probe = 0.0
        self.fallbacks = 0
        self.throttles_seen = 0

    def __repr__(self) -> str:
        return f"RedisLimiter({self._where!r}, limit={self.limit}, name={self.name!r})"

    # ------------------------------------------------------------ per loop

    def _link(self) -> _LoopLink:
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None:
            with self._lock:
                for stale in [other for other in self._links if other.is_closed()]:
                    del self._links[stale]
                link = self._links.get(loop)
                if link is None:
                    link = self._links[loop] = _LoopLink(self, loop)
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
        logger.warning("RedisLimiter %r: Redis at %s answers again; back to the shared limit", self.name, self._where)

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
        if self._try_redis():
            try:
                permit = await link.wait_turn(self._new_id(), started)
            except _Down as exc:
                self._went_down(exc)
            else:
                self._came_back()
                return permit
        try:
            local = await self._fallback.acquire()
        except AdmissionTimeoutError as exc:
            waited = loop.time() - started
            raise AdmissionTimeoutError(
                f"RedisLimiter {self.name!r}",
                waited,
                f"Redis unreachable; this process's fallback share of {self.fallback_limit} was full",
            ) from exc
        permit = RedisPermit(link, self._new_id(), loop.time() - started, local)
        link.hold(permit)
        return permit

    async def stats(self) -> LimiterStats:
        """The fleet's holders, queue and effective limit as Redis has them (this process's while it is down)."""
        link = self._link()
        try:
            ids, queued, effective, throttles = await link.call(link.stats_script, [self.limit])
        except _Down:
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


class _LoopLink:
    """The limiter on one event loop: its Redis client, waiters, permits and background tasks."""

    def __init__(self, limiter: RedisLimiter, loop: asyncio.AbstractEventLoop) -> None:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.limiter = limiter
        self.loop = loop
        timeout = limiter.redis_timeout
        # No retries inside redis-py: a command that fails is reported at
        # once, and the limiter decides (fall back, or try at the next poll).
        self.client = redis.asyncio.Redis.from_url(
            limiter._url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.acquire_script = self.client.register_script(ACQUIRE)
        self.release_script = self.client.register_script(RELEASE)
        self.heartbeat_script = self.client.register_script(HEARTBEAT)
        self.stats_script = self.client.register_script(STATS)
        self.lease_ms = round(limiter.lease_seconds * 1000)
        self.waiters: set[asyncio.Event] = set()
        self.permits: dict[str, RedisPermit] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.listener: asyncio.Task[None] | None = None
        self.heartbeat: asyncio.Task[None] | None = None
        #: Set when the last permit of this loop is released: the heartbeat stops at once.
        self.idle = asyncio.Event()

    async def call(self, script: Callable[..., Awaitable[Any]], args: list[Any]) -> Any:
        """Run one script, bounded; ``_Down`` when Redis does not answer, ``LimiterError`` when it refuses."""
        import redis.exceptions

        limiter = self.limiter
        try:
            # Connect and command each have redis_timeout; this bounds both together.
            async with asyncio.timeout(limiter.redis_timeout * 2):
                return await script(keys=limiter._keys, args=args)
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            if _misconfigured(exc):
                raise LimiterError(
                    f"RedisLimiter {limiter.name!r}: Redis at {limiter._where} refused us ({type(exc).__name__}: "
                    f"{exc}); check the URL's password and the user's ACL"
                ) from None
            raise _Down(str(exc) or type(exc).__name__) from exc

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run ``coroutine`` in a task of its own: a caller's cancellation does not stop it."""
        if self.loop.is_closed():
            coroutine.close()
            return None
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------ acquire

    async def wait_turn(self, permit_id: str, started: float) -> RedisPermit:
        limiter = self.limiter
        loop = self.loop
        deadline = started + limiter.wait_timeout
        args = [limiter.limit, permit_id, self.lease_ms, round(WAITER_TTL * 1000)]
        event = asyncio.Event()
        self.waiters.add(event)
        try:
            while True:
                event.clear()
                granted, rank, holders, effective = await self._shielded_acquire(permit_id, args)
                if granted:
                    permit = RedisPermit(self, permit_id, loop.time() - started)
                    self.hold(permit)
                    return permit
                self.ensure_listener()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    self.spawn(self.leave(permit_id))
                    waited = loop.time() - started
                    raise AdmissionTimeoutError(
                        f"RedisLimiter {limiter.name!r}",
                        waited,
                        f"limit {limiter.limit}, effective {effective}, {holders} held, {rank} ahead of it",
                    )
                try:
                    async with asyncio.timeout(min(SAFETY_POLL, remaining)):
                        await event.wait()
                except TimeoutError:
                    pass
        except _Down:
            self.spawn(self.leave(permit_id))
            raise
        except asyncio.CancelledError:
            self.spawn(self.leave(permit_id))
            raise
        finally:
            self.waiters.discard(event)
            if not self.waiters and self.listener is not None:
                # Nobody left to wake; a busy fleet keeps its waiters and so its subscription.
                self.listener.cancel()
                self.listener = None

    async def _shielded_acquire(self, permit_id: str, args: list[Any]) -> list[int]:
        # The script runs in its own task: when the caller is cancelled the
        # command still completes (it may have run on the server anyway), and
        # only then does the leave go out, so it cannot overtake the grant.
        task = self.spawn(self.call(self.acquire_script, args))
        if task is None:
            raise _Down("the event loop is closed")
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda _: self.spawn(self.leave(permit_id)))
            raise

    async def leave(self, permit_id: str) -> None:
        # On failure the waiter's own lease (WAITER_TTL) takes it out of the queue.
        with contextlib.suppress(_Down, LimiterError):
            await self.call(self.release_script, self._release_args(permit_id, NEUTRAL))

    # ------------------------------------------------------------ holding

    def hold(self, permit: RedisPermit) -> None:
        self.permits[permit.id] = permit
        self.idle.clear()
        if self.heartbeat is None:
            self.heartbeat = self.loop.create_task(self._beat(), name="polly-limiter-heartbeat")

    def release(self, permit: RedisPermit, outcome: str) -> None:
        self.permits.pop(permit.id, None)
        if not self.permits:
            self.idle.set()
        if outcome == THROTTLED:
            self.limiter.throttles_seen += 1
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.spawn(self._release(permit.id, outcome))
        elif not self.loop.is_closed():
            # Released from another thread: the loop that owns the client does it.
            self.loop.call_soon_threadsafe(lambda: self.spawn(self._release(permit.id, outcome)))

    def _release_args(self, permit_id: str, outcome: str) -> list[Any]:
        return [self.limiter.limit, permit_id, outcome, BACKOFF, self.limiter._channel]

    async def _release(self, permit_id: str, outcome: str) -> None:
        try:
            await self.call(self.release_script, self._release_args(permit_id, outcome))
        except (_Down, LimiterError) as exc:
            logger.debug("RedisLimiter %r: release not recorded (%s); its lease expires", self.limiter.name, exc)
        # Waiters of this loop need not wait for the pub/sub echo.
        for event in self.waiters:
            event.set()

    async def _beat(self) -> None:
        limiter = self.limiter
        try:
            while self.permits:
                interval = limiter.lease_seconds / 3
                if limiter._fallback_active:
                    interval = min(interval, PROBE_INTERVAL)
                try:
                    async with asyncio.timeout(interval):
                        await self.idle.wait()
                except TimeoutError:
                    pass
                ids = list(self.permits)
                if not ids:
                    break
                try:
                    missing = await self.call(self.heartbeat_script, [limiter.limit, self.lease_ms, *ids])
                except _Down as exc:
                    limiter._went_down(exc)
                    continue
                except LimiterError as exc:
                    logger.error("%s", exc)
                    continue
                limiter._came_back()
                if missing:
                    logger.info(
                        "RedisLimiter %r: %d permits re-registered (Redis restarted or this process paused)",
                        limiter.name,
                        missing,
                    )
                for permit_id in ids:
                    if permit_id not in self.permits:
                        # Released while the heartbeat was in flight: it may have re-added it.
                        self.spawn(self._release(permit_id, NEUTRAL))
        finally:
            self.heartbeat = None

    # ------------------------------------------------------------ wake-ups

    def ensure_listener(self) -> None:
        if self.listener is None:
            self.listener = self.loop.create_task(self._listen(), name="polly-limiter-wakeups")

    async def _listen(self) -> None:
        """Wake this loop's waiters on every release published; cancelled when the last waiter goes."""
        import redis.exceptions

        while True:
            pubsub = self.client.pubsub()
            try:
                async with asyncio.timeout(self.limiter.redis_timeout * 2):
                    await pubsub.subscribe(self.limiter._channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=SAFETY_POLL)
                    if message is not None:
                        for event in self.waiters:
                            event.set()
            except (redis.exceptions.RedisError, OSError, TimeoutError):
                # The waiters poll meanwhile; subscribe again a little later.
                await asyncio.sleep(SAFETY_POLL)
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.limiter.redis_timeout):
                        await pubsub.aclose()

    # ------------------------------------------------------------ closing

    async def aclose(self) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.limiter.redis_timeout * 4)
        for task in (self.listener, self.heartbeat, *self.tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self.listener, self.heartbeat) if t is not None), return_exceptions=True)
        with contextlib.suppress(Exception):  # closing is best-effort
            await self.client.aclose()
