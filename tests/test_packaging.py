"""The distributions as a user gets them: build the sdist and wheel, install the wheel in a fresh virtualenv.

* The wheel holds the package alone (no tests) and the license.
* The sdist holds everything its tests need: unpacked, pytest collects the
  whole suite and runs a quick part of it against the sdist's own code.
* ``pip install`` of the wheel alone (the base install: h2 and botocore,
  resolved by pip from the configured registry) plus pytest: the pytest plugin
  stays out of the way of an unrelated project, its fixtures skip with the
  install hint, the CLI says what the emulator needs, and botocore's default
  credential chain (a profile) works.

Building and installing take a minute, so the module shares one build and one
virtualenv; pip's own cache makes reruns cheaper.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.install, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
HINT = "pip install 'amazon-polly-streaming[emulator]'"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV", "PYTEST_"))}
    env.update(extra)
    return env


def _run(
    command: list[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env if env is not None else _clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel), the wheel built from the sdist as ``python -m build`` does."""
    out = tmp_path_factory.mktemp("dist")
    result = _run([sys.executable, "-m", "build", "--outdir", out, ROOT])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory, dists: tuple[Path, Path]) -> Path:
    """A new virtualenv with the wheel (base install, no extras) and pytest; returns its bin folder."""
    home = tmp_path_factory.mktemp("fresh")
    venv.EnvBuilder(with_pip=True).create(home / "venv")
    bin_dir = home / "venv" / "bin"
    result = _run([bin_dir / "python", "-m", "pip", "install", "--quiet", dists[1], "pytest"])
    assert result.returncode == 0, result.stderr[-3000:]
    return bin_dir


def test_the_wheel_holds_the_package_alone(dists: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dists[1]) as wheel:
        names = wheel.namelist()
    assert all(name.startswith(("amazon_polly_streaming/", "amazon_polly_streaming-")) for name in names), names
    assert not [name for name in names if "test" in name.split("/")[0]]
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "amazon_polly_streaming/pytest_plugin.py" in names


def test_the_sdist_runs_its_own_tests(dists: tuple[Path, Path], tmp_path: Path) -> None:
    with tarfile.open(dists[0]) as sdist:
        # The JS SDK's installed packages (tests/interop/js/node_modules, made by an earlier interop run) stay out.
        assert not [name for name in sdist.getnames() if "node_modules" in name or name.endswith(".install.lock")]
        sdist.extractall(tmp_path, filter="data")
    (root,) = tmp_path.iterdir()
    assert "Apache License" in (root / "LICENSE").read_text()
    # The sdist's own code, not the checkout's: its src/ comes first on the path.
    env = _clean_env(PYTHONPATH=str(root / "src"))
    collected = _run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not install"], cwd=root, env=env)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert " tests collected" in collected.stdout or "tests collected" in collected.stdout
    quick = ["test_eventstream.py", "test_sigv4.py", "test_event_signer.py", "test_region.py", "test_protocol.py"]
    ran = _run([sys.executable, "-m", "pytest", "-q", *(f"tests/{name}" for name in quick)], cwd=root, env=env)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert " passed" in ran.stdout
    where = _run([sys.executable, "-c", "import amazon_polly_streaming as p; print(p.__file__)"], cwd=root, env=env)
    assert where.stdout.startswith(str(root / "src"))


def test_a_fresh_base_install_leaves_an_unrelated_project_alone(fresh_venv: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_unrelated.py").write_text(
        textwrap.dedent(
            """
            import sys

            def test_arithmetic():
                assert 1 + 1 == 2
                assert not {"numpy", "cryptography", "espeakng_loader"} & set(sys.modules)

            def test_wants_the_emulator(polly_env):
                raise AssertionError("skipped without the extra")
            """
        )
    )
    result = _run([fresh_venv / "python", "-m", "pytest", "-rs", "-p", "no:cacheprovider"], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout
    assert HINT in result.stdout
    assert "Error while loading plugin" not in result.stdout + result.stderr
    fixtures = _run([fresh_venv / "python", "-m", "pytest", "--fixtures", "-v", "-p", "no:cacheprovider"], cwd=project)
    assert "A local Polly emulator for the whole test session" in fixtures.stdout
    assert "Point the AWS environment at the session's emulator" in fixtures.stdout


def test_a_fresh_base_install_has_the_credential_chain(fresh_venv: Path, tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text(
        "[voice]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = not-a-real-secret\n"
    )
    (tmp_path / "config").write_text("[profile voice]\nregion = eu-west-2\n")
    env = _clean_env(
        AWS_PROFILE="voice",
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    probe = textwrap.dedent(
        """
        import asyncio, sys
        from amazon_polly_streaming import PollyStreamingClient
        from amazon_polly_streaming.credentials import CredentialResolver
        assert "botocore" not in sys.modules
        print(PollyStreamingClient().region)
        print(asyncio.run(CredentialResolver(None).get(10.0)).access_key_id)
        """
    )
    result = _run([fresh_venv / "python", "-c", probe], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["eu-west-2", "AKIDFROMPROFILE"]


def test_a_fresh_base_install_says_what_the_emulator_needs(fresh_venv: Path, tmp_path: Path) -> None:
    for args in (["emulator"], ["say", "--local", "Hello.", "-o", str(tmp_path / "x.mp3")]):
        result = _run([fresh_venv / "polly-stream", *args])
        assert result.returncode == 2, result.stderr
        assert HINT in result.stderr
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
