"""The adaptive part of admission: additive increase, multiplicative decrease (sans-IO).

Modelled on Netflix concurrency-limits' ``AIMDLimit``: a limit is a small
object with one rule, apart from the code that enforces it. When Polly throttles
a stream although the limiter admitted it (another application on the account,
a quota lower than configured), the effective limit is multiplied by
``backoff``; each stream that ends cleanly adds ``1 / current`` (one whole
permit per "window" of successes, as TCP's congestion avoidance does), so the
limit climbs back within about ``limit`` streams. It never leaves
``[1, ceiling]``.

No clock and no I/O: ``LocalLimiter`` holds one of these; the Redis scripts
apply the same arithmetic on the server with the constants passed from here,
so that one rule serves the process and the fleet.
"""

from __future__ import annotations

import math

__all__ = ["BACKOFF", "AIMDLimit", "clamp"]

#: Netflix AIMDLimit's default backoff ratio.
BACKOFF = 0.9


def clamp(value: float, ceiling: int) -> float:
    """``value`` inside ``[1, ceiling]``; anything that is not a finite number becomes ``ceiling``."""
    if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
        return float(ceiling)
    return min(float(ceiling), max(1.0, float(value)))


class AIMDLimit:
    """An effective limit between 1 and ``ceiling``: ``on_throttle`` shrinks it, ``on_success`` grows it."""

    __slots__ = ("backoff", "ceiling", "current")

    def __init__(self, ceiling: int, *, backoff: float = BACKOFF) -> None:
        if isinstance(ceiling, bool) or not isinstance(ceiling, int):
            raise TypeError("limit must be an int")
        if ceiling < 1:
            raise ValueError("limit must be at least 1")
        if not 0 < backoff < 1:
            raise ValueError("backoff must be between 0 and 1")
        self.ceiling = ceiling
        self.backoff = backoff
        self.current = float(ceiling)

    def __repr__(self) -> str:
        return f"AIMDLimit(ceiling={self.ceiling}, current={self.current:.2f})"

    @property
    def effective(self) -> int:
        """How many may hold a permit now (whole permits only)."""
        return int(self.current)

    def on_throttle(self) -> None:
        self.current = throttled(self.current, self.ceiling, self.backoff)

    def on_success(self) -> None:
        self.current = succeeded(self.current, self.ceiling)


def throttled(current: float, ceiling: int, backoff: float = BACKOFF) -> float:
    return clamp(current * backoff, ceiling)


def succeeded(current: float, ceiling: int) -> float:
    current = clamp(current, ceiling)
    return clamp(current + 1.0 / current, ceiling)
