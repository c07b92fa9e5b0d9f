"""argparse ``type=`` checks shared by ``polly-stream`` and the emulator's command line.

A bad value is a usage error (exit code 2, with the command's usage) found
while parsing, instead of a traceback or a confusing failure later.
"""

from __future__ import annotations

import argparse

__all__ = ["non_negative_number", "port_number", "positive_int", "positive_seconds"]

_INF = float("inf")


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None


def positive_seconds(value: str) -> float:
    """A positive, finite number of seconds."""
    seconds = _number(value)
    if not 0 < seconds < _INF:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {value}")
    return seconds


def non_negative_number(value: str) -> float:
    """Zero or a positive, finite number."""
    number = _number(value)
    if not 0 <= number < _INF:
        raise argparse.ArgumentTypeError(f"must be zero or more, not {value}")
    return number


def positive_int(value: str) -> int:
    """A whole number of at least 1."""
    return _whole(value, 1, None, "at least 1")


def port_number(value: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    return _whole(value, 0, 65535, "0 to 65535")


def _whole(value: str, low: int, high: int | None, expected: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < low or (high is not None and number > high):
        raise argparse.ArgumentTypeError(f"must be {expected}, not {value}")
    return number
