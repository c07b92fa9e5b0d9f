"""The other Python clients, each installed into its own virtualenv on Python 3.12+.

Used by the benchmark and by the interop tests. The virtualenvs are cached
under ``.bench-venvs/`` in the repository (or ``$POLLY_PEER_VENVS``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = Path(os.environ.get("POLLY_PEER_VENVS", HERE.parent / ".bench-venvs"))


@dataclass(frozen=True)
class Peer:
    name: str
    requirement: str
    driver: str
    module: str  # what "import" loads, for the import-time workload


PEERS = (
    Peer(
        "amazon-polly-streaming 1.1.0", "amazon-polly-streaming==1.1.0", "peer_polly_1_1.py", "amazon_polly_streaming"
    ),
    Peer("aws-sdk-polly", "aws-sdk-polly[awscrt]", "peer_aws_sdk_polly.py", "aws_sdk_polly.client"),
)


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def find_python() -> str | None:
    """A Python >= 3.12 (the peers need it): $POLLY_PEER_PYTHON, PATH, then pyenv."""
    candidates = [os.environ.get("POLLY_PEER_PYTHON", "")]
    candidates += [shutil.which(name) or "" for name in ("python3.13", "python3.12")]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.1[2-9]*/bin/python3"), reverse=True)
    for candidate in filter(None, candidates):
        version = _version(candidate)
        if version is not None and version >= (3, 12):
            return candidate
    return None


def ensure_venv(peer: Peer, python: str) -> Path:
    """The peer's interpreter, installing it on first use."""
    slug = peer.requirement.replace("[", "-").replace("]", "").replace("==", "-")
    venv = VENVS / slug
    interpreter = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists() and interpreter.exists():
        return interpreter
    if venv.exists():
        shutil.rmtree(venv)
    VENVS.mkdir(parents=True, exist_ok=True)
    print(f"installing {peer.requirement} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", peer.requirement],
        check=True,
        timeout=900,
    )
    marker.write_text(peer.requirement)
    return interpreter
