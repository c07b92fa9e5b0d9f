"""Amazon Polly bidirectional streaming text-to-speech for asyncio.

    client = PollyStreamingClient(region="eu-central-1")
    async for chunk in client.start_speech_synthesis_stream(text="hello", voice_id="Matthew"):
        ...

Importing the package is cheap: the network stack (asyncio, ssl, h2) loads
with the first stream.
"""

from __future__ import annotations

from ._version import __version__
from .client import PollyStreamingClient
from .credentials import Credentials
from .exceptions import (
    AdmissionTimeoutError,
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    CredentialsError,
    EventStreamError,
    HTTPStatusError,
    IncompleteStreamError,
    LimiterError,
    PollyStreamingError,
    PoolTimeoutError,
    ProtocolError,
    ReadTimeoutError,
    ServiceException,
    ServiceFailureException,
    ServiceQuotaExceededException,
    StreamResetError,
    ThrottlingException,
    TLSError,
    TransportError,
    ValidationException,
)
from .retries import RetryPolicy

__all__ = [
    "AdmissionTimeoutError",
    "AuthenticationError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "Credentials",
    "CredentialsError",
    "EventStreamError",
    "HTTPStatusError",
    "IncompleteStreamError",
    "LimiterError",
    "PollyStreamingClient",
    "PollyStreamingError",
    "PoolTimeoutError",
    "ProtocolError",
    "ReadTimeoutError",
    "RetryPolicy",
    "ServiceException",
    "ServiceFailureException",
    "ServiceQuotaExceededException",
    "StreamResetError",
    "TLSError",
    "ThrottlingException",
    "TransportError",
    "ValidationException",
    "__version__",
]
