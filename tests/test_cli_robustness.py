"""``polly-stream say`` as an operator's tools run it: planted links, file modes.

Each test runs the real console script in a subprocess against an emulator on
loopback; what the child inherits is set in ``preexec_fn`` (it runs in the
child, after fork and before exec, so ``os.getpid()`` there is the CLI's pid).
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from amazon_polly_streaming.emulator import EmulatorThread
from cli_support import cli_env, command, duration
from cli_support import emulator as emulator  # the module-scoped fixture

pytestmark = pytest.mark.timeout(60)
pytest.importorskip("soundfile")


def _say(
    args: list[str], emulator: EmulatorThread, child: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*command(), "say", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=cli_env(emulator),
        timeout=60,
        check=False,
        preexec_fn=child,
    )


def _with_umask(mask: int) -> Callable[[], None]:
    def child() -> None:
        os.umask(mask)

    return child


# ------------------------------------------------------------------ the temporary file (CWE-59, CWE-377)


def test_a_link_planted_at_a_predictable_temporary_name_is_never_followed(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's file")
    out = folder / "speech.mp3"

    def plant() -> None:
        # The name the CLI used to write through: ".<name>.<pid>.partial" beside the output.
        os.symlink(str(victim), os.path.join(str(folder), f".speech.mp3.{os.getpid()}.partial"))

    result = _say(["A planted link.", "-o", str(out), "-q"], emulator, plant)
    assert result.returncode == 0, result.stderr
    assert victim.read_bytes() == b"someone else's file"
    assert not out.is_symlink()
    assert duration(out.read_bytes()) > 0.3
    (link,) = (p for p in folder.iterdir() if p != out)
    assert link.is_symlink()
    assert os.readlink(link) == str(victim)


# ------------------------------------------------------------------ the output's mode


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664])
def test_overwriting_keeps_the_existing_files_mode(emulator: EmulatorThread, tmp_path: Path, mode: int) -> None:
    out = tmp_path / "private.mp3"
    out.write_bytes(b"old audio")
    out.chmod(mode)
    result = _say(["A private file.", "-o", str(out), "-q"], emulator, _with_umask(0o022))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert duration(out.read_bytes()) > 0.3


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_umasks_mode(emulator: EmulatorThread, tmp_path: Path, umask: int, mode: int) -> None:
    out = tmp_path / "new.mp3"
    result = _say(["A new file.", "-o", str(out), "-q"], emulator, _with_umask(umask))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
