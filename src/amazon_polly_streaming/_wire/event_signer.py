"""The rolling signature of event-stream envelopes (``AWS4-HMAC-SHA256-PAYLOAD``).

Every event the client sends travels as the payload of an outer message whose
headers are ``:date`` and ``:chunk-signature``. Each signature covers the
previous one, starting from the request's ``Signature=``, so the server can
tell that no envelope was dropped, reordered or forged. Sans-IO: the caller
passes the time in milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable

from .eventstream import encode_message

__all__ = ["EventSigner", "amz_date", "chunk_signature", "date_header"]

_DATE_PREFIX = b"\x05:date\x08"
_SIGNATURE_PREFIX = b"\x10:chunk-signature\x06\x00\x20"
_MS = struct.Struct(">q")
_sha256 = hashlib.sha256
_hmac_digest = hmac.digest


def date_header(epoch_ms: int) -> bytes:
    """The encoded ``:date`` header (timestamp type) for ``epoch_ms``."""
    return _DATE_PREFIX + _MS.pack(epoch_ms)


_last_amz_date: tuple[int, str] = (-1, "")


def amz_date(epoch_seconds: int) -> str:
    """``YYYYMMDDTHHMMSSZ`` of ``epoch_seconds`` (UTC).

    strftime costs more than the rest of a signature: the last second's text
    is kept, for the request and the envelopes of every stream signed within
    it. (One tuple, replaced whole: safe across threads.)
    """
    global _last_amz_date
    second, text = _last_amz_date
    if second != epoch_seconds:
        text = _utc_text(epoch_seconds)
        _last_amz_date = (epoch_seconds, text)
    return text


def _utc_text(epoch_seconds: int) -> str:
    """The calendar date and time of ``epoch_seconds`` in integer arithmetic.

    The wire format has no clock and imports no ``time``: the civil date of a
    day number is Howard Hinnant's ``civil_from_days`` (the proleptic Gregorian
    calendar in 400-year eras, which is what UTC dates are).
    """
    days, second_of_day = divmod(epoch_seconds, 86400)
    days += 719468  # from 1970-01-01 to 0000-03-01, the start of an era's year
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153  # 0 is March
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (month <= 2)
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    return f"{year:04d}{month:02d}{day:02d}T{hour:02d}{minute:02d}{second:02d}Z"


def chunk_signature(
    signing_key: bytes,
    scope: str,
    previous_signature: bytes,
    encoded_date_header: bytes,
    amz_date: str,
    payload: bytes,
) -> bytes:
    """The raw 32-byte signature of one envelope."""
    to_sign = (
        f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous_signature.hex()}\n"
        f"{_sha256(encoded_date_header).hexdigest()}\n{_sha256(payload).hexdigest()}"
    )
    return _hmac_digest(signing_key, to_sign.encode("ascii"), "sha256")


class EventSigner:
    """Wraps payloads in signed envelopes, chaining each signature to the last.

    ``signing_key`` and ``scope`` are those of the request (its date, region
    and service); ``seed_signature`` is the request's raw signature. Each
    envelope is signed with the key and scope of its own ``:date``, as AWS's
    SDKs do (aws-sdk-go-v2 ``aws/signer/v4`` stream signer, smithy-python's
    event signer, aws-sdk-js-v3 ``signMessage``: each derives the scope from
    the message's signing date), so a stream that crosses 00:00 UTC keeps a
    valid chain; ``key_for(YYYYMMDD)`` gives the key of another day.
    """

    __slots__ = ("_amz_date", "_amz_second", "_day", "_key", "_key_for", "_previous", "_scope", "_scope_suffix")

    def __init__(
        self,
        signing_key: bytes,
        scope: str,
        seed_signature: bytes,
        *,
        key_for: Callable[[str], bytes] | None = None,
    ) -> None:
        self._key = signing_key
        self._scope = scope
        self._day = scope[:8]
        self._scope_suffix = scope[8:]  # "/<region>/<service>/aws4_request"
        self._key_for = key_for
        self._previous = seed_signature
        self._amz_second = -1
        self._amz_date = ""

    def __repr__(self) -> str:
        return f"EventSigner(scope={self._scope!r})"

    @property
    def last_signature(self) -> bytes:
        return self._previous

    def sign(self, payload: bytes, epoch_ms: int) -> bytes:
        """Return the encoded, signed envelope carrying ``payload``."""
        second = epoch_ms // 1000
        if second != self._amz_second:
            # Events within the same second share their date text.
            self._amz_second = second
            self._amz_date = date_text = amz_date(second)
            day = date_text[:8]
            if day != self._day:
                if self._key_for is None:
                    raise ValueError(f"cannot sign an envelope of {day} with the key of {self._day}")
                self._key = self._key_for(day)
                self._day = day
                self._scope = day + self._scope_suffix
        date = date_header(epoch_ms)
        signature = chunk_signature(self._key, self._scope, self._previous, date, self._amz_date, payload)
        self._previous = signature
        return encode_message(date + _SIGNATURE_PREFIX + signature, payload)
