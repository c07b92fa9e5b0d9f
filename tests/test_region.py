"""The region of a client created without one: each step of boto3's lookup, and botocore as the referee."""

from __future__ import annotations

from pathlib import Path

import pytest

from amazon_polly_streaming import PollyStreamingClient
from amazon_polly_streaming._region import DEFAULT_REGION, active_profile, config_file_path, resolve_region

pytestmark = pytest.mark.timeout(30)

CONFIG = """\
[default]
region = us-west-2

[profile voice]
region = eu-west-2
output = json

[profile "with space"]
region = ca-central-1

[profile noregion]
output = text
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "config"
    path.write_text(CONFIG)
    return str(path)


def test_explicit_argument_wins_over_everything(config: str) -> None:
    env = {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-west-2", "AWS_CONFIG_FILE": config}
    assert resolve_region("ap-southeast-1", env) == "ap-southeast-1"


def test_aws_region_then_aws_default_region(config: str) -> None:
    env = {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-west-2", "AWS_CONFIG_FILE": config}
    assert resolve_region(None, env) == "us-east-1"
    del env["AWS_REGION"]
    env["AWS_PROFILE"] = "voice"
    assert resolve_region(None, env) == "us-west-2"  # AWS_DEFAULT_REGION before the profile's region


def test_empty_variables_count_as_unset(config: str) -> None:
    env = {"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_PROFILE": "", "AWS_CONFIG_FILE": config}
    assert resolve_region(None, env) == "us-west-2"  # [default]


def test_profile_named_by_aws_profile(config: str) -> None:
    assert resolve_region(None, {"AWS_PROFILE": "voice", "AWS_CONFIG_FILE": config}) == "eu-west-2"
    assert resolve_region(None, {"AWS_PROFILE": "with space", "AWS_CONFIG_FILE": config}) == "ca-central-1"


def test_aws_default_profile_wins_over_aws_profile_as_in_botocore(config: str) -> None:
    env = {"AWS_DEFAULT_PROFILE": "voice", "AWS_PROFILE": "default", "AWS_CONFIG_FILE": config}
    assert active_profile(env) == "voice"
    assert resolve_region(None, env) == "eu-west-2"


def test_default_section_without_a_profile(config: str) -> None:
    assert resolve_region(None, {"AWS_CONFIG_FILE": config}) == "us-west-2"


def test_default_config_file_is_under_home(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[profile p]\nregion = eu-central-1\n[default]\nregion = us-east-1\n")
    env = {"HOME": str(tmp_path)}
    assert config_file_path(env) == str(tmp_path / ".aws" / "config")
    assert resolve_region(None, env) == "us-east-1"
    assert resolve_region(None, {**env, "AWS_PROFILE": "p"}) == "eu-central-1"


def test_then_eu_central_1(tmp_path: Path, config: str) -> None:
    assert DEFAULT_REGION == "eu-central-1"
    assert resolve_region(None, {"AWS_CONFIG_FILE": str(tmp_path / "missing")}) == "eu-central-1"
    assert resolve_region(None, {"AWS_PROFILE": "noregion", "AWS_CONFIG_FILE": config}) == "eu-central-1"
    assert resolve_region(None, {"AWS_PROFILE": "nosuchprofile", "AWS_CONFIG_FILE": config}) == "eu-central-1"
    assert resolve_region(None, {"HOME": str(tmp_path)}) == "eu-central-1"


def test_a_later_section_of_the_same_profile_replaces_the_earlier(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("[default]\nregion = us-east-1\n[profile default]\noutput = json\n")
    assert resolve_region(None, {"AWS_CONFIG_FILE": str(path)}) == DEFAULT_REGION


def test_a_broken_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("region = us-east-1\n")  # an option outside any section
    with pytest.raises(ValueError, match=str(path)):
        resolve_region(None, {"AWS_CONFIG_FILE": str(path)})


def test_the_client_uses_it(monkeypatch: pytest.MonkeyPatch, config: str) -> None:
    # Nothing else of the machine's AWS settings is there (tests/conftest.py): no region, no endpoint.
    monkeypatch.setenv("AWS_CONFIG_FILE", config)
    monkeypatch.setenv("AWS_PROFILE", "voice")
    client = PollyStreamingClient()
    assert client.region == "eu-west-2"
    assert "polly.eu-west-2.amazonaws.com" in client.endpoint.url
    assert PollyStreamingClient("us-east-1").region == "us-east-1"


@pytest.mark.parametrize("profile", [None, "voice", "with space", "noregion"])
def test_same_answer_as_botocore(monkeypatch: pytest.MonkeyPatch, config: str, profile: str | None) -> None:
    botocore_session = pytest.importorskip("botocore.session")
    monkeypatch.setenv("AWS_CONFIG_FILE", config)
    if profile is not None:
        monkeypatch.setenv("AWS_PROFILE", profile)
    theirs = botocore_session.Session().get_config_variable("region")
    ours = resolve_region(None, {"AWS_CONFIG_FILE": config, **({"AWS_PROFILE": profile} if profile else {})})
    assert ours == (theirs or DEFAULT_REGION)
