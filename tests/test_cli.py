"""The real ``polly-stream`` console script in a subprocess, and the sync helpers."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import signal
import subprocess
import termios
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from amazon_polly_streaming.emulator import EmulatorThread
from cli_support import cli_env as _env
from cli_support import command as _command
from cli_support import duration, run
from cli_support import emulator as emulator  # the module-scoped fixture
from support import KEY, SECRET, default_signals, stop

pytestmark = pytest.mark.timeout(60)
pytest.importorskip("soundfile")


def test_say_to_a_file(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "hello.mp3"
    result = run(["say", "Hello", "from", "the", "command", "line.", "-o", str(out)], emulator)
    assert result.returncode == 0, result.stderr
    assert 1.0 < duration(out.read_bytes()) < 6.0
    assert str(out) in result.stderr.decode()
    assert "first audio after" in result.stderr.decode()
    assert run(["say", "Quiet.", "-o", str(out), "-q"], emulator).stderr == b""


def test_say_to_stdout_when_piped(emulator: EmulatorThread) -> None:
    result = run(["say", "Piped", "audio.", "--format", "ogg_vorbis", "-q"], emulator)
    assert result.returncode == 0, result.stderr
    assert duration(result.stdout) > 0.5
    dash = run(["say", "Dash.", "-o", "-", "-q"], emulator)
    assert duration(dash.stdout) > 0.3


def test_wav_has_a_valid_header(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "hi.wav"
    result = run(["say", "A wave file.", "--format", "wav", "--voice", "Joanna", "-o", str(out)], emulator)
    assert result.returncode == 0, result.stderr
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert wav.getnframes() * 2 == out.stat().st_size - 44
    piped = run(["say", "A piped wave.", "--format", "wav", "-q"], emulator)
    assert piped.stdout[:4] == b"RIFF"
    assert duration(piped.stdout) > 0.3  # the streaming header decodes too


def test_stdin_streams_into_one_stream_and_speaks_before_it_ends(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "story.mp3"
    process = subprocess.Popen(
        [*_command(), "say", "-", "-o", str(out), "-q"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(emulator),
    )
    assert process.stdin is not None
    requests = emulator.emulator.requests
    before = len(requests)
    process.stdin.write(b"Once upon a time there was a slow producer.\n")
    process.stdin.flush()
    deadline = time.monotonic() + 10
    while not (len(requests) > before and requests[-1].audio_bytes > 0):
        assert time.monotonic() < deadline, "no audio while the text was still streaming"
        time.sleep(0.05)
    process.stdin.write(b"It wrote one more line, much later.\n")
    process.stdin.close()
    assert process.wait(30) == 0, process.stderr.read() if process.stderr else ""
    record = requests[-1]
    assert [t["text"] for t in record.texts if t["text"].strip()] == [
        "Once upon a time there was a slow producer.\n",
        "It wrote one more line, much later.\n",
    ]
    assert duration(out.read_bytes()) > 2.0


def test_local_runs_offline(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp3"
    result = run(["say", "--local", "An offline demo.", "-o", str(out)], None)
    assert result.returncode == 0, result.stderr
    assert duration(out.read_bytes()) > 0.5


def test_exit_codes_and_one_line_errors(emulator: EmulatorThread, tmp_path: Path) -> None:
    usage = run(["say", "x", "--format", "flac"], emulator)
    assert usage.returncode == 2
    rate = run(["say", "x", "--format", "pcm", "--sample-rate", "44100"], emulator)
    assert rate.returncode == 2
    assert b"sample_rate" in rate.stderr
    creds = run(["say", "x", "-o", str(tmp_path / "a.mp3")], emulator, AWS_SECRET_ACCESS_KEY="wrong")
    assert creds.returncode == 3
    assert b"wrong" not in creds.stderr
    service = run(["say", "{{fault:throttling}} x", "-o", str(tmp_path / "b.mp3")], emulator)
    assert service.returncode == 4
    assert service.stderr.decode().strip().count("\n") == 0
    assert "ThrottlingException" in service.stderr.decode()
    with socket_port_closed() as url:
        transport = run(["say", "x", "--endpoint-url", url, "-o", str(tmp_path / "c.mp3")], emulator)
    assert transport.returncode == 5


class socket_port_closed:
    def __enter__(self) -> str:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        return f"https://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_failed_stream_leaves_no_file(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "broken.mp3"
    text = "{{fault:drop@after_first_audio}} This stream will break after its first audio."
    result = run(["say", text, "-o", str(out)], emulator)
    assert result.returncode == 5
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_voices(emulator: EmulatorThread) -> None:
    listing = run(["voices", "--language", "en-US"], None)
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.decode().splitlines()]
    assert "Matthew" in names
    assert "Lea" not in names
    as_json = json.loads(run(["voices", "--json"], None).stdout)
    assert {
        "VoiceId": "Kajal",
        "LanguageCode": "en-IN",
        "Gender": "Female",
        "AdditionalLanguageCodes": ["hi-IN"],
    } in as_json


@pytest.mark.parametrize("args", [["--help"], ["say", "--help"], ["voices", "--help"], ["emulator", "--help"]])
def test_help_reads_well(args: list[str]) -> None:
    result = run(args, None)
    assert result.returncode == 0
    assert b"usage:" in result.stdout


def test_verbose_logs_never_show_secrets(emulator: EmulatorThread, tmp_path: Path) -> None:
    token = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN"
    result = run(["say", "Debug me.", "-v", "-o", str(tmp_path / "v.mp3")], emulator, AWS_SESSION_TOKEN=token)
    log = result.stderr.decode()
    assert "DEBUG" in log
    for secret in (SECRET, token, "Signature="):
        assert secret not in log


# ------------------------------------------------------------------ sync helpers


def test_sync_helpers(emulator: EmulatorThread) -> None:
    from amazon_polly_streaming.sync import iter_synthesize, synthesize

    options: dict[str, Any] = {
        "region": "us-east-1",
        "endpoint_url": emulator.endpoint_url,
        "verify": emulator.ca_file,
        "credentials": (KEY, SECRET),
        "output_format": "pcm",
        "sample_rate": "16000",
    }
    audio = synthesize("Hello from sync code.", "Matthew", **options)
    streamed = b"".join(iter_synthesize("Hello from sync code.", "Matthew", **options))
    assert abs(len(streamed) - len(audio)) < 0.05 * len(audio)
    early = iter_synthesize("One more time, but stop early.", "Matthew", **options)
    assert next(early)
    early.close()  # resets the stream and closes the loop

    async def inside_a_loop() -> None:
        with pytest.raises(RuntimeError, match="start_speech_synthesis_stream"):
            synthesize("x", "Matthew", **options)

    asyncio.run(inside_a_loop())


# ------------------------------------------------------------------ Ctrl-C


def _wait_for(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _wait_until_reading(emulator: EmulatorThread, folder: Path) -> None:
    """Until the process has opened its output and connected, and so waits on its input."""
    _wait_for(lambda: list(folder.iterdir()), "the output file to be opened")
    _wait_for(lambda: emulator.emulator.open_connections > 0, "a connection")
    time.sleep(0.5)


def _interrupted(process: subprocess.Popen[bytes], started: float) -> str:
    """Wait for the process; it must have ended promptly with 130 and one line."""
    code = process.wait(10)
    took = time.monotonic() - started
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    assert code == 130, stderr
    assert took < 5.0, f"Ctrl-C took {took:.1f} s"
    assert stderr.strip() == "polly-stream: interrupted"
    return stderr


def test_ctrl_c_while_waiting_on_a_pipe_that_stays_open(emulator: EmulatorThread, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*_command(), "say", "-", "-o", str(tmp_path / "story.mp3")],
        stdin=subprocess.PIPE,  # never written, never closed
        stderr=subprocess.PIPE,
        env=_env(emulator),
        preexec_fn=default_signals(signal.SIGINT),
    )
    try:
        _wait_until_reading(emulator, tmp_path)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _interrupted(process, started)
    finally:
        process.kill()
        process.wait()
    assert list(tmp_path.iterdir()) == [], "a partial file was left behind"


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """Run with a new pseudo-terminal as its controlling terminal and stdin; returns the master end."""
    master, slave = pty.openpty()

    interruptible = default_signals(signal.SIGINT)

    def take_the_terminal() -> None:  # runs in the child, after setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        interruptible()  # the test types ^C

    try:
        process = subprocess.Popen(
            args,
            stdin=slave,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            preexec_fn=take_the_terminal,
        )
    finally:
        os.close(slave)
    return process, master


@pytest.mark.parametrize("when", ["before any text", "while audio streams"])
def test_ctrl_c_at_a_terminal(emulator: EmulatorThread, tmp_path: Path, when: str) -> None:
    requests = emulator.emulator.requests
    before = len(requests)
    process, terminal = _on_a_terminal(
        [*_command(), "say", "-", "-o", str(tmp_path / "typed.mp3")],
        _env(emulator),
    )
    try:
        _wait_until_reading(emulator, tmp_path)
        if when == "while audio streams":
            os.write(terminal, b"A line typed at the terminal, long enough to be still speaking.\n")
            _wait_for(lambda: len(requests) > before and requests[-1].audio_bytes > 0, "audio")
        started = time.monotonic()
        os.write(terminal, b"\x03")  # the terminal turns ^C into SIGINT for its foreground process
        _interrupted(process, started)
    finally:
        process.kill()
        process.wait()
        os.close(terminal)
    assert list(tmp_path.iterdir()) == [], "a partial file was left behind"
    if when == "before any text":
        assert len(requests) == before, "a stream was opened with nothing to say"


def test_a_terminal_session_ends_with_ctrl_d(emulator: EmulatorThread, tmp_path: Path) -> None:
    out = tmp_path / "typed.mp3"
    process, terminal = _on_a_terminal([*_command(), "say", "-", "-o", str(out), "-q"], _env(emulator))
    try:
        os.write(terminal, b"Typed at a terminal.\n")
        os.write(terminal, b"\x04")  # ^D at the start of a line: end of input
        assert process.wait(30) == 0, process.stderr.read() if process.stderr else ""
    finally:
        process.kill()
        process.wait()
        os.close(terminal)
    assert duration(out.read_bytes()) > 0.5


# ------------------------------------------------------------------ failures and exit codes


def _one_error_line(stderr: bytes, prefix: str) -> str:
    lines = stderr.decode().strip().splitlines()
    assert lines, "no message"
    assert lines[-1].startswith(prefix), lines
    return lines[-1]


@pytest.mark.parametrize(
    "args",
    [
        ["--read-timeout", "-1"],
        ["--connect-timeout", "0"],
        ["--read-timeout", "nan"],
        ["--connect-timeout", "soon"],
        ["--region", "not a region"],
        ["--endpoint-url", "http://plain.example"],
        ["--format", "pcm", "--sample-rate", "44100"],
        ["--format", "flac"],
        ["--lexicon", "bad name!"],
    ],
)
def test_bad_option_values_exit_2_with_the_say_usage(emulator: EmulatorThread, tmp_path: Path, args: list[str]) -> None:
    before = len(emulator.emulator.requests)
    result = run(["say", "Hello.", "-o", str(tmp_path / "x.mp3"), *args], emulator)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(b"usage: polly-stream say ")
    _one_error_line(result.stderr, "polly-stream say: error: ")
    assert list(tmp_path.iterdir()) == []
    assert len(emulator.emulator.requests) == before


def test_a_missing_ca_bundle_is_named(emulator: EmulatorThread, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    option = run(["say", "Hello.", "-o", str(tmp_path / "x.mp3"), "--ca-bundle", missing], emulator)
    assert option.returncode == 2
    assert _one_error_line(option.stderr, "polly-stream say: error: ").endswith(f"--ca-bundle {missing}: no such file")
    variable = run(["say", "Hello.", "-o", str(tmp_path / "x.mp3")], emulator, AWS_CA_BUNDLE=missing)
    assert variable.returncode == 2
    assert f"AWS_CA_BUNDLE {missing}: no such file" in variable.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_that_does_not_exist_is_named_as_typed(emulator: EmulatorThread, tmp_path: Path) -> None:
    result = subprocess.run(
        [*_command(), "say", "Hello.", "-o", "no/such/folder/out.mp3"],
        cwd=tmp_path,
        capture_output=True,
        env=_env(emulator),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    line = _one_error_line(result.stderr, "polly-stream say: error: ")
    assert "no/such/folder/out.mp3" in line
    assert "partial" not in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["", " "], b""),
        (["   "], b""),
        (["-"], b""),
        (["-"], b"\n   \n\t\n\n"),
    ],
)
def test_nothing_to_say_is_a_usage_error(
    emulator: EmulatorThread, tmp_path: Path, args: list[str], stdin: bytes
) -> None:
    before = len(emulator.emulator.requests)
    result = run(["say", *args, "-o", str(tmp_path / "empty.mp3")], emulator, stdin=stdin)
    assert result.returncode == 2, result.stderr
    assert "nothing to say" in _one_error_line(result.stderr, "polly-stream say: error: ")
    assert list(tmp_path.iterdir()) == []
    assert len(emulator.emulator.requests) == before, "nothing should have been sent"


def test_a_closed_stdout_pipe_is_exit_6(emulator: EmulatorThread) -> None:
    process = subprocess.Popen(
        [*_command(), "say", "A sentence that makes more audio than a closed pipe takes.", "-o", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(emulator),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()  # the reader went away
    assert process.wait(30) == 6
    assert process.stderr.read().decode().strip() == "polly-stream: cannot write stdout: Broken pipe"


def test_credentials_missing_is_exit_3_and_says_what_was_tried(emulator: EmulatorThread, tmp_path: Path) -> None:
    env = {k: v for k, v in _env(emulator).items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    result = subprocess.run(
        [*_command(), "say", "Hello.", "-o", str(tmp_path / "x.mp3")],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 3
    line = _one_error_line(result.stderr, "polly-stream: CredentialsError: unable to locate AWS credentials")
    assert "environment variables" in line
    assert "instance role" in line


def test_voices_language_is_case_insensitive() -> None:
    canonical = run(["voices", "--language", "en-US"], None)
    for spelling in ("en-us", "EN-US", "En-uS"):
        result = run(["voices", "--language", spelling], None)
        assert result.returncode == 0
        assert result.stdout == canonical.stdout
    bilingual = run(["voices", "--language", "HI-in"], None).stdout.decode()
    assert "Kajal" in bilingual


# ------------------------------------------------------------------ the emulator command


def test_the_emulator_prints_the_public_test_key_pair() -> None:
    from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS

    ((key, secret),) = DEFAULT_CREDENTIALS.items()
    process = subprocess.Popen(
        [*_command(), "emulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(None),
        preexec_fn=default_signals(signal.SIGINT, signal.SIGTERM),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        ready = json.loads(process.stdout.readline())
        assert (ready["access_key_id"], ready["secret_access_key"]) == (key, secret)
        export = process.stderr.readline() + process.stderr.readline()
        assert f"AWS_ACCESS_KEY_ID={key}" in export.decode()
        assert f"AWS_ENDPOINT_URL_POLLY={ready['endpoint_url']}" in export.decode()
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
    finally:
        stop(process)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert key in readme
    assert secret in readme


def test_the_emulator_keeps_a_chosen_secret_to_itself() -> None:
    process = subprocess.Popen(
        [*_command(), "emulator", "--credential", "AKIDMINE:my-own-secret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(None),
        preexec_fn=default_signals(signal.SIGINT, signal.SIGTERM),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        line = process.stdout.readline().decode()
        assert json.loads(line)["access_key_id"] == "AKIDMINE"
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        assert "my-own-secret" not in line + process.stderr.read().decode()
    finally:
        stop(process)


@pytest.mark.parametrize(
    "args",
    [["--idle-timeout", "-1"], ["--port", "70000"], ["--max-concurrent-streams", "0"], ["--cert", "/no/cert.pem"]],
)
def test_emulator_bad_option_values_exit_2(args: list[str]) -> None:
    result = run(["emulator", *args], None)
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines()[-1].startswith("polly-stream emulator: error: ")


def test_stdin_from_a_file_and_an_output_that_is_a_folder(emulator: EmulatorThread, tmp_path: Path) -> None:
    text = tmp_path / "script.txt"
    text.write_text("A line read from a file.\n\nAnd one without a newline at the end.")
    out = tmp_path / "script.mp3"
    with text.open("rb") as stdin:  # a regular file: read in a thread, not watched by the loop
        result = subprocess.run(
            [*_command(), "say", "-", "-o", str(out), "-q"],
            stdin=stdin,
            capture_output=True,
            env=_env(emulator),
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert [t["text"] for t in emulator.emulator.requests[-1].texts if t["text"].strip()] == [
        "A line read from a file.\n",
        "And one without a newline at the end.",
    ]
    assert duration(out.read_bytes()) > 1.0
    folder = run(["say", "Hello.", "-o", str(tmp_path)], emulator)
    assert folder.returncode == 2
    assert f"cannot write {tmp_path}: it is a folder" in folder.stderr.decode()
