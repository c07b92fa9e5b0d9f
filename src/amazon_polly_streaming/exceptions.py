"""Every error the client raises, in two families that never catch each other.

* ``ServiceException`` and its subclasses: Polly answered and said no. The four
  modeled types carry the service's structured fields. Not a ``RuntimeError``.
* ``TransportError`` and its subclasses (all ``RuntimeError``, as the public
  contract promises): the conversation itself failed -- connect, TLS, HTTP
  status, timeouts, a dropped or truncated stream, missing credentials.

Both share ``PollyStreamingError`` so that one ``except`` can catch all of them.
Bad arguments raise ``ValueError``/``TypeError`` before any I/O and are not here.

Messages and reprs never contain credentials: the values that reach an
exception are service text, header names, status codes and ids.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "AdmissionTimeoutError",
    "AuthenticationError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "CredentialsError",
    "EventStreamError",
    "HTTPStatusError",
    "IncompleteStreamError",
    "LimiterError",
    "PollyStreamingError",
    "PoolTimeoutError",
    "ProtocolError",
    "ReadTimeoutError",
    "ServiceException",
    "ServiceFailureException",
    "ServiceQuotaExceededException",
    "StreamResetError",
    "TLSError",
    "ThrottlingException",
    "TransportError",
    "ValidationException",
]


class PollyStreamingError(Exception):
    """Base of every error this library raises on purpose."""

    #: True when the error came before any audio reached the caller, so that
    #: retrying cannot duplicate speech. Set by the client when it raises.
    audio_delivered: bool = False
    #: True for failures that a retry may cure (throttling, service failure,
    #: lost connections, timeouts). A retry is only *safe* if also
    #: ``not audio_delivered``.
    retryable: bool = False

    @property
    def retry_safe(self) -> bool:
        """A retry is both worth trying and cannot duplicate audio."""
        return self.retryable and not self.audio_delivered


# --------------------------------------------------------------------------- service


class ServiceException(PollyStreamingError):
    """An error reported by Polly, as an exception event or an error response.

    ``error_type`` is Polly's name for it (``type(exc).__name__`` for the
    modeled types); ``details`` holds the whole JSON body the service sent.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        request_id: str | None = None,
        status_code: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__
        self.request_id = request_id
        self.status_code = status_code
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        text = self.message or self.error_type
        if self.request_id:
            return f"{text} (request id {self.request_id})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, error_type={self.error_type!r}, request_id={self.request_id!r})"
        )


class ValidationException(ServiceException):
    """The request or an input event was invalid (HTTP 400)."""

    @property
    def reason(self) -> str | None:
        """``unsupportedOperation``, ``fieldValidationFailed``, ``other`` or ``invalidInboundEvent``."""
        value = self.details.get("reason")
        return value if isinstance(value, str) else None

    @property
    def fields(self) -> list[dict[str, Any]]:
        """The offending fields, each ``{"name": ..., "message": ...}``."""
        value = self.details.get("fields")
        return list(value) if isinstance(value, list) else []


class ServiceQuotaExceededException(ServiceException):
    """A quota was exceeded, e.g. the 5 s input idle or the 10 min stream limit (HTTP 402)."""

    retryable = False

    @property
    def quota_code(self) -> str | None:
        """E.g. ``input-stream-inbound-event-timeout`` or ``input-stream-timeout``."""
        value = self.details.get("quotaCode")
        return value if isinstance(value, str) else None

    @property
    def service_code(self) -> str | None:
        value = self.details.get("serviceCode")
        return value if isinstance(value, str) else None


class ThrottlingException(ServiceException):
    """Too many requests (HTTP 400 when sent as an error response)."""

    retryable = True

    @property
    def throttling_reasons(self) -> list[dict[str, Any]]:
        """Each ``{"reason": ..., "resource": ...}``."""
        value = self.details.get("throttlingReasons")
        return list(value) if isinstance(value, list) else []


class ServiceFailureException(ServiceException):
    """Polly failed internally (HTTP 500)."""

    retryable = True


#: Modeled exception types by Polly's name for them.
MODELED_EXCEPTIONS: dict[str, type[ServiceException]] = {
    cls.__name__: cls
    for cls in (
        ValidationException,
        ServiceQuotaExceededException,
        ThrottlingException,
        ServiceFailureException,
    )
}


# ------------------------------------------------------------------------- transport


class TransportError(PollyStreamingError, RuntimeError):
    """The exchange with the endpoint failed; no service verdict was received."""

    retryable = True


class ConnectError(TransportError):
    """The connection could not be opened (refused, DNS, unreachable, proxy)."""


class TLSError(ConnectError):
    """TLS failed: certificate verification, host name, or ALPN did not give ``h2``."""

    retryable = False


class ConnectTimeoutError(ConnectError, TimeoutError):
    """Opening the connection (TCP, TLS, HTTP/2 preface) took longer than ``connect_timeout``."""


class ReadTimeoutError(TransportError, TimeoutError):
    """The server sent nothing for ``read_timeout`` seconds while it owed a response."""


class PoolTimeoutError(TransportError, TimeoutError):
    """No pooled connection became free within ``pool_timeout`` seconds."""

    # The caller's own bound on waiting was reached: another attempt would
    # only wait again.
    retryable = False


class AdmissionTimeoutError(TransportError, TimeoutError):
    """The stream waited ``wait_timeout`` seconds for a permit of its limiter and got none.

    Nothing was sent: retrying is safe (the retry queues again, at the back).
    ``limit`` names the limiter (``LocalLimiter(6)``, ``RedisLimiter 'fleet'``)
    and ``waited`` says how long, in seconds.
    """

    def __init__(self, limit: str, waited: float = 0.0, detail: str = "") -> None:
        super().__init__(f"no permit of {limit} within {waited:.1f} s" + (f" ({detail})" if detail else ""))
        self.limit = limit
        self.waited = waited


class LimiterError(TransportError):
    """The limiter is misconfigured: its Redis refused the password or the commands it needs.

    Unlike an unreachable Redis (the limiter then falls back to a per-process
    share and the stream goes on), this needs a person: no retry cures it.
    """

    retryable = False


class ConnectionLostError(TransportError):
    """The connection closed or was told to go away while the stream was open."""


class StreamResetError(TransportError):
    """The server reset the HTTP/2 stream (RST_STREAM) before it ended."""

    def __init__(self, message: str, *, error_code: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class IncompleteStreamError(TransportError):
    """The response ended without ``StreamClosedEvent``: the audio may be truncated."""


class ProtocolError(TransportError):
    """The peer broke the HTTP/2 or event-stream protocol."""

    retryable = False


class EventStreamError(ProtocolError):
    """An event-stream message was malformed: bad length, checksum, or header."""


class HTTPStatusError(TransportError):
    """A non-2xx HTTP response that is not one of Polly's modeled exceptions."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.request_id = request_id
        # Throttled (429) and server-side failures (5xx) may pass; the rest
        # would fail the same way again.
        self.retryable = status_code is not None and (status_code >= 500 or status_code == 429)


class AuthenticationError(HTTPStatusError):
    """The service refused the credentials, the signature or the permission.

    Every AWS auth error type (``UnrecognizedClientException``,
    ``InvalidSignatureException``, ``IncompleteSignature``,
    ``AccessDeniedException``, ``ExpiredTokenException``, ``RequestExpired``,
    ...) whatever its HTTP status (Polly sends some with 400), and any 401/403.
    ``error_type`` names the type.
    """


class CredentialsError(TransportError):
    """No usable AWS credentials were found, or resolving them failed."""

    retryable = False
