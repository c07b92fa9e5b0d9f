"""What the core needs of a limiter: a small protocol, no implementation.

A stream takes one permit before its request is sent (``await
limiter.acquire()``) and gives it back when it ends, however it ends
(``permit.release(outcome)``, synchronous: a limiter that must talk to a
server does so in a task of its own, shielded from the caller's
cancellation). The outcome feeds the limiter's adaptive limit. The public
implementations live in :mod:`amazon_polly_streaming.limits`; this module
imports nothing, so the core never loads Redis.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

__all__ = ["NEUTRAL", "SUCCESS", "THROTTLED", "Limiter", "Permit"]

#: The stream ended with Polly's StreamClosedEvent: the limit may grow.
SUCCESS = "success"
#: Polly refused the stream with ThrottlingException: the limit shrinks.
THROTTLED = "throttled"
#: Anything else (cancelled, aborted, a transport error): says nothing about the quota.
NEUTRAL = "neutral"


class Permit(Protocol):
    """One admitted stream's place, held until ``release``."""

    #: Seconds the stream waited for admission.
    wait: float

    def release(self, outcome: str = NEUTRAL) -> None:
        """Give the place back; idempotent, never raises, never blocks."""


class Limiter(Protocol):
    async def acquire(self) -> Permit:
        """Wait (bounded) for a place; raises ``AdmissionTimeoutError`` past the limiter's wait."""
