"""The service's errors, each in the shape Polly's service model gives it.

One value serves both ways an error reaches a client: before the response
headers as an HTTP error (status, ``x-amzn-errortype``, JSON body), and after
them as an event-stream message with ``:message-type: exception``.

The shapes come from the service model (botocore 1.44.8,
``botocore/data/polly/2016-06-10/service-2.json``): every modeled exception has
its text in the member ``message`` (lower case); ``ValidationException`` adds
``reason`` (``ValidationExceptionReason``) and ``fields``;
``ServiceQuotaExceededException`` adds ``quotaCode`` and ``serviceCode``;
``ThrottlingException`` adds ``throttlingReasons``. The HTTP statuses are the
model's ``httpStatusCode`` (Validation 400, ServiceQuotaExceeded 402,
Throttling 400, ServiceFailure 500); errors outside the model come from the
Polly guide's "Common errors" page (``AccessDeniedException``: 400).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .._wire.eventstream import encode_headers, encode_message

__all__ = [
    "ServiceError",
    "access_denied",
    "invalid_event",
    "quota_exceeded",
    "service_failure",
    "throttling",
    "validation",
]

_JSON = "application/json"


@dataclass(frozen=True)
class ServiceError:
    """One error answer: ``status`` applies when it replaces the response headers."""

    status: int
    error_type: str
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))

    def json(self) -> bytes:
        return json.dumps(self.body).encode()

    def event(self) -> bytes:
        """The error as an event-stream exception message (after the response headers)."""
        headers = encode_headers(
            ((":message-type", "exception"), (":exception-type", self.error_type), (":content-type", _JSON))
        )
        return encode_message(headers, self.json())


def validation(message: str, field_name: str | None = None, *, reason: str | None = None) -> ServiceError:
    """``ValidationException``: a field's value (``fieldValidationFailed``) or ``reason``."""
    body: dict[str, Any] = {
        "message": message,
        "reason": reason or ("fieldValidationFailed" if field_name else "other"),
    }
    if field_name:
        body["fields"] = [{"name": field_name, "message": message}]
    return ServiceError(400, "ValidationException", body)


def invalid_event(message: str, field_name: str | None = None) -> ServiceError:
    """``ValidationException`` for an event on the input stream (``invalidInboundEvent``)."""
    fields = [{"name": field_name, "message": message}] if field_name else []
    return ServiceError(
        400, "ValidationException", {"message": message, "reason": "invalidInboundEvent", "fields": fields}
    )


def quota_exceeded(quota_code: str, message: str) -> ServiceError:
    """``ServiceQuotaExceededException``; ``quota_code`` is one of the model's ``QuotaCode`` enum."""
    return ServiceError(
        402, "ServiceQuotaExceededException", {"message": message, "quotaCode": quota_code, "serviceCode": "polly"}
    )


def throttling(message: str, reason: str, resource: str) -> ServiceError:
    return ServiceError(
        400,
        "ThrottlingException",
        {"message": message, "throttlingReasons": [{"reason": reason, "resource": resource}]},
    )


def service_failure(message: str) -> ServiceError:
    return ServiceError(500, "ServiceFailureException", {"message": message})


#: The IAM action the operation needs (the Polly guide's "Actions defined by Amazon Polly").
ACTION = "polly:StartSpeechSynthesisStream"


def access_denied(error_type: str) -> ServiceError:
    """A caller without ``polly:StartSpeechSynthesisStream``.

    AWS's IAM convention is ``AccessDeniedException`` (HTTP 400 in Polly's
    common errors); the 1.1.0 release's guide says such a role "will fail with
    ValidationException". Either way the message names the action, in IAM's
    wording.
    """
    message = (
        f"User: arn:aws:iam::000000000000:user/emulator is not authorized to perform: {ACTION} "
        f"because no identity-based policy allows the {ACTION} action"
    )
    if error_type == "AccessDeniedException":
        return ServiceError(400, "AccessDeniedException", {"message": message})
    return validation(message, reason="other")
