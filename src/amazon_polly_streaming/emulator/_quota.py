"""The account's concurrent-stream quota (sans-IO): which stream is admitted, which is throttled.

Polly allows an account a number of concurrent generative requests per
region (26 by default: the Polly developer guide, "Quotas in Amazon Polly",
"Concurrent requests"), counted over all of the account's connections. Past
it, "any attempt to start new synthesis would be throttled due to the
concurrency limit", and a throttled request gets "a response with HTTP status
400, and a response header indicating ThrottlingException" (the same page):
an error before any response headers, not an exception event inside an
accepted stream. The model agrees: ``ThrottlingException`` is one of the
operation's errors with ``httpStatusCode`` 400, and ``"synthetic": true``,
the request-admission layer's exception (botocore 1.44.8,
``botocore/data/polly/2016-06-10/service-2.json``).

A stream counts from its admission until its last frame is written (its
``StreamClosedEvent`` or exception, before the bytes leave) or until it ends
any other way (reset, cancelled, connection lost): a client that read the
end and starts its next stream at once is never throttled by the emulator's
own lag. One ``StreamQuota`` counts for one emulator process: several
processes sharing a port each count their own streams.

The quota also keeps the time-weighted count of open streams (stream-seconds),
from which a benchmark reads the quota's utilisation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ._errors import ServiceError, throttling

__all__ = ["QuotaSlot", "QuotaStats", "StreamQuota", "too_many_streams"]


def too_many_streams() -> ServiceError:
    """The refusal of a stream over the account's concurrency quota (HTTP 400 before the headers)."""
    return throttling("Too many concurrent streams", "ConcurrentStreamsExceeded", "synthesisStream")


class QuotaStats(NamedTuple):
    """A reading of the quota: counts since the emulator started, and the stream-seconds so far."""

    limit: int | None
    active: int
    peak: int
    admitted: int
    throttled: int
    #: The integral of open streams over time, up to ``at`` (the quota's clock, in seconds).
    stream_seconds: float
    at: float


class QuotaSlot:
    """One admitted stream's place in the quota; ``release`` is idempotent."""

    __slots__ = ("_quota",)

    def __init__(self, quota: StreamQuota) -> None:
        self._quota: StreamQuota | None = quota

    @property
    def held(self) -> bool:
        return self._quota is not None

    def release(self) -> None:
        quota, self._quota = self._quota, None
        if quota is not None:
            quota._release()


class StreamQuota:
    """At most ``limit`` streams at once (None: no limit, streams are still counted)."""

    def __init__(self, limit: int | None, clock: Callable[[], float]) -> None:
        if limit is not None and limit < 1:
            raise ValueError("max_active_streams must be at least 1")
        self.limit = limit
        self._clock = clock
        self.active = 0
        self.peak = 0
        self.admitted = 0
        self.throttled = 0
        self._stream_seconds = 0.0
        self._since = clock()

    def _advance(self) -> float:
        now = self._clock()
        self._stream_seconds += self.active * (now - self._since)
        self._since = now
        return now

    def admit(self) -> QuotaSlot | None:
        """A place for one more stream, or None: throttle it (``too_many_streams()``)."""
        if self.limit is not None and self.active >= self.limit:
            self.throttled += 1
            return None
        self._advance()
        self.active += 1
        self.admitted += 1
        self.peak = max(self.peak, self.active)
        return QuotaSlot(self)

    def _release(self) -> None:
        self._advance()
        self.active -= 1

    def stats(self) -> QuotaStats:
        at = self._advance()
        return QuotaStats(self.limit, self.active, self.peak, self.admitted, self.throttled, self._stream_seconds, at)
