"""pipecat's error category for each of our errors (the pipecat integration's, apart to keep it small)."""

from __future__ import annotations

from pipecat.utils.errors import ErrorCategory

from ..exceptions import (
    AuthenticationError,
    CredentialsError,
    HTTPStatusError,
    ServiceFailureException,
    ServiceQuotaExceededException,
    ThrottlingException,
    TransportError,
    ValidationException,
)

__all__ = ["error_category"]

#: Error types that a non-2xx response names for rejected credentials or
#: permissions (Polly's common errors put some of them on HTTP 400).
_AUTHENTICATION_ERRORS = frozenset(
    {"UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature", "RequestExpired"}
)
_AUTHORIZATION_ERRORS = frozenset({"AccessDeniedException"})


def error_category(exception: Exception) -> ErrorCategory | None:
    """pipecat's category for ``exception``; None leaves it to pipecat (by status code)."""
    # Polly answers throttling with HTTP 400, which pipecat's status-code
    # rule would call a permanent INVALID_REQUEST: classify by our types.
    if isinstance(exception, ThrottlingException):
        return ErrorCategory.RATE_LIMIT
    if isinstance(exception, ServiceQuotaExceededException):
        return ErrorCategory.QUOTA
    if isinstance(exception, ServiceFailureException):
        return ErrorCategory.SERVER
    if isinstance(exception, ValidationException):
        # Refused parameters (voice, engine, lexicons) fail every turn; a
        # refused event inside one stream says nothing about the next.
        return ErrorCategory.INVALID_REQUEST if exception.status_code is not None else ErrorCategory.UNKNOWN
    if isinstance(exception, AuthenticationError | CredentialsError):
        return ErrorCategory.AUTHENTICATION
    if isinstance(exception, HTTPStatusError):
        if exception.error_type in _AUTHENTICATION_ERRORS:
            return ErrorCategory.AUTHENTICATION
        if exception.error_type in _AUTHORIZATION_ERRORS:
            return ErrorCategory.AUTHORIZATION
        return None  # by its status code
    if isinstance(exception, TransportError):
        return ErrorCategory.CONNECTIVITY
    if isinstance(exception, ValueError | TypeError):
        return ErrorCategory.INVALID_REQUEST  # the service's settings
    return None
