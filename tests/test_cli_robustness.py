"""``polly-stream say`` as an operator's tools run it: planted links, file modes, signals, a closed stdin.

Each test runs the real console script in a subprocess against an emulator on
loopback; what the child inherits is set in ``preexec_fn`` (it runs in the
child, after fork and before exec, so ``os.getpid()`` there is the CLI's pid).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from amazon_polly_streaming.emulator import EmulatorThread
from cli_support import cli_env, command, duration
from cli_support import emulator as emulator  # the module-scoped fixture
from support import default_signals

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


# ------------------------------------------------------------------ SIGTERM and SIGHUP


#: The child's dispositions for the signals these tests send, whatever the suite inherited.
_default_signals = default_signals(signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _streaming(emulator: EmulatorThread, out: Path, child: Callable[[], None]) -> subprocess.Popen[bytes]:
    """A ``say -`` process whose stream has sent audio and stays open (stdin is left open)."""
    requests = emulator.emulator.requests
    before = len(requests)
    process = subprocess.Popen(
        [*command(), "say", "-", "-o", str(out)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(emulator),
        preexec_fn=child,
    )
    assert process.stdin is not None
    process.stdin.write(b"A line that is still being spoken when the signal comes.\n")
    process.stdin.flush()
    _wait_for(lambda: len(requests) > before and requests[-1].audio_bytes > 0, "audio")
    _wait_for(lambda: any(out.parent.iterdir()), "the temporary file")
    return process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_termination_signal_mid_stream_leaves_no_partial_file(
    emulator: EmulatorThread, tmp_path: Path, signum: int
) -> None:
    process = _streaming(emulator, tmp_path / "story.mp3", _default_signals)
    try:
        started = time.monotonic()
        process.send_signal(signum)
        code = process.wait(10)
        took = time.monotonic() - started
        assert process.stderr is not None
        stderr = process.stderr.read().decode()
    finally:
        process.kill()
        process.wait()
    assert code == 128 + signum, stderr
    assert took < 5.0, f"{signal.Signals(signum).name} took {took:.1f} s"
    assert stderr.strip() == f"polly-stream: stopped by {signal.Signals(signum).name}"
    assert list(tmp_path.iterdir()) == [], "a partial file was left behind"


def test_an_ignored_sighup_stays_ignored(emulator: EmulatorThread, tmp_path: Path) -> None:
    def as_nohup_starts_it() -> None:
        _default_signals()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    out = tmp_path / "story.mp3"
    process = _streaming(emulator, out, as_nohup_starts_it)
    try:
        process.send_signal(signal.SIGHUP)
        assert process.stdin is not None
        process.stdin.write(b"And it went on.\n")
        process.stdin.close()
        code = process.wait(30)
        assert process.stderr is not None
        stderr = process.stderr.read().decode()
    finally:
        process.kill()
        process.wait()
    assert code == 0, stderr
    assert duration(out.read_bytes()) > 1.0


# ------------------------------------------------------------------ a closed stdin


@pytest.mark.parametrize("args", [[], ["-"]], ids=["say", "say -"])
def test_a_closed_stdin_is_nothing_to_say(emulator: EmulatorThread, tmp_path: Path, args: list[str]) -> None:
    before = len(emulator.emulator.requests)
    result = _say([*args, "-o", str(tmp_path / "x.mp3")], emulator, lambda: os.close(0))  # as the shell's <&-
    assert result.returncode == 2, result.stderr
    line = result.stderr.decode().strip().splitlines()[-1]
    assert line.startswith("polly-stream say: error: nothing to say"), line
    assert "stdin is closed" in line
    assert list(tmp_path.iterdir()) == []
    assert len(emulator.emulator.requests) == before


def test_text_is_spoken_with_stdin_closed(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "x.mp3"
    result = _say(["Nothing to read from stdin.", "-o", str(out), "-q"], emulator, lambda: os.close(0))
    assert result.returncode == 0, result.stderr
    assert duration(out.read_bytes()) > 0.5


@pytest.mark.parametrize("args", [[], ["-o", "-"]], ids=["pipe", "dash"])
def test_a_closed_stdout_without_a_file_is_a_usage_error(
    emulator: EmulatorThread, tmp_path: Path, args: list[str]
) -> None:
    before = len(emulator.emulator.requests)
    result = _say(["Where would this go?", *args], emulator, lambda: os.close(1))  # as the shell's >&-
    assert result.returncode == 2, result.stderr
    line = result.stderr.decode().strip().splitlines()[-1]
    assert line == "polly-stream say: error: stdout is closed: give -o FILE", line
    assert len(emulator.emulator.requests) == before


def test_a_closed_stderr_never_sends_messages_into_the_audio(emulator: EmulatorThread) -> None:
    spoken = _say(["Audio only, please.", "-o", "-"], emulator, lambda: os.close(2))  # as the shell's 2>&-
    assert spoken.returncode == 0
    assert duration(spoken.stdout) > 0.5
    assert b"polly-stream" not in spoken.stdout
    assert b"wrote" not in spoken.stdout
    refused = _say(["-o", "-"], emulator, lambda: os.close(2))  # nothing to say: a usage error, said to no one
    assert refused.returncode == 2
    assert refused.stdout == b""


# ------------------------------------------------------------------ devices and named pipes


def test_a_named_pipe_is_written_in_place_and_stays_a_pipe(emulator: EmulatorThread, tmp_path: Path) -> None:
    # A temporary file renamed over the FIFO replaced it with a regular file,
    # and the player reading the FIFO waited for ever.
    fifo = tmp_path / "player"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with fifo.open("rb") as reader:
            received.append(reader.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.2)  # the reader's open() waits for the writer
    result = _say(["Into a named pipe.", "-o", str(fifo), "-q", "--format", "wav"], emulator)
    reader.join(10)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert list(tmp_path.iterdir()) == [fifo]
    assert duration(received[0]) > 0.5


def test_a_named_pipe_nobody_reads_is_refused_at_once(emulator: EmulatorThread, tmp_path: Path) -> None:
    fifo = tmp_path / "player"
    os.mkfifo(fifo)
    before = len(emulator.emulator.requests)
    result = _say(["Nobody listens.", "-o", str(fifo)], emulator)
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode().strip().splitlines()[-1].endswith(f"cannot write {fifo}: nothing reads from it")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert len(emulator.emulator.requests) == before


def test_a_device_is_written_in_place_and_stays_a_device(emulator: EmulatorThread, tmp_path: Path) -> None:
    # -o /dev/null as root replaced /dev/null itself with a regular file. A
    # null device of our own (root only; skipped elsewhere) shows it safely.
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        null.write_bytes(b"probe")  # a file system mounted nodev refuses
    except OSError:
        pytest.skip("cannot make a device node here")
    result = _say(["Into the void.", "-o", str(null), "-q"], emulator)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(null.stat().st_mode)
    assert list(tmp_path.iterdir()) == [null]


def test_a_file_size_limit_is_an_output_error_and_leaves_no_partial_file(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    # A write refused for the size limit (as for a full disk) failed again when
    # the clean-up closed the file: exit code 1, "unexpected error", and the
    # partial file left behind.
    import resource

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))  # the shell's ulimit -f 2

    out = tmp_path / "big.mp3"
    text = "A sentence long enough to pass two kilobytes of audio. " * 3
    result = _say([text, "-o", str(out)], emulator, small_files)
    assert result.returncode == 6, result.stderr
    assert result.stderr.decode().strip().splitlines()[-1] == f"polly-stream: cannot write {out}: File too large"
    assert list(tmp_path.iterdir()) == []


def test_an_endless_line_on_stdin_is_refused_once_it_outgrows_one_text(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    # A line with no newline was read whole before its size was checked, and
    # each read searched all of it again: 100 MB took 34 s, an endless one
    # (tr -d '\n' < /dev/urandom) grew without bound.
    process = subprocess.Popen(
        [*command(), "say", "-", "-o", str(tmp_path / "x.mp3")],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(emulator),
    )
    stdin = process.stdin
    assert stdin is not None
    assert process.stderr is not None

    def feed() -> None:
        block = b"a" * 65536
        with contextlib.suppress(OSError):  # BrokenPipeError once the CLI stops reading
            while process.poll() is None:
                stdin.write(block)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        assert process.wait(timeout=20) == 2
    finally:
        process.kill()
        process.wait()
        writer.join(5)
    line = process.stderr.read().decode().strip().splitlines()[-1]
    assert line == (
        "polly-stream: a line of stdin holds more than 100,000 characters, more than one text may hold: "
        "end its sentences or paragraphs with newlines"
    )
    assert list(tmp_path.iterdir()) == []
