"""Requests and event chains signed the way AWS's SDKs sign them, for the emulator's tests.

Built from the SigV4 primitives (``_wire.sigv4``, ``_wire.event_signer.chunk_signature``), not the client's request
signer, so a test can sign what our client never sends: the host as ``:authority`` (AWS's JS SDK v3),
or an event chain that keeps the request's day after midnight.
"""

from __future__ import annotations

import calendar
import time

from amazon_polly_streaming._wire import sigv4 as _sigv4
from amazon_polly_streaming._wire.event_signer import chunk_signature, date_header
from amazon_polly_streaming._wire.eventstream import encode_message

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION, AUTHORITY, PATH = "us-east-1", "polly.us-east-1.amazonaws.com", "/v1/synthesisStream"
#: 2026-03-19 23:59:58 UTC: two seconds before midnight.
BEFORE_MIDNIGHT = calendar.timegm((2026, 3, 19, 23, 59, 58, 0, 0, 0))
_SIGNATURE_HEADER = b"\x10:chunk-signature\x06\x00\x20"


def amz_date(when: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))


def signed_request(
    *,
    authority: str = AUTHORITY,
    host_name: str = "host",
    when: float = BEFORE_MIDNIGHT,
    secret: str = SECRET,
    params: dict[str, str] | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> tuple[list[tuple[str, str]], bytes]:
    """All fields of a request (as the HTTP/2 shell hands them on) and its raw signature.

    ``host_name`` is the name the host is signed under: ``host`` (our client, botocore) or
    ``:authority`` (AWS's JS SDK v3, which also sends a ``host`` field). ``extra`` fields are signed too
    (a repeated name is signed as its values joined with ``,``).
    """
    stamp = amz_date(when)
    synthesis = {"x-amzn-engine": "generative", "x-amzn-outputformat": "pcm", "x-amzn-voiceid": "Matthew"}
    synthesis.update(params or {})
    signed = [
        (host_name, authority),
        ("content-type", "application/vnd.amazon.eventstream"),
        ("x-amz-content-sha256", _sigv4.STREAMING_PAYLOAD),
        ("x-amz-date", stamp),
        *synthesis.items(),
        *(extra or []),
    ]
    auth = _sigv4.sign_request(
        method="POST",
        path=PATH,
        headers=signed,
        payload_hash=_sigv4.STREAMING_PAYLOAD,
        access_key_id=KEY,
        signing_key=_sigv4.derive_signing_key(secret, stamp[:8], REGION, "polly"),
        scope=_sigv4.credential_scope(stamp[:8], REGION, "polly"),
        amz_date=stamp,
    )
    fields = [(":method", "POST"), (":scheme", "https"), (":path", PATH), (":authority", authority)]
    fields += [(name, value) for name, value in signed if name not in (":authority", "host")]
    if host_name == ":authority":
        fields.append(("host", authority))  # as the JS SDK sends it
    fields.append(("authorization", auth.header))
    return fields, auth.signature


class ChainSigner:
    """Signs envelopes: with the key and scope of each one's own ``:date`` (AWS's SDKs), or of ``fixed_day``."""

    def __init__(self, seed: bytes, *, secret: str = SECRET, fixed_day: str | None = None) -> None:
        self.previous = seed
        self._secret = secret
        self._fixed_day = fixed_day

    def sign(self, payload: bytes, epoch_ms: int) -> bytes:
        stamp = amz_date(epoch_ms // 1000)
        day = self._fixed_day or stamp[:8]
        signature = chunk_signature(
            _sigv4.derive_signing_key(self._secret, day, REGION, "polly"),
            _sigv4.credential_scope(day, REGION, "polly"),
            self.previous,
            date_header(epoch_ms),
            stamp,
            payload,
        )
        self.previous = signature
        return encode_message(date_header(epoch_ms) + _SIGNATURE_HEADER + signature, payload)
