"""Credential resolution: explicit, environment, providers; refresh; no secret in reprs."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from amazon_polly_streaming.credentials import MANDATORY_REFRESH_SECONDS, CredentialResolver, Credentials
from amazon_polly_streaming.exceptions import CredentialsError

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN//////////"


def test_repr_hides_secrets() -> None:
    creds = Credentials("AKIDEXAMPLE1234", SECRET, TOKEN)
    for text in (repr(creds), str(creds)):
        assert SECRET not in text
        assert TOKEN not in text
        assert "AKIDEXAMPLE1234" not in text


def test_empty_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Credentials("", SECRET)


async def test_explicit_tuple() -> None:
    resolver = CredentialResolver(("AKID", SECRET, TOKEN), environ={})
    creds = await resolver.get(5.0)
    assert (creds.access_key_id, creds.session_token) == ("AKID", TOKEN)


async def test_environment_without_botocore() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
    creds = await CredentialResolver(None, environ=env).get(5.0)
    assert creds.access_key_id == "AKIDENV"
    assert creds.session_token == TOKEN


async def test_provider_runs_off_the_loop_and_refreshes_before_expiry() -> None:
    calls: list[str] = []
    loop_thread = threading.get_ident()

    def provider() -> Credentials:
        assert threading.get_ident() != loop_thread, "providers must not run on the event loop"
        calls.append("x")
        # The first credentials expire inside the mandatory refresh window; the second do not.
        lifetime = MANDATORY_REFRESH_SECONDS - 60 if len(calls) == 1 else 3600
        return Credentials(f"AKID{len(calls)}", SECRET, expiry=time.time() + lifetime)

    resolver = CredentialResolver(provider, environ={})
    first = await resolver.get(5.0)
    second = await resolver.get(5.0)
    third = await resolver.get(5.0)
    assert (first.access_key_id, second.access_key_id, third.access_key_id) == ("AKID1", "AKID2", "AKID2")
    assert len(calls) == 2


async def test_botocore_like_objects() -> None:
    class Frozen:
        access_key = "AKIDBOTO"
        secret_key = SECRET
        token = None

    class BotocoreCredentials:
        def get_frozen_credentials(self) -> Any:
            return Frozen()

    creds = await CredentialResolver(BotocoreCredentials(), environ={}).get(5.0)
    assert creds.access_key_id == "AKIDBOTO"


async def test_failing_provider_is_a_credentials_error_without_secrets() -> None:
    def provider() -> Credentials:
        raise OSError("sso token expired")

    with pytest.raises(CredentialsError, match="sso token expired") as info:
        await CredentialResolver(provider, environ={}).get(5.0)
    assert isinstance(info.value, RuntimeError)


async def test_botocore_chain_used_when_environment_is_empty(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("botocore")
    config = tmp_path / "credentials"
    config.write_text(f"[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {SECRET}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(config))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    creds = await CredentialResolver(None, environ={}).get(5.0)
    assert creds.access_key_id == "AKIDPROFILE"


async def test_no_credentials_anywhere(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("botocore")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    with pytest.raises(CredentialsError, match="unable to locate"):
        await CredentialResolver(None, environ={}).get(5.0)
