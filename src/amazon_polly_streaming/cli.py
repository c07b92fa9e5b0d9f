"""``polly-stream``: speech from the command line.

    polly-stream say "Hello there." -o hello.mp3
    llm "tell me a story" | polly-stream say - -o story.mp3     # speaks while the text streams
    polly-stream say --local "Offline, from the bundled emulator." -o demo.mp3
    polly-stream emulator --port 8443
    polly-stream voices --language en-US

Exit codes: 0 done, 2 usage, 3 credentials refused or missing, 4 Polly said no
(a service error), 5 transport failure (network, TLS, timeout), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from typing import BinaryIO

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CREDENTIALS = 3
EXIT_SERVICE = 4
EXIT_TRANSPORT = 5
EXIT_INTERRUPTED = 130

_FORMATS = ("mp3", "ogg_vorbis", "pcm", "wav", "ogg_opus", "mulaw", "alaw")
_DEFAULT_RATES = {"pcm": "16000", "wav": "16000", "ogg_opus": "48000", "mulaw": "8000", "alaw": "8000"}
_EXTENSIONS = {"mp3": "mp3", "ogg_vorbis": "ogg", "ogg_opus": "opus", "pcm": "pcm", "wav": "wav"}


class _Usage(Exception):
    """A usage error found after parsing (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polly-stream",
        description="Amazon Polly bidirectional streaming text-to-speech from the command line.",
        epilog="Exit codes: 0 ok, 2 usage, 3 credentials, 4 service error, 5 transport error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    say = commands.add_parser(
        "say",
        help="synthesize text to an audio file or stdout",
        description=(
            "Synthesize TEXT (or stdin, line by line as it arrives) and write the audio. "
            "Writes to FILE with -o, to stdout with -o - or when stdout is a pipe, else to speech.<ext>."
        ),
    )
    say.add_argument(
        "text", nargs="*", metavar="TEXT", help="words to speak; '-' (or none, with stdin piped) reads stdin"
    )
    say.add_argument("-o", "--output", metavar="FILE", help="output file, or '-' for stdout")
    say.add_argument("--voice", default="Matthew", help="voice id (default: Matthew; see 'polly-stream voices')")
    say.add_argument("--format", default="mp3", choices=_FORMATS, help="audio format (wav is PCM with a header)")
    say.add_argument("--sample-rate", metavar="HZ", help="sample rate (default: 24000, 16000 for pcm/wav)")
    say.add_argument("--language", metavar="CODE", help="language code, for bilingual voices")
    say.add_argument("--ssml", action="store_true", help="TEXT (each stdin line) is an SSML document")
    say.add_argument("--lexicon", action="append", metavar="NAME", help="apply a pronunciation lexicon (repeatable)")
    say.add_argument("--flush", action="store_true", help="synthesize each stdin line at once")
    say.add_argument("--local", action="store_true", help="run against the bundled emulator (offline demo)")
    _add_connection_options(say)
    _add_verbosity(say)

    emulator = commands.add_parser(
        "emulator",
        help="run the local Polly emulator",
        description="Run the local Polly streaming emulator (needs the [emulator] extra).",
        add_help=False,
    )
    emulator.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    voices = commands.add_parser("voices", help="list the voices of the bidirectional API")
    voices.add_argument("--language", metavar="CODE", help="only voices that speak this language (e.g. en-US)")
    voices.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--region", help="AWS region (default: AWS_REGION, then eu-central-1)")
    group.add_argument("--endpoint-url", metavar="URL", help="endpoint to use instead of Polly's")
    group.add_argument("--ca-bundle", metavar="FILE", help="CA bundle to verify the endpoint with")
    group.add_argument("--read-timeout", type=float, default=30.0, metavar="S", help="seconds (default 30)")
    group.add_argument("--connect-timeout", type=float, default=10.0, metavar="S", help="seconds (default 10)")


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr (never secrets)")


def _version() -> str:
    from . import __version__

    return __version__


# ------------------------------------------------------------------------- output


class _Output:
    """Where audio goes: a file that only appears complete, or stdout."""

    def __init__(self, path: str | None, fmt: str, sample_rate: int) -> None:
        self.path = path
        self.fmt = fmt
        self.sample_rate = sample_rate
        self.size = 0
        self._temp: str | None = None
        self._file: BinaryIO
        self.shown = os.path.abspath(path) if path is not None else "stdout"
        if path is None:
            self._file = sys.stdout.buffer
        else:
            directory = os.path.dirname(os.path.abspath(path))
            self._temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.partial")
            self._file = open(self._temp, "wb")  # noqa: SIM115 - closed in commit/discard
        if fmt == "wav":
            from ._wav import wav_header

            # A pipe cannot be rewound: stream the "unknown length" header.
            self._file.write(wav_header(sample_rate, None))

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.size += len(chunk)
        if self.path is None:
            self._file.flush()

    def commit(self) -> None:
        if self._temp is None:
            self._file.flush()
            return
        if self.fmt == "wav":
            from ._wav import wav_header

            self._file.seek(0)
            self._file.write(wav_header(self.sample_rate, self.size))
        self._file.close()
        assert self.path is not None
        os.replace(self._temp, self.path)
        self._temp = None

    def discard(self) -> None:
        if self._temp is not None:
            self._file.close()
            os.unlink(self._temp)
            self._temp = None


class _Progress:
    def __init__(self, enabled: bool, fmt: str, sample_rate: int) -> None:
        from ._audio_clock import AudioClock

        self.enabled = enabled
        self.clock = AudioClock(fmt, sample_rate)
        self.started = time.monotonic()
        self.first_audio: float | None = None
        self.size = 0
        self._last_draw = 0.0

    def update(self, chunk: bytes) -> None:
        now = time.monotonic()
        if self.first_audio is None:
            self.first_audio = now - self.started
        self.size += len(chunk)
        self.clock.feed(chunk)
        if self.enabled and now - self._last_draw > 0.1:
            self._last_draw = now
            sys.stderr.write("\r" + self.line() + "\033[K")
            sys.stderr.flush()

    def line(self) -> str:
        first = f"{self.first_audio * 1000:.0f} ms" if self.first_audio is not None else "-"
        return f"{_size(self.size)}, {self.clock.seconds:.1f} s of audio, first audio after {first}"

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.2f} MB"


# ------------------------------------------------------------------------- say


async def _stdin_lines() -> AsyncIterator[str]:
    """Lines of stdin as they arrive, read off the event loop."""
    import asyncio

    readline = sys.stdin.readline
    while True:
        line = await asyncio.to_thread(readline)
        if not line:
            return
        if line.strip():
            yield line


def _output_path(output: str | None, fmt: str) -> str | None:
    """The file to write, or None for stdout (``-o -``, or a pipe without ``-o``)."""
    if output == "-" or (output is None and not sys.stdout.isatty()):
        return None
    return output or f"speech.{_EXTENSIONS.get(fmt, fmt)}"


async def _say(args: argparse.Namespace) -> int:
    from .client import PollyStreamingClient

    fmt = args.format
    sample_rate = args.sample_rate or _DEFAULT_RATES.get(fmt, "24000")
    from_stdin = args.text == ["-"] or (not args.text and not sys.stdin.isatty())
    if not args.text and not from_stdin:
        raise _Usage("nothing to say: give TEXT, or '-' to read stdin")
    text: str | AsyncIterator[str] = _stdin_lines() if from_stdin else " ".join(args.text)

    path = _output_path(args.output, fmt)
    request_format = "pcm" if fmt == "wav" else fmt
    client_options: dict[str, object] = {
        "read_timeout": args.read_timeout,
        "connect_timeout": args.connect_timeout,
    }
    if args.region:
        client_options["region"] = args.region
    if args.endpoint_url:
        client_options["endpoint_url"] = args.endpoint_url
    if args.ca_bundle:
        client_options["verify"] = args.ca_bundle
    stream_options: dict[str, object] = {
        "voice_id": args.voice,
        "output_format": request_format,
        "sample_rate": sample_rate,
        "text_type": "ssml" if args.ssml else None,
        "lexicon_names": args.lexicon,
        "flush": args.flush,
    }
    if args.language:
        stream_options["language_code"] = args.language
    # Validate everything before touching the network or the output file.
    try:
        from ._protocol import synthesis_params

        synthesis_params(
            voice_id=args.voice,
            output_format=request_format,
            sample_rate=sample_rate,
            lexicon_names=args.lexicon,
        )
    except (ValueError, TypeError) as exc:
        raise _Usage(str(exc)) from exc

    async def run(client: PollyStreamingClient) -> None:
        output = _Output(path, fmt, int(sample_rate))
        progress = _Progress(not args.quiet and sys.stderr.isatty(), fmt, int(sample_rate))
        try:
            async for chunk in client.start_speech_synthesis_stream(text=text, **stream_options):  # type: ignore[arg-type]
                output.write(chunk)
                progress.update(chunk)
        except BaseException:
            progress.finish()
            output.discard()
            raise
        progress.finish()
        output.commit()
        if not args.quiet:
            where = output.shown
            print(f"wrote {where}: {progress.line()}", file=sys.stderr)

    if args.local:
        return await _say_local(client_options, run)
    async with PollyStreamingClient(**client_options) as client:  # type: ignore[arg-type]
        await run(client)
    return EXIT_OK


async def _say_local(client_options: dict[str, object], run: object) -> int:
    from collections.abc import Awaitable, Callable
    from typing import cast

    from .client import PollyStreamingClient

    try:
        from .emulator import DEFAULT_CREDENTIALS, Emulator
    except ImportError as exc:
        raise _Usage(
            f"--local needs the emulator extra: pip install 'amazon-polly-streaming[emulator]' ({exc})"
        ) from exc
    runner = cast("Callable[[PollyStreamingClient], Awaitable[None]]", run)
    async with Emulator() as emulator:
        options = dict(client_options)
        options.update(
            endpoint_url=emulator.endpoint_url,
            verify=emulator.ca_file,
            credentials=next(iter(DEFAULT_CREDENTIALS.items())),
            region=options.get("region") or "us-east-1",
        )
        async with PollyStreamingClient(**options) as client:  # type: ignore[arg-type]
            await runner(client)
    return EXIT_OK


# ------------------------------------------------------------------------- voices


def _voices(args: argparse.Namespace) -> int:
    from .voices import voices_for_language

    voices = voices_for_language(args.language)
    if args.json:
        import json

        rows = [
            {
                "VoiceId": v.voice_id,
                "LanguageCode": v.language_code,
                "Gender": v.gender,
                "AdditionalLanguageCodes": list(v.additional_language_codes),
            }
            for v in voices
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not voices:
        print(f"no voices for {args.language}", file=sys.stderr)
        return EXIT_OK
    for v in voices:
        extra = f" (also {', '.join(v.additional_language_codes)})" if v.additional_language_codes else ""
        print(f"{v.voice_id:<10} {v.language_code:<6} {v.gender}{extra}")
    return EXIT_OK


# ------------------------------------------------------------------------- main


def _exit_code(exc: BaseException) -> int:
    from .exceptions import AuthenticationError, CredentialsError, ServiceException, TransportError

    if isinstance(exc, CredentialsError | AuthenticationError):
        return EXIT_CREDENTIALS
    if isinstance(exc, ServiceException):
        return EXIT_SERVICE
    if isinstance(exc, TransportError):
        return EXIT_TRANSPORT
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        # The emulator has its own parser (shared with python -m ...emulator).
        try:
            from .emulator._cli import main as emulator_main
        except ImportError as exc:
            print(
                f"polly-stream emulator: needs pip install 'amazon-polly-streaming[emulator]' ({exc})", file=sys.stderr
            )
            return EXIT_USAGE
        return emulator_main(argv[1:], prog="polly-stream emulator")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "voices":
        return _voices(args)
    import asyncio
    import logging

    if args.verbose:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("amazon_polly_streaming").setLevel(logging.DEBUG)
    try:
        return asyncio.run(_say(args))
    except _Usage as exc:
        parser.print_usage(sys.stderr)
        print(f"polly-stream: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("polly-stream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = _exit_code(exc)
        name = type(exc).__name__
        print(f"polly-stream: {name}: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
