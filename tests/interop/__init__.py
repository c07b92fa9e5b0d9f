"""Shared by the interop tests (``tests/test_interop*.py``); ``js/`` holds the JS SDK harness."""

from __future__ import annotations


def emulator_fault_message(kind: str) -> str:
    """The text the emulator means to send with a modeled-exception fault of ``kind``.

    Read under either spelling of the key: whether each client finds it is what the tests check. The
    model's member is ``message``; AWS's JS SDK also reads ``Message`` from an HTTP error body but not from
    an exception event, and aws-sdk-polly (smithy-python) reads only ``message``.
    """
    from amazon_polly_streaming.emulator._faults import EXCEPTION_KINDS

    body = EXCEPTION_KINDS[kind][2]
    message = body.get("message", body.get("Message"))
    assert isinstance(message, str)
    return message
