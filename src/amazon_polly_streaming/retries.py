"""Optional retries of failed streams, only while no audio reached the caller.

Off by default so that the documented semantics hold (one call, one stream).
With a policy, a stream whose error says ``retry_safe`` (a retryable failure:
throttling, a service failure, HTTP 429/5xx, a lost, refused or reset
connection, a timeout, a stream cut short -- and no audio delivered yet) is
started again after an exponential backoff with full jitter. Audio is never
duplicated: once a byte was yielded, the error is raised as is.
"""

from __future__ import annotations

from .exceptions import PollyStreamingError

__all__ = ["RetryPolicy", "as_policy"]


class RetryPolicy:
    """Up to ``max_attempts`` attempts in all, sleeping ``base_delay * 2**n`` (capped, jittered)."""

    def __init__(self, max_attempts: int = 3, *, base_delay: float = 0.1, max_delay: float = 2.0) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base_delay < 0 or max_delay < 0:
            raise ValueError("delays must not be negative")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, base_delay={self.base_delay}, max_delay={self.max_delay})"
        )

    def delay(self, error: PollyStreamingError, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        # One rule, the error's own: ``retry_safe`` (worth retrying, and no
        # audio reached the caller yet).
        if attempt >= self.max_attempts or not error.retry_safe:
            return None
        import random  # only when a retry happens: keeps the package import light

        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def as_policy(value: RetryPolicy | int | None) -> RetryPolicy | None:
    if value is None:
        return None
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return RetryPolicy(max_attempts=value)
    raise TypeError("retries must be a RetryPolicy, a number of attempts, or None")
