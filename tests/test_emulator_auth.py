"""The emulator's SigV4 checks, sans-IO: the request signature (``host`` or ``:authority``) and the event chain."""

from __future__ import annotations

import pytest

from amazon_polly_streaming._wire.eventstream import EventStreamDecoder
from amazon_polly_streaming.emulator._auth import EventChain, Verified, verify_request
from amazon_polly_streaming.emulator._errors import ServiceError
from emulator_signing import BEFORE_MIDNIGHT, KEY, PATH, REGION, SECRET, ChainSigner, amz_date, signed_request

pytestmark = pytest.mark.timeout(30)


def verify(fields: list[tuple[str, str]], now: float = BEFORE_MIDNIGHT) -> Verified | ServiceError:
    return verify_request(
        method="POST",
        path=PATH,
        query="",
        headers=fields,
        credentials={KEY: SECRET},
        session_tokens={},
        clock_skew=300.0,
        now=now,
    )


@pytest.mark.parametrize("host_name", ["host", ":authority"])
def test_the_host_may_be_signed_as_host_or_authority(host_name: str) -> None:
    fields, _ = signed_request(host_name=host_name)
    verified = verify(fields)
    assert isinstance(verified, Verified), verified
    assert verified.access_key_id == KEY


@pytest.mark.parametrize("host_name", ["host", ":authority"])
def test_a_changed_authority_breaks_either_signature(host_name: str) -> None:
    fields, _ = signed_request(host_name=host_name)
    changed = [(n, "evil.example" if n in (":authority", "host") else v) for n, v in fields]
    refused = verify(changed)
    assert isinstance(refused, ServiceError)
    assert (refused.status, refused.error_type) == (403, "InvalidSignatureException")


def test_an_unsigned_host_is_refused() -> None:
    fields, _ = signed_request()
    authorization = dict(fields)["authorization"].replace(
        "SignedHeaders=content-type;host;", "SignedHeaders=content-type;"
    )
    refused = verify([(n, authorization if n == "authorization" else v) for n, v in fields])
    assert isinstance(refused, ServiceError)
    assert refused.error_type == "InvalidSignatureException"
    assert ":authority" in refused.message


def test_request_time_is_checked_against_the_given_clock() -> None:
    fields, _ = signed_request()
    assert isinstance(verify(fields, now=BEFORE_MIDNIGHT + 299), Verified)
    late = verify(fields, now=BEFORE_MIDNIGHT + 301)
    assert isinstance(late, ServiceError)
    assert "Signature expired" in late.message


# ------------------------------------------------------------------ the event chain


def _verify_chain(chain: EventChain, signer: ChainSigner, *times: float) -> list[bool]:
    results = []
    for n, when in enumerate(times):
        (message,) = EventStreamDecoder().feed(signer.sign(f"event {n}".encode(), int(when * 1000)))
        results.append(chain.verify(message))
    return results


def test_a_chain_that_crosses_midnight_verifies_with_each_envelopes_own_day() -> None:
    seed = bytes(range(32))
    chain = EventChain(SECRET, REGION, seed)
    assert _verify_chain(chain, ChainSigner(seed), BEFORE_MIDNIGHT + 1, BEFORE_MIDNIGHT + 3) == [True, True]


def test_the_request_day_does_not_verify_an_envelope_after_midnight() -> None:
    # A client that keeps the request's day (key and scope) across 00:00 UTC.
    seed = bytes(range(32))
    chain = EventChain(SECRET, REGION, seed)
    signer = ChainSigner(seed, fixed_day=amz_date(BEFORE_MIDNIGHT)[:8])
    assert _verify_chain(chain, signer, BEFORE_MIDNIGHT + 1, BEFORE_MIDNIGHT + 3) == [True, False]


def test_a_broken_link_a_wrong_secret_and_a_wrong_date_type_are_refused() -> None:
    seed = bytes(range(32))
    assert _verify_chain(EventChain(SECRET, REGION, seed), ChainSigner(bytes(32)), BEFORE_MIDNIGHT) == [False]
    wrong = ChainSigner(seed, secret="not-the-secret")
    assert _verify_chain(EventChain(SECRET, REGION, seed), wrong, BEFORE_MIDNIGHT) == [False]
    (good,) = EventStreamDecoder().feed(ChainSigner(seed).sign(b"payload", BEFORE_MIDNIGHT * 1000))
    good.headers[":date"] = str(good.headers[":date"])  # not a timestamp
    assert not EventChain(SECRET, REGION, seed).verify(good)


def test_the_chain_keeps_its_secret_out_of_its_repr() -> None:
    chain = EventChain(SECRET, REGION, bytes(32))
    assert SECRET not in repr(chain)
    assert SECRET not in repr(Verified(KEY, chain))
