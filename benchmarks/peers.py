"""The other Python clients, each installed into its own virtualenv on Python 3.12+.

Used by the benchmark (``run.py``) and by the interop tests. The virtualenvs
are cached under ``.bench-venvs/`` at the repository root (or
``$POLLY_PEER_VENVS``); a venv is rebuilt when its requirement or interpreter
changes. Creation is serialized with a lock file, so a test run and a
benchmark run can share the cache.

Each peer has a driver script here (``Peer.driver``), run by the peer's own
interpreter with this directory on ``PYTHONPATH``; see ``workloads.py`` for
its command line.

Every client process, the benchmark's and the tests', starts from
``clean_env()``: none of the machine's AWS settings reach it (the test suite's
own process gets the same with ``is_aws_setting`` and ``AWS_ISOLATION``, in
``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = Path(os.environ.get("POLLY_PEER_VENVS") or HERE.parent / ".bench-venvs")
#: The peers do not install on older interpreters.
PEER_MIN_PYTHON = (3, 12)


@dataclass(frozen=True)
class Peer:
    name: str
    requirement: str
    driver: str
    module: str  # what the import-time workload imports ("a,b" for several)
    distribution: str  # for reporting the installed version


PEERS = (
    Peer(
        "amazon-polly-streaming 1.1.0",
        "amazon-polly-streaming==1.1.0",
        "peer_polly_1_1.py",
        "amazon_polly_streaming",
        "amazon-polly-streaming",
    ),
    # Bidirectional streaming needs the HTTP/2 (awscrt) transport, which the client does not import itself.
    Peer(
        "aws-sdk-polly",
        "aws-sdk-polly[awscrt]",
        "peer_aws_sdk_polly.py",
        "aws_sdk_polly.client,smithy_http.aio.crt",
        "aws-sdk-polly",
    ),
)


# --------------------------------------------------------------------------- a clean environment

#: What stands in for the machine's AWS settings: config and credentials files that are empty, and no
#: instance role (botocore's chain would otherwise end by asking 169.254.169.254 for one).
AWS_ISOLATION = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: A client started here only ever talks to a loopback emulator: a proxy would carry it elsewhere.
PROXY_VARIABLES = frozenset(
    name for base in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY") for name in (base, base.lower())
)


def is_aws_setting(name: str) -> bool:
    """Whether an environment variable is one of AWS's SDK settings.

    They all are ``AWS_*``: botocore's (``botocore/configprovider.py``: profile, region, keys, session
    token, ``AWS_ENDPOINT_URL*``, ``AWS_CA_BUNDLE``, retries, FIPS, ...; ``botocore/credentials.py``:
    ``AWS_CONTAINER_CREDENTIALS_*``, ``AWS_WEB_IDENTITY_TOKEN_FILE``, ``AWS_ROLE_ARN``, ...), the JS SDK's
    (``@smithy/node-config-provider``, ``@aws-sdk/credential-provider-env``) and smithy-python's.
    """
    return name.startswith("AWS_")


def clean_env(environ: Mapping[str, str] | None = None, drop: Iterable[str] = (), **settings: str) -> dict[str, str]:
    """``environ`` (by default this process's) as a client process should see it, plus ``settings``.

    Without the machine's AWS settings, proxies or the names in ``drop``, and with ``AWS_ISOLATION``: a
    developer's profile, region, keys, endpoint or CA bundle never reach a client that a benchmark or a
    test starts. What a client needs (credentials, endpoint) is given to it explicitly, in ``settings``
    or on its command line.
    """
    dropped = PROXY_VARIABLES.union(drop)
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if not is_aws_setting(name) and name not in dropped}
    env.update(AWS_ISOLATION)
    env.update(settings)
    return env


# --------------------------------------------------------------------------- interpreters and venvs


def python_version(python: str) -> tuple[int, int] | None:
    """(major, minor) of an interpreter, or None when it does not run."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def _pyenv_root() -> str | None:
    root = os.environ.get("PYENV_ROOT")
    if root:
        return root
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30, check=False)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    default = os.path.expanduser("~/.pyenv")
    return default if os.path.isdir(default) else None


def find_python(minimum: tuple[int, int] = PEER_MIN_PYTHON) -> str | None:
    """An interpreter at least ``minimum``: $POLLY_PEER_PYTHON, then PATH, then pyenv's versions."""
    candidates = [os.environ.get("POLLY_PEER_PYTHON", "")]
    candidates += [shutil.which(f"python3.{minor}") or "" for minor in range(15, minimum[1] - 1, -1)]
    root = _pyenv_root()
    if root:
        found = glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3"))

        def key(path: str) -> tuple[int, ...]:
            version = Path(path).parent.parent.name
            return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))

        candidates += sorted(found, key=key, reverse=True)
    for candidate in filter(None, candidates):
        version = python_version(candidate)
        if version is not None and version >= minimum:
            return candidate
    return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed): installs shared between concurrent runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no concurrent runs there
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _marker_text(requirements: list[str], python: str) -> str:
    return "\n".join([*requirements, f"python={os.path.realpath(python)}"]) + "\n"


def ensure_requirements(name: str, requirements: list[str], python: str, venvs: Path = VENVS) -> Path:
    """A cached virtualenv ``venvs/name`` made with ``python`` holding ``requirements``; its interpreter."""
    venv = venvs / name
    interpreter = venv / "bin" / "python"
    marker = venv / ".installed"
    wanted = _marker_text(requirements, python)
    with locked(venvs / f".{name}.lock"):
        if interpreter.exists() and marker.exists():
            found = marker.read_text()
            if found == wanted:
                return interpreter
            if found.strip() == "\n".join(requirements):  # written before the interpreter was recorded
                marker.write_text(wanted)
                return interpreter
        if venv.exists():
            shutil.rmtree(venv)
        print(f"installing {' '.join(requirements)} into {venv} (first run only) ...", file=sys.stderr, flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
        pip = [str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *requirements], check=True, timeout=900)
        marker.write_text(wanted)
    return interpreter


def venv_name(peer: Peer) -> str:
    return peer.requirement.replace("[", "-").replace("]", "").replace("==", "-")


def ensure_venv(peer: Peer, python: str) -> Path:
    """The peer's interpreter, installing the peer on first use."""
    return ensure_requirements(venv_name(peer), [peer.requirement], python)


def installed_version(interpreter: Path | str, distribution: str) -> str | None:
    out = subprocess.run(
        [str(interpreter), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return out.stdout.strip() or None if out.returncode == 0 else None


def stop_process(process: subprocess.Popen[Any] | None) -> None:
    """SIGTERM, so that its own clean-up runs (an emulator removes its keys' folder), then SIGKILL after 10 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
