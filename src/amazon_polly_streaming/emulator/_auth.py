"""SigV4 checks as the service makes them: the request signature and the event chain (sans-IO).

Uses the client's own signing primitives (``_wire.sigv4``, ``_wire.event_signer``); they
are verified against AWS's published vectors, so agreement here means both
sides follow AWS, not merely each other. No clock: the caller passes ``now``.
"""

from __future__ import annotations

import calendar
import hmac
import time
from collections.abc import Sequence
from typing import NamedTuple

from .._wire.event_signer import chunk_signature, date_header
from .._wire.eventstream import Message
from .._wire.sigv4 import (
    EMPTY_SHA256,
    canonical_request,
    credential_scope,
    derive_signing_key,
    parse_authorization,
    string_to_sign,
)
from ._errors import ServiceError

__all__ = ["SERVICE", "EventChain", "Verified", "verify_request"]

SERVICE = "polly"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


def _refuse(error_type: str, message: str) -> ServiceError:
    # SigV4 failures answer 403 with the error type in x-amzn-errortype, as AWS's JSON services do.
    return ServiceError(403, error_type, {"message": message})


class EventChain:
    """Verifies each envelope's chained signature (``AWS4-HMAC-SHA256-PAYLOAD``).

    Each envelope is signed with the signing key and credential scope of its
    own ``:date``, not the request's: AWS's SDKs derive both per event --
    aws-sdk-go-v2 ``aws/signer/v4/stream.go`` (``StreamSigner.GetSignature``
    derives the key and ``BuildCredentialScope`` from ``signingTime``),
    smithy-python ``aws_sdk_signers`` 0.4.0 (``AsyncEventSigner._sign_payload``
    takes the date of each event unless one is fixed in the signing
    properties, and smithy-aws-core passes only region and service), and
    aws-sdk-js-v3 (``@aws-sdk/eventstream-handler-node`` ``EventSigningStream``
    passes ``signingDate: now`` with ``:date`` = now; ``@smithy/signature-v4``
    ``SignatureV4.signEvent`` builds scope and key from ``signingDate``). So
    only that key and scope verify: a client that keeps the request's day
    after 00:00 UTC is refused.
    """

    __slots__ = ("_keys", "_previous", "_region", "_secret")

    def __init__(self, secret: str, region: str, seed_signature: bytes) -> None:
        self._secret = secret
        self._region = region
        self._previous = seed_signature
        self._keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"EventChain(region={self._region!r})"

    def _key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            if len(self._keys) > 2:  # a stream spans at most two days; keep the cache small
                self._keys.clear()
            key = self._keys[day] = derive_signing_key(self._secret, day, self._region, SERVICE)
        return key

    def verify(self, envelope: Message) -> bool:
        """True (and the chain advances) when ``envelope`` carries the next valid signature."""
        when = envelope.headers.get(":date")
        signature = envelope.headers.get(":chunk-signature")
        if not isinstance(when, int) or isinstance(when, bool) or not isinstance(signature, bytes):
            return False
        amz_date = time.strftime(_AMZ_DATE, time.gmtime(when // 1000))
        day = amz_date[:8]
        expected = chunk_signature(
            self._key(day),
            credential_scope(day, self._region, SERVICE),
            self._previous,
            date_header(when),
            amz_date,
            envelope.payload,
        )
        if not hmac.compare_digest(expected, signature):
            return False
        self._previous = signature
        return True


class Verified(NamedTuple):
    access_key_id: str
    chain: EventChain


def _parse_amz_date(value: str) -> float | None:
    try:
        return calendar.timegm(time.strptime(value, _AMZ_DATE))
    except ValueError:
        return None


def _host_headers(headers: Sequence[tuple[str, str]], signed: Sequence[str]) -> list[tuple[str, str]]:
    """The headers the signature covers, with the host as the client signed it.

    AWS's SigV4 guide: the canonical headers include "the host header
    (HTTP/1.1) or the :authority header (HTTP/2)". A client may sign either
    name: the 1.1.0 release and AWS's JS SDK v3 sign ``:authority``, ours and
    botocore sign ``host``. Over HTTP/2 a client sends ``:authority`` and
    usually no ``host`` (RFC 9113 8.3.1), so a signed ``host`` takes the value
    of ``:authority`` when the request has no ``host`` field.
    """
    names = {name for name, _ in headers}
    out = list(headers)
    if "host" in signed and "host" not in names:
        out.extend(("host", value) for name, value in headers if name == ":authority")
    return out


def verify_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Sequence[tuple[str, str]],
    credentials: dict[str, str],
    session_tokens: dict[str, str],
    clock_skew: float,
    now: float,
) -> Verified | ServiceError:
    """Check the request's SigV4 signature: who signed it and the event chain, or the service's refusal.

    ``headers`` are every field of the request, names in lower case, pseudo-header fields included.
    """
    values: dict[str, str] = {}
    for name, value in headers:
        values.setdefault(name, value)
    authorization = values.get("authorization")
    if not authorization:
        return _refuse("MissingAuthenticationTokenException", "Missing Authentication Token")
    parsed = parse_authorization(authorization)
    if parsed is None:
        return _refuse(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        )
    secret = credentials.get(parsed.access_key_id)
    if secret is None:
        return _refuse("UnrecognizedClientException", "The security token included in the request is invalid.")
    required_token = session_tokens.get(parsed.access_key_id)
    if required_token is not None and values.get("x-amz-security-token") != required_token:
        return _refuse("UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = values.get("x-amz-date", "")
    signed_at = _parse_amz_date(amz_date)
    if signed_at is None:
        return _refuse("IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.")
    stamp = time.strftime(_AMZ_DATE, time.gmtime(now))
    if signed_at < now - clock_skew:
        limit = time.strftime(_AMZ_DATE, time.gmtime(now - clock_skew))
        return _refuse(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {limit} ({stamp} - {int(clock_skew // 60)} min.)",
        )
    if signed_at > now + clock_skew:
        limit = time.strftime(_AMZ_DATE, time.gmtime(now + clock_skew))
        return _refuse(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than {limit} "
            f"({stamp} + {int(clock_skew // 60)} min.)",
        )
    if parsed.service != SERVICE:
        return _refuse("InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'.")
    if parsed.datestamp != amz_date[:8]:
        return _refuse("InvalidSignatureException", "Credential should be scoped to a valid date.")
    if "host" not in parsed.signed_headers and ":authority" not in parsed.signed_headers:
        return _refuse("InvalidSignatureException", "'Host' or ':authority' must be a signed header.")
    # Either payload-hash style: the signed streaming marker every AWS SDK sends, or the empty body's hash.
    payload_hash = values.get("x-amz-content-sha256", EMPTY_SHA256)
    if "x-amz-content-sha256" not in parsed.signed_headers:
        payload_hash = EMPTY_SHA256
    canonical, _ = canonical_request(
        method, path, query, _host_headers(headers, parsed.signed_headers), payload_hash, signed=parsed.signed_headers
    )
    scope = credential_scope(parsed.datestamp, parsed.region, SERVICE)
    key = derive_signing_key(secret, parsed.datestamp, parsed.region, SERVICE)
    expected = hmac.digest(key, string_to_sign(amz_date, scope, canonical).encode("utf-8"), "sha256")
    if not hmac.compare_digest(expected.hex(), parsed.signature):
        return _refuse("InvalidSignatureException", _MISMATCH)
    return Verified(parsed.access_key_id, EventChain(secret, parsed.region, expected))
