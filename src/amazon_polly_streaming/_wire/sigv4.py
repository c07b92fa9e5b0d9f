"""AWS Signature Version 4 for the initial HTTP request (header signing).

Sans-IO and clock-free: the caller passes the time. The same functions sign
(client) and verify (emulator), so the two can only agree for the right reason:
both follow AWS's published test suite, which ``tests/test_sigv4.py`` replays.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import quote, unquote

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "STREAMING_PAYLOAD",
    "Authorization",
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "credential_scope",
    "derive_signing_key",
    "parse_authorization",
    "sign_request",
    "string_to_sign",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#: ``x-amz-content-sha256`` value that announces a signed event stream body.
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-EVENTS"

_SPACES = re.compile(r"\s+")
_UNRESERVED = "-_.~"


def derive_signing_key(secret_access_key: str, datestamp: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for one day, region and service."""
    key = hmac.digest(b"AWS4" + secret_access_key.encode("utf-8"), datestamp.encode("ascii"), "sha256")
    key = hmac.digest(key, region.encode("utf-8"), "sha256")
    key = hmac.digest(key, service.encode("utf-8"), "sha256")
    return hmac.digest(key, b"aws4_request", "sha256")


def credential_scope(datestamp: str, region: str, service: str) -> str:
    return f"{datestamp}/{region}/{service}/aws4_request"


def canonical_uri(path: str, *, normalize: bool = True) -> str:
    """URI-encode the path as sent (so ``%`` becomes ``%25``: AWS's double encoding).

    With ``normalize`` (every service but S3), dot segments and repeated
    slashes are removed first, keeping a trailing slash.
    """
    if not path:
        return "/"
    if normalize:
        segments: list[str] = []
        for segment in path.split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                if segments:
                    segments.pop()
                continue
            segments.append(segment)
        trailing = "/" if path.endswith(("/", "/.", "/..")) and segments else ""
        path = "/" + "/".join(segments) + trailing
    return quote(path, safe="/" + _UNRESERVED)


def canonical_query(query: str) -> str:
    """Sort the query parameters by encoded name, then value, each URI-encoded once."""
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        pairs.append(
            (quote(unquote(name), safe=_UNRESERVED), quote(unquote(value), safe=_UNRESERVED)),
        )
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def canonical_headers(
    headers: Iterable[tuple[str, str]],
    signed: Iterable[str] | None = None,
) -> tuple[str, str]:
    """Return (canonical header block, signed header list).

    Names are lower-cased and sorted; values are trimmed with inner runs of
    white space collapsed; repeated names join their values with ``,`` (no
    space), in the order they appear. With ``signed`` only those names are
    used (verification); otherwise all of ``headers`` are.
    """
    wanted = None if signed is None else set(signed)
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if wanted is not None and lower not in wanted:
            continue
        merged.setdefault(lower, []).append(_SPACES.sub(" ", value.strip()))
    names = sorted(merged)
    block = "".join(f"{name}:{','.join(merged[name])}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    payload_hash: str,
    *,
    signed: Iterable[str] | None = None,
    normalize: bool = True,
) -> tuple[str, str]:
    """Return (canonical request, signed header list)."""
    block, signed_names = canonical_headers(headers, signed)
    text = "\n".join(
        (
            method.upper(),
            canonical_uri(path, normalize=normalize),
            canonical_query(query),
            block,
            signed_names,
            payload_hash,
        ),
    )
    return text, signed_names


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


class Authorization(NamedTuple):
    """A signed request's ``authorization`` header and its raw signature.

    The raw signature seeds the event-signature chain.
    """

    header: str
    signature: bytes

    def __repr__(self) -> str:
        return "Authorization(<redacted>)"


def sign_request(
    *,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    payload_hash: str,
    access_key_id: str,
    signing_key: bytes,
    scope: str,
    amz_date: str,
    query: str = "",
) -> Authorization:
    """Sign with a key from :func:`derive_signing_key` for ``scope``'s date.

    ``headers`` must already contain ``host`` and ``x-amz-date`` (and
    ``x-amz-security-token`` when there is one): every header given is signed.
    """
    canonical, signed_names = canonical_request(method, path, query, headers, payload_hash)
    signature = hmac.digest(signing_key, string_to_sign(amz_date, scope, canonical).encode("utf-8"), "sha256")
    header = (
        f"{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={signed_names}, Signature={signature.hex()}"
    )
    return Authorization(header, signature)


class ParsedAuthorization(NamedTuple):
    access_key_id: str
    datestamp: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request\s*,\s*SignedHeaders=(?P<signed>[a-z0-9;:\-]+)\s*,\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})\s*$",
)


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an ``authorization`` header into its parts; None when malformed."""
    match = _AUTH.match(value)
    if match is None:
        return None
    return ParsedAuthorization(
        match["akid"],
        match["date"],
        match["region"],
        match["service"],
        tuple(match["signed"].split(";")),
        match["sig"],
    )
