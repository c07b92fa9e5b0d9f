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
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return number


def port_number(value: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, not {value}")
    return port
