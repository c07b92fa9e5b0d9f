"""AWS's published SigV4 test suites, replayed against our request signer."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from amazon_polly_streaming._wire.sigv4 import (
    EMPTY_SHA256,
    canonical_request,
    credential_scope,
    derive_signing_key,
    parse_authorization,
    sign_request,
    string_to_sign,
)

VECTORS = Path(__file__).parent / "vectors"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CLASSIC = VECTORS / "aws4_testsuite"
CRT = VECTORS / "aws-signing-test-suite" / "v4"
TOKEN = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"


def _parse_http(text: str) -> tuple[str, str, str, list[tuple[str, str]], bytes]:
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    # The request line's target may hold a space ("GET /example space/ HTTP/1.1").
    request_line = lines[0]
    method = request_line.split(" ", 1)[0]
    target = request_line[len(method) + 1 : request_line.rindex(" HTTP/")]
    path, _, query = target.partition("?")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[:1].isspace() and headers:  # folded continuation line
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, _, value = line.partition(":")
        headers.append((name, value))
    return method, path, query, headers, body.encode()


def _classic_cases() -> list[Path]:
    return sorted(p.parent for p in CLASSIC.rglob("*.req"))


@pytest.mark.parametrize("case", _classic_cases(), ids=lambda p: p.name)
def test_classic_suite(case: Path) -> None:
    name = case.name
    method, path, query, headers, body = _parse_http((case / f"{name}.req").read_text())
    expected_creq = (case / f"{name}.creq").read_text()
    if name == "post-sts-header-after":
        pytest.skip("token added after signing: not how Polly clients sign")
    if name == "get-vanilla-with-session-token":  # the signer adds the token header
        headers.append(("X-Amz-Security-Token", TOKEN))
    import hashlib

    payload_hash = hashlib.sha256(body).hexdigest()
    creq, signed = canonical_request(method, path, query, headers, payload_hash)
    assert creq == expected_creq
    scope = credential_scope("20150830", "us-east-1", "service")
    assert string_to_sign("20150830T123600Z", scope, creq) == (case / f"{name}.sts").read_text()
    auth = sign_request(
        method=method,
        path=path,
        query=query,
        headers=headers,
        payload_hash=payload_hash,
        access_key_id="AKIDEXAMPLE",
        signing_key=derive_signing_key(SECRET, "20150830", "us-east-1", "service"),
        scope=scope,
        amz_date="20150830T123600Z",
    )
    assert auth.header == (case / f"{name}.authz").read_text()
    assert signed


def _crt_cases() -> list[Path]:
    return sorted(p for p in CRT.iterdir() if (p / "context.json").exists())


@pytest.mark.parametrize("case", _crt_cases(), ids=lambda p: p.name)
def test_crt_suite_header_signing(case: Path) -> None:
    context = json.loads((case / "context.json").read_text())
    if context.get("sign_body"):
        pytest.skip("body signing is not used by Polly clients")
    method, path, query, headers, _ = _parse_http((case / "request.txt").read_text())
    # This suite writes request paths in decoded form ("/example space/" and
    # "/example%20space/" both mean the same path); the wire form is re-encoded.
    path = unquote(path)
    headers.append(("X-Amz-Date", "20150830T123600Z"))
    token = context["credentials"].get("token")
    if token and not context.get("omit_session_token"):
        headers.append(("X-Amz-Security-Token", token))
    creq, _ = canonical_request(method, path, query, headers, EMPTY_SHA256, normalize=context["normalize"])
    assert creq == (case / "header-canonical-request.txt").read_text()
    scope = credential_scope("20150830", context["region"], context["service"])
    sts = string_to_sign("20150830T123600Z", scope, creq)
    assert sts == (case / "header-string-to-sign.txt").read_text()
    import hmac

    key = derive_signing_key(
        context["credentials"]["secret_access_key"], "20150830", context["region"], context["service"]
    )
    assert hmac.digest(key, sts.encode(), "sha256").hex() == (case / "header-signature.txt").read_text().strip()


def test_polly_request_vector() -> None:
    vector = json.loads((VECTORS / "polly_e2e_vector.json").read_text())
    request = vector["request"]
    headers = list(request["headers"].items())
    creq, _ = canonical_request("POST", request["path"], "", headers, "STREAMING-AWS4-HMAC-SHA256-EVENTS")
    assert creq == request["canonical_request"]
    key = derive_signing_key(vector["credentials"]["secret_access_key"], "20260401", "us-east-1", "polly")
    auth = sign_request(
        method="POST",
        path=request["path"],
        headers=headers,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-EVENTS",
        access_key_id="AKIDEXAMPLE",
        signing_key=key,
        scope=credential_scope("20260401", "us-east-1", "polly"),
        amz_date="20260401T120000Z",
    )
    assert auth.header == request["authorization"]
    assert auth.signature.hex() == request["seed_signature"]
    assert "redacted" in repr(auth)
    parsed = parse_authorization(auth.header)
    assert parsed is not None
    assert parsed.access_key_id == "AKIDEXAMPLE"
    assert parsed.signature == request["seed_signature"]
    assert parsed.signed_headers[0] == "content-type"


def test_repeated_header_values_join_without_space() -> None:
    creq, _ = canonical_request(
        "POST", "/", "", [("X-Amzn-LexiconNames", "a"), ("x-amzn-lexiconnames", "b")], EMPTY_SHA256
    )
    assert "x-amzn-lexiconnames:a,b\n" in creq


def test_malformed_authorization_is_none() -> None:
    assert parse_authorization("AWS4-HMAC-SHA256 Credential=x") is None
