"""Admission control: how many Polly streams may be open at once, in a process or across a fleet.

Polly allows an account a small number of concurrent generative streams per
region (26 by default: the Polly developer guide's "Quotas" page). A client
with a limiter takes one permit per stream before its request is sent and
gives it back when the stream ends, however it ends::

    from amazon_polly_streaming import PollyStreamingClient
    from amazon_polly_streaming.limits import RedisLimiter

    limiter = RedisLimiter("redis://127.0.0.1:6379/0", limit=26, name="polly-us-east-1")
    client = PollyStreamingClient(region="us-east-1", limiter=limiter)

* :class:`LocalLimiter` counts the streams of one process (every client and
  event loop that shares it).
* :class:`RedisLimiter` counts the streams of every process that uses the same
  Redis and ``name``: a first-come-first-served queue across the fleet,
  leases that a crashed process cannot keep, and a per-process fallback when
  Redis is unreachable. Needs the ``[redis]`` extra (``redis>=5``), imported
  only when a ``RedisLimiter`` is made.

Both shrink their effective limit when Polly throttles a stream anyway and
grow it back as streams succeed (AIMD). Waiting is bounded by
``wait_timeout``: past it the stream fails with
:class:`~amazon_polly_streaming.exceptions.AdmissionTimeoutError`, which is
safe to retry (nothing was sent). See docs/fleet.md.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field

from ._admission import NEUTRAL, SUCCESS, THROTTLED
from ._aimd import AIMDLimit
from .exceptions import AdmissionTimeoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._redis_limiter import RedisLimiter

__all__ = ["DEFAULT_WAIT_TIMEOUT", "LimiterStats", "LocalLimiter", "RedisLimiter"]

#: Seconds a stream waits for a permit before ``AdmissionTimeoutError``: long
#: enough to ride out a burst (a turn of speech lasts a few seconds), short
#: enough that a conversation is not left silent for minutes.
DEFAULT_WAIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class LimiterStats:
    """A limiter's state; for a ``RedisLimiter`` the fleet's, as Redis holds it."""

    #: The configured ``limit``.
    limit: int
    #: How many may hold a permit now (``limit`` shrunk by throttles, AIMD).
    effective_limit: int
    #: Streams holding a permit.
    holders: int
    #: Streams waiting for one.
    waiters: int
    #: ThrottlingExceptions reported by streams that held a permit.
    throttles: int
    #: How many times this process fell back to its own share (Redis unreachable).
    fallbacks: int = 0
    #: True while it runs on the fallback share.
    fallback_active: bool = False
    #: Holders by process (``host:pid``); a ``LocalLimiter`` reports none.
    holders_by_process: dict[str, int] = field(default_factory=dict)


def check_limit(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def check_wait_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("wait_timeout must be a number of seconds")
    if not 0 < value < float("inf"):
        raise ValueError("wait_timeout must be positive and finite: every wait has a bound")
    return float(value)


class _Waiter:
    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


class LocalPermit:
    """A permit of a :class:`LocalLimiter`."""

    __slots__ = ("_limiter", "released", "wait")

    def __init__(self, limiter: LocalLimiter, wait: float) -> None:
        self._limiter = limiter
        self.wait = wait
        self.released = False

    def release(self, outcome: str = NEUTRAL) -> None:
        self._limiter._release(self, outcome)


class LocalLimiter:
    """At most ``limit`` streams at once in this process; further ones wait in FIFO order.

    One instance may be shared by several clients, event loops and threads.
    ``wait_timeout`` bounds each wait (seconds, finite). When Polly throttles
    a stream anyway, the effective limit shrinks (x0.9 per throttle) and grows
    back by one permit per ``effective`` successful streams, never below 1 nor
    above ``limit``.
    """

    def __init__(self, limit: int, *, wait_timeout: float = DEFAULT_WAIT_TIMEOUT) -> None:
        self.limit = check_limit("limit", limit)
        self.wait_timeout = check_wait_timeout(wait_timeout)
        self._aimd = AIMDLimit(self.limit)
        self._lock = threading.Lock()
        self._holders = 0
        self._waiters: deque[_Waiter] = deque()
        self._throttles = 0

    def __repr__(self) -> str:
        return f"LocalLimiter({self.limit}, holders={self._holders}, waiters={len(self._waiters)})"

    @property
    def effective_limit(self) -> int:
        return self._aimd.effective

    async def acquire(self) -> LocalPermit:
        """A permit, waiting (FIFO) up to ``wait_timeout``; a cancelled waiter leaves the queue at once."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._waiters and self._holders < self._aimd.effective:
                self._holders += 1
                return LocalPermit(self, 0.0)
            waiter = _Waiter(loop)
            self._waiters.append(waiter)
        started = loop.time()
        try:
            async with asyncio.timeout(self.wait_timeout):
                await waiter.future
        except BaseException as exc:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:
                if isinstance(exc, TimeoutError):
                    return LocalPermit(self, loop.time() - started)  # granted as the time ran out: keep it
                self._give_back(NEUTRAL)  # cancelled after the grant: pass the place on
            if isinstance(exc, TimeoutError):
                waited = loop.time() - started
                raise AdmissionTimeoutError(
                    f"LocalLimiter({self.limit})", waited, f"effective limit {self._aimd.effective}"
                ) from None
            raise
        return LocalPermit(self, loop.time() - started)

    def charge(self) -> LocalPermit:
        """A permit taken whatever the count (it may pass ``limit``): one held elsewhere that this share must count.

        ``RedisLimiter`` charges its fallback share with every permit Redis
        granted, so that while Redis is down the process admits only what its
        share has left after the streams it already runs.
        """
        with self._lock:
            self._holders += 1
        return LocalPermit(self, 0.0)

    def _release(self, permit: LocalPermit, outcome: str) -> None:
        with self._lock:
            if permit.released:
                return
            permit.released = True
        self._give_back(outcome)

    def _give_back(self, outcome: str) -> None:
        with self._lock:
            if outcome == THROTTLED:
                self._aimd.on_throttle()
                self._throttles += 1
            elif outcome == SUCCESS:
                self._aimd.on_success()
            self._holders -= 1
            granted = []
            while self._waiters and self._holders < self._aimd.effective:
                waiter = self._waiters.popleft()
                waiter.granted = True
                self._holders += 1
                granted.append(waiter)
        for waiter in granted:
            try:
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
            except RuntimeError:  # its loop is closed: nobody will take the place
                self._give_back(NEUTRAL)

    async def stats(self) -> LimiterStats:
        with self._lock:
            return LimiterStats(
                limit=self.limit,
                effective_limit=self._aimd.effective,
                holders=self._holders,
                waiters=len(self._waiters),
                throttles=self._throttles,
            )


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def __getattr__(name: str) -> object:
    # RedisLimiter lives in its own module, which imports redis.asyncio only
    # when one is made; importing this module stays light.
    if name == "RedisLimiter":
        from ._redis_limiter import RedisLimiter

        return RedisLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
