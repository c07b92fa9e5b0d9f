"""SigV4 checks as the service makes them: the request signature and the event chain.

Uses the client's own signing primitives (``_sigv4``, ``_event_signer``); they
are verified against AWS's published vectors, so agreement here means both
sides follow AWS, not merely each other.
"""

from __future__ import annotations

import calendar
import hmac
import time
from dataclasses import dataclass

from .._event_signer import chunk_signature, date_header
from .._eventstream import Message
from .._sigv4 import (
    EMPTY_SHA256,
    canonical_request,
    credential_scope,
    derive_signing_key,
    parse_authorization,
    string_to_sign,
)

__all__ = ["AuthError", "EventChain", "verify_request"]

SERVICE = "polly"


class AuthError(Exception):
    """A request the service would refuse with HTTP 403 and ``error_type``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass
class EventChain:
    """The state needed to verify each envelope's chained signature."""

    secret: str
    region: str
    datestamp: str
    previous: bytes

    def verify(self, envelope: Message) -> bool:
        when = envelope.headers.get(":date")
        signature = envelope.headers.get(":chunk-signature")
        if not isinstance(when, int) or isinstance(when, bool) or not isinstance(signature, bytes):
            return False
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when // 1000))
        encoded_date = date_header(when)
        # The key and scope are those of the request; a chain that crosses
        # midnight may also be scoped to the envelope's own day.
        for day in dict.fromkeys((self.datestamp, amz_date[:8])):
            key = derive_signing_key(self.secret, day, self.region, SERVICE)
            expected = chunk_signature(
                key,
                credential_scope(day, self.region, SERVICE),
                self.previous,
                encoded_date,
                amz_date,
                envelope.payload,
            )
            if hmac.compare_digest(expected, signature):
                self.previous = signature
                return True
        return False


def _parse_amz_date(value: str) -> float | None:
    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None


def verify_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    credentials: dict[str, str],
    session_tokens: dict[str, str],
    clock_skew: float,
    now: float,
) -> tuple[str, EventChain]:
    """Check the request's SigV4 signature; return (access key id, event chain).

    ``headers`` are the request's regular headers plus ``("host", authority)``.
    Raises ``AuthError`` with the service's error type when it would refuse.
    """
    values: dict[str, str] = {}
    for name, value in headers:
        values.setdefault(name, value)
    authorization = values.get("authorization")
    if not authorization:
        raise AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
    parsed = parse_authorization(authorization)
    if parsed is None:
        raise AuthError(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        )
    secret = credentials.get(parsed.access_key_id)
    if secret is None:
        raise AuthError("UnrecognizedClientException", "The security token included in the request is invalid.")
    required_token = session_tokens.get(parsed.access_key_id)
    if required_token is not None and values.get("x-amz-security-token") != required_token:
        raise AuthError("UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = values.get("x-amz-date", "")
    signed_at = _parse_amz_date(amz_date)
    if signed_at is None:
        raise AuthError("IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.")
    if signed_at < now - clock_skew:
        limit = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - clock_skew))
        raise AuthError(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {limit} "
            f"({time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))} - {int(clock_skew // 60)} min.)",
        )
    if signed_at > now + clock_skew:
        limit = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now + clock_skew))
        raise AuthError(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than {limit}",
        )
    if parsed.service != SERVICE:
        raise AuthError("InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'.")
    if parsed.datestamp != amz_date[:8]:
        raise AuthError("InvalidSignatureException", "Credential should be scoped to a valid date.")
    if "host" not in parsed.signed_headers:
        raise AuthError("InvalidSignatureException", "'Host' must be a signed header.")
    # Either payload-hash style: the signed streaming marker, or the empty body's hash.
    payload_hash = values.get("x-amz-content-sha256", EMPTY_SHA256)
    if "x-amz-content-sha256" not in parsed.signed_headers:
        payload_hash = EMPTY_SHA256
    canonical, _ = canonical_request(method, path, query, headers, payload_hash, signed=parsed.signed_headers)
    scope = credential_scope(parsed.datestamp, parsed.region, SERVICE)
    key = derive_signing_key(secret, parsed.datestamp, parsed.region, SERVICE)
    expected = hmac.digest(key, string_to_sign(amz_date, scope, canonical).encode("utf-8"), "sha256")
    if not hmac.compare_digest(expected.hex(), parsed.signature):
        raise AuthError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )
    return parsed.access_key_id, EventChain(secret, parsed.region, parsed.datestamp, expected)
