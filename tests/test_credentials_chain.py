"""When botocore's default chain finds nothing, the error names every place it looked."""

from __future__ import annotations

from pathlib import Path

import pytest

from amazon_polly_streaming.credentials import CredentialResolver
from amazon_polly_streaming.exceptions import CredentialsError

pytestmark = pytest.mark.timeout(30)

_CLEARED = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture
def empty_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config"
    config.write_text("[profile voice]\nregion = eu-west-2\n")  # a profile without credentials
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never reach for an instance role here
    return tmp_path


async def test_the_error_names_what_was_tried(empty_chain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "voice")
    with pytest.raises(CredentialsError) as info:
        await CredentialResolver(None, environ={}).get(10.0)
    message = str(info.value)
    for tried in (
        "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
        "profile 'voice' (from AWS_PROFILE)",
        str(empty_chain / "credentials"),
        str(empty_chain / "config"),
        "SSO",
        "credential_process",
        "container role (no AWS_CONTAINER_CREDENTIALS_* set)",
        "instance role (disabled by AWS_EC2_METADATA_DISABLED)",
    ):
        assert tried in message
    assert "\n" not in message


async def test_without_a_profile_it_says_default(empty_chain: Path) -> None:
    with pytest.raises(CredentialsError, match=r"profile 'default' \(AWS_PROFILE not set\)"):
        await CredentialResolver(None, environ={}).get(10.0)
