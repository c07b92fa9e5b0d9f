"""One event loop's part of a ``RedisLimiter``: its Redis client, waiters, permits and background tasks.

A ``redis.asyncio`` client and its pool belong to one event loop, so a limiter
keeps one ``LoopLink`` per loop it is used on. Here live the waiting loop
(a script call, then a pub/sub wake-up or the safety poll), the heartbeat that
renews this loop's leases, and the releases, each in a task of its own so
that a caller's cancellation never cuts a command whose effect on the server
is unknown: a cancelled acquire's "leave" goes out only after its script
call completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ._admission import NEUTRAL, THROTTLED
from ._aimd import BACKOFF
from ._limit_scripts import ACQUIRE, HEARTBEAT, RELEASE, STATS
from .exceptions import AdmissionTimeoutError, LimiterError

if TYPE_CHECKING:
    from ._redis_limiter import RedisLimiter
    from .limits import LocalPermit

__all__ = ["PROBE_INTERVAL", "SAFETY_POLL", "WAITER_STALE", "WAITER_TTL", "Down", "LoopLink", "RedisPermit"]

logger = logging.getLogger("amazon_polly_streaming")

#: A waiter re-checks its place at least this often, even with no wake-up
#: (a lease that expired publishes nothing). Seconds.
SAFETY_POLL = 1.0
#: A waiter that stops polling (its process died) leaves the queue after this.
WAITER_TTL = 3.0
#: A waiter that has not polled for this long is passed over by the ones
#: behind it (its ticket keeps its place until WAITER_TTL): it polls at least
#: every SAFETY_POLL, so past this it is most likely dead. Seconds.
WAITER_STALE = SAFETY_POLL + 0.5
#: While on the fallback share, how often Redis is tried again.
PROBE_INTERVAL = 1.0


def _cancel_requested() -> bool:
    """Whether this task was asked to stop, even if a timeout swallowed the CancelledError.

    A cancellation that lands while a timeout expires can come out as
    ``TimeoutError`` (redis-py's ``get_message`` then returns None); the
    task still counts the request, and a loop that checks it never outlives
    its cancellation (which ``asyncio.run``'s shutdown would wait on forever).
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _wait_event(event: asyncio.Event, seconds: float) -> None:
    """Wait up to ``seconds`` for ``event``; a cancellation is never lost."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        if _cancel_requested():
            raise asyncio.CancelledError from None


class Down(Exception):
    """Redis did not answer (internal: the caller falls back)."""


class RedisPermit:
    """A permit of a :class:`RedisLimiter` (on the fallback share when ``local`` is set).

    ``share`` is its place in the process's fallback share: every permit,
    shared or not, counts there, so that while Redis is down the process
    admits no more than its share in all. ``provisional`` marks a permit
    admitted on the fallback or in the recovery window after it: the
    limiter's own guess, so a throttle on it does not shrink the fleet's
    AIMD limit (see ``LoopLink.release``).
    """

    __slots__ = ("_link", "id", "local", "provisional", "released", "share", "wait")

    def __init__(
        self,
        link: LoopLink,
        permit_id: str,
        wait: float,
        share: LocalPermit,
        *,
        local: bool = False,
        provisional: bool = False,
    ) -> None:
        self._link = link
        self.id = permit_id
        self.wait = wait
        self.share = share
        self.local = share if local else None
        self.provisional = provisional or local
        self.released = False

    def __repr__(self) -> str:
        return f"<RedisPermit {self.id} {'released' if self.released else 'held'}>"

    def release(self, outcome: str = NEUTRAL) -> None:
        if self.released:
            return
        self.released = True
        # Only a stream admitted on the share tells the share's AIMD about Polly.
        self.share.release(outcome if self.local is not None else NEUTRAL)
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


class LoopLink:
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
        #: Releases Redis did not record (it was down or slow): permit id -> (loop time its lease ends, outcome).
        self.unreleased: dict[str, tuple[float, str]] = {}
        self.retrier: asyncio.Task[None] | None = None
        #: Set by aclose(): no new heartbeat.
        self.closing = False
        self.listener: asyncio.Task[None] | None = None
        self.heartbeat: asyncio.Task[None] | None = None
        #: Set when the last permit of this loop is released: the heartbeat stops at once.
        self.idle = asyncio.Event()

    async def call(self, script: Callable[..., Awaitable[Any]], args: list[Any]) -> Any:
        """Run one script, bounded; ``Down`` when Redis does not answer, ``LimiterError`` when it refuses."""
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
            raise Down(str(exc) or type(exc).__name__) from exc

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

    async def wait_turn(self, permit_id: str, started: float, share: LocalPermit | None = None) -> RedisPermit:
        """A shared permit; ``share`` is a place already taken in the fallback share (the recovery window)."""
        limiter = self.limiter
        loop = self.loop
        deadline = started + limiter.wait_timeout
        args = [limiter.limit, permit_id, self.lease_ms, round(WAITER_TTL * 1000), round(WAITER_STALE * 1000)]
        event = asyncio.Event()
        self.waiters.add(event)
        try:
            while True:
                event.clear()
                granted, rank, holders, effective = await self._shielded_acquire(permit_id, args)
                if granted:
                    wait = loop.time() - started
                    if share is None:
                        permit = RedisPermit(self, permit_id, wait, limiter._fallback.charge())
                    else:
                        permit = RedisPermit(self, permit_id, wait, share, provisional=True)
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
                await _wait_event(event, min(SAFETY_POLL, remaining))
        except Down:
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
            raise Down("the event loop is closed")
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda _: self.spawn(self.leave(permit_id)))
            raise

    async def leave(self, permit_id: str) -> None:
        # On failure the waiter's own lease (WAITER_TTL) takes it out of the queue.
        with contextlib.suppress(Down, LimiterError):
            await self.call(self.release_script, self._release_args(permit_id, NEUTRAL))

    async def reregister(self) -> int:
        """Put back every permit this process holds (all loops, fallback ones too) before any new grant.

        After an outage Redis may have restarted empty: granting first and
        re-registering at the next heartbeat would let Redis hand out the
        whole limit again on top of the streams still open. Idempotent by
        permit id (HEARTBEAT sets each id's lease: twice is the same as once).
        """
        ids = [permit_id for link in list(self.limiter._links.values()) for permit_id in list(link.permits)]
        if not ids:
            return 0
        missing: int = await self.call(self.heartbeat_script, [self.limiter.limit, self.lease_ms, *ids])
        held = {permit_id for link in list(self.limiter._links.values()) for permit_id in list(link.permits)}
        for permit_id in ids:
            if permit_id not in held:
                # Released while the call was in flight: it may have re-added it.
                self.spawn(self._release(permit_id, NEUTRAL))
        if missing:
            logger.info("RedisLimiter %r: %d permits re-registered after an outage", self.limiter.name, missing)
        return missing

    # ------------------------------------------------------------ holding

    def hold(self, permit: RedisPermit) -> None:
        self.permits[permit.id] = permit
        self.idle.clear()
        self._ensure_heartbeat()

    def _ensure_heartbeat(self) -> None:
        if self.heartbeat is None and self.permits and not self.closing and not self.loop.is_closed():
            self.heartbeat = self.loop.create_task(self._beat(), name="polly-limiter-heartbeat")
            self.heartbeat.add_done_callback(self._heartbeat_ended)

    def _heartbeat_ended(self, task: asyncio.Task[None]) -> None:
        # Cancelled from outside (an application's sweep of "every other
        # task") while streams still hold permits: without a heartbeat their
        # leases would lapse and other processes take their places. Once the
        # streams end (at a shutdown, they are cancelled too) it stops.
        if self.heartbeat is task:
            self.heartbeat = None  # cancelled before it started: its finally never ran
        if task.cancelled():
            self._ensure_heartbeat()

    def release(self, permit: RedisPermit, outcome: str) -> None:
        self.permits.pop(permit.id, None)
        if not self.permits:
            self.idle.set()
        if outcome == THROTTLED:
            self.limiter.throttles_seen += 1
            if permit.provisional:
                # Admitted on the fallback share or while holders re-registered
                # after an outage: the limiter's own overshoot, not a sign that
                # the quota is lower. Shrinking the fleet's limit for it would
                # cost every process for many seconds after Redis came back.
                outcome = NEUTRAL
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
        except LimiterError as exc:
            logger.debug("RedisLimiter %r: release not recorded (%s); its lease expires", self.limiter.name, exc)
        except Down:
            # Unrecorded, the permit would keep its place in the fleet's count
            # until its lease ran out (lease_seconds after Redis came back):
            # try again, once a second, while that lease could still be alive.
            self.unreleased[permit_id] = (self.loop.time() + self.limiter.lease_seconds, outcome)
            if self.retrier is None or self.retrier.done():
                self.retrier = self.spawn(self._release_again())
        # Waiters of this loop need not wait for the pub/sub echo.
        for event in self.waiters:
            event.set()

    async def _release_again(self) -> None:
        """Send the releases Redis missed (idempotent by permit id), until they land or their lease is over."""
        while self.unreleased:
            await asyncio.sleep(PROBE_INTERVAL)
            for permit_id, (until, outcome) in list(self.unreleased.items()):
                if self.loop.time() >= until:
                    del self.unreleased[permit_id]  # the lease is over: Redis dropped it anyway
                    continue
                try:
                    await self.call(self.release_script, self._release_args(permit_id, outcome))
                except Down:
                    break  # still away: all of them at the next round
                except LimiterError:
                    pass
                self.unreleased.pop(permit_id, None)
                for event in self.waiters:
                    event.set()

    async def _beat(self) -> None:
        limiter = self.limiter
        try:
            while self.permits:
                interval = limiter.lease_seconds / 3
                if limiter._fallback_active:
                    interval = min(interval, PROBE_INTERVAL)
                await _wait_event(self.idle, interval)
                ids = list(self.permits)
                if not ids:
                    break
                try:
                    missing = await self.call(self.heartbeat_script, [limiter.limit, self.lease_ms, *ids])
                except Down as exc:
                    if _cancel_requested():
                        raise asyncio.CancelledError from None
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
        if self.listener is None or self.listener.done():
            self.listener = self.loop.create_task(self._listen(), name="polly-limiter-wakeups")

    async def _listen(self) -> None:
        """Wake this loop's waiters on every release published; cancelled when the last waiter goes."""
        import redis.exceptions

        # Also ends on its own when nobody waits: a cancellation lost in
        # redis-py's read timeout must not keep it (and asyncio.run) alive.
        while self.waiters:
            pubsub = self.client.pubsub()
            try:
                async with asyncio.timeout(self.limiter.redis_timeout * 2):
                    await pubsub.subscribe(self.limiter._channel)
                while self.waiters:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=SAFETY_POLL)
                    if _cancel_requested():
                        raise asyncio.CancelledError
                    if message is not None:
                        for event in self.waiters:
                            event.set()
            except (redis.exceptions.RedisError, OSError, TimeoutError):
                if _cancel_requested():
                    raise asyncio.CancelledError from None
                # The waiters poll meanwhile; subscribe again a little later.
                await asyncio.sleep(SAFETY_POLL)
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.limiter.redis_timeout):
                        await pubsub.aclose()

    # ------------------------------------------------------------ closing

    async def aclose(self) -> None:
        self.closing = True
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.limiter.redis_timeout * 4)
        for task in (self.listener, self.heartbeat, *self.tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self.listener, self.heartbeat) if t is not None), return_exceptions=True)
        with contextlib.suppress(Exception):  # closing is best-effort
            await self.client.aclose()
