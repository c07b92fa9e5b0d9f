"""Shared by the interop tests (``tests/test_interop*.py``); ``js/`` holds the JS SDK harness."""

from __future__ import annotations

#: The message the emulator sends with its throttling fault (``{{fault:throttling}}``), AWS's usual wording.
#: Clients find it only under the model's member name, ``message``: AWS's JS SDK also reads ``Message`` from
#: an HTTP error body but not from an exception event, and aws-sdk-polly (smithy-python) reads only
#: ``message`` everywhere.
THROTTLING_MESSAGE = "Rate exceeded"
