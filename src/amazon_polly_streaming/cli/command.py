"""``polly-stream``: speech from the command line.

    polly-stream say "Hello there." -o hello.mp3
    llm "tell me a story" | polly-stream say - -o story.mp3     # speaks while the text streams
    polly-stream say --local "Offline, from the bundled emulator." -o demo.mp3
    polly-stream emulator --port 8443
    polly-stream voices --language en-US
    polly-stream limiter --redis redis://127.0.0.1:6379/0 --name polly-us-east-1

Exit codes (each failure is one line on stderr):

* 0 done
* 1 unexpected error (a bug: please report it)
* 2 usage: a bad option or value, nothing to say (stdin closed too), a missing ``--ca-bundle``
  file, an output folder that does not exist; found before any network I/O
* 3 credentials missing or refused
* 4 Polly said no (a service error such as ``ThrottlingException``)
* 5 transport failure (network, TLS, timeout, a stream cut short)
* 6 the audio could not be written (disk full, a closed pipe)
* 130 interrupted (Ctrl-C); no partial file is left behind
* 128 + N stopped by signal N: 129 SIGHUP, 143 SIGTERM (``timeout``, systemd,
  ``docker stop``); no partial file either. A signal the process was started
  with ignored (``nohup``) stays ignored.
"""

from __future__ import annotations

import argparse
import os
import sys

from .argtypes import positive_seconds

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Sequence

    from ..client import PollyStreamingClient
    from .output import AudioOutput

__all__ = ["main"]

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_CREDENTIALS = 3
EXIT_SERVICE = 4
EXIT_TRANSPORT = 5
EXIT_OUTPUT = 6
EXIT_INTERRUPTED = 130

_EXIT_CODES = (
    "Exit codes: 0 ok, 1 unexpected error, 2 usage (bad option or value, nothing to say), 3 credentials, "
    "4 service error, 5 transport error, 6 output could not be written, 130 interrupted, "
    "129 and 143 stopped by SIGHUP and SIGTERM."
)
_FORMATS = ("mp3", "ogg_vorbis", "pcm", "wav", "ogg_opus", "mulaw", "alaw")
_EXTENSIONS = {"mp3": "mp3", "ogg_vorbis": "ogg", "ogg_opus": "opus", "pcm": "pcm", "wav": "wav"}
_EXTRA_HINT = "pip install 'amazon-polly-streaming[emulator]'"


class _Usage(Exception):
    """A usage error found after parsing (exit code 2, with the ``say`` usage)."""


class _Stopped(Exception):
    """SIGTERM or SIGHUP ended ``say`` (exit code 128 + the signal's number)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# ------------------------------------------------------------------------- arguments


def _language(value: str) -> str:
    """An argparse type: a language code as Polly spells it (``en-us`` -> ``en-US``)."""
    from ..voices import VOICES

    wanted = value.casefold()
    for voice in VOICES:
        for code in voice.language_codes:
            if code.casefold() == wanted:
                return code
    return value  # unknown here; the service is the authority


def _build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``polly-stream`` parser and its ``say`` subparser (for usage errors found later)."""
    parser = argparse.ArgumentParser(
        prog="polly-stream",
        description="Amazon Polly bidirectional streaming text-to-speech from the command line.",
        epilog=_EXIT_CODES,
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
        epilog=_EXIT_CODES,
    )
    say.add_argument(
        "text", nargs="*", metavar="TEXT", help="words to speak; '-' (or none, with stdin piped) reads stdin"
    )
    say.add_argument("-o", "--output", metavar="FILE", help="output file, or '-' for stdout")
    say.add_argument("--voice", default="Matthew", help="voice id (default: Matthew; see 'polly-stream voices')")
    say.add_argument("--format", default="mp3", choices=_FORMATS, help="audio format (wav is PCM with a header)")
    say.add_argument(
        "--sample-rate",
        metavar="HZ",
        help="sample rate (default: 24000; pcm and wav 16000, ogg_opus 48000, mulaw and alaw 8000)",
    )
    say.add_argument("--language", type=_language, metavar="CODE", help="language code, for bilingual voices")
    say.add_argument("--ssml", action="store_true", help="TEXT (each stdin line) is an SSML document")
    say.add_argument("--lexicon", action="append", metavar="NAME", help="apply a pronunciation lexicon (repeatable)")
    say.add_argument("--flush", action="store_true", help="synthesize each stdin line at once")
    say.add_argument("--local", action="store_true", help="run against the bundled emulator (offline demo)")
    say.add_argument(
        "--cache-redis", metavar="URL", help="replay TEXT spoken before from this Redis (needs the [redis] extra)"
    )
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
    voices.add_argument(
        "--language", type=_language, metavar="CODE", help="only voices that speak this language (e.g. en-US)"
    )
    voices.add_argument("--json", action="store_true", help="print JSON")
    from .limiter import add_parser as add_limiter_parser

    add_limiter_parser(commands)
    return parser, say


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's, then eu-central-1)"
    )
    group.add_argument("--endpoint-url", metavar="URL", help="endpoint to use instead of Polly's")
    group.add_argument("--ca-bundle", metavar="FILE", help="CA bundle to verify the endpoint with")
    group.add_argument("--read-timeout", type=positive_seconds, default=30.0, metavar="S", help="seconds (default 30)")
    group.add_argument(
        "--connect-timeout", type=positive_seconds, default=10.0, metavar="S", help="seconds (default 10)"
    )


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr (never secrets)")


def _version() -> str:
    from .._version import __version__

    return __version__


# ------------------------------------------------------------------------- say


def _output_path(output: str | None, fmt: str) -> str | None:
    """The file to write, or None for stdout (``-o -``, or a pipe without ``-o``)."""
    if output == "-" or (output is None and (sys.stdout is None or not sys.stdout.isatty())):
        if sys.stdout is None:  # started with stdout closed (>&-): nowhere to write the audio
            raise _Usage("stdout is closed: give -o FILE")
        return None
    return output or f"speech.{_EXTENSIONS.get(fmt, fmt)}"


def _check_ca_bundle(args: argparse.Namespace) -> None:
    """A CA bundle that is not there is a usage error that names it, not a TLS failure later."""
    if args.local:
        return
    for source, path in (("--ca-bundle", args.ca_bundle), ("AWS_CA_BUNDLE", os.environ.get("AWS_CA_BUNDLE"))):
        if path:
            if not os.path.isfile(path):
                raise _Usage(f"{source} {path}: no such file")
            return


def _stream_options(args: argparse.Namespace) -> tuple[dict[str, object], int]:
    """The stream's keyword arguments, validated before any I/O, and the sample rate (the format's default)."""
    from .._wire.request import synthesis_params

    try:
        params = synthesis_params(
            voice_id=args.voice,
            language_code=args.language,
            output_format="pcm" if args.format == "wav" else args.format,
            sample_rate=args.sample_rate,
            lexicon_names=args.lexicon,
        )
    except (ValueError, TypeError) as exc:
        raise _Usage(str(exc)) from None
    options: dict[str, object] = {
        "voice_id": params.voice_id,
        "output_format": params.output_format,
        "sample_rate": params.sample_rate,
        "text_type": "ssml" if args.ssml else None,
        "lexicon_names": args.lexicon,
        "flush": args.flush,
    }
    if params.language_code is not None:
        options["language_code"] = params.language_code
    return options, int(params.sample_rate)


def _client(args: argparse.Namespace, **overrides: object) -> PollyStreamingClient:
    from ..client import PollyStreamingClient

    options: dict[str, object] = {"read_timeout": args.read_timeout, "connect_timeout": args.connect_timeout}
    if args.region:
        options["region"] = args.region
    if args.endpoint_url:
        options["endpoint_url"] = args.endpoint_url
    if args.ca_bundle:
        options["verify"] = args.ca_bundle
    options.update(overrides)
    try:
        if getattr(args, "cache_redis", None):
            from ..cache import RedisCache

            options["cache"] = RedisCache(args.cache_redis)
        return PollyStreamingClient(**options)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise _Usage(str(exc)) from None
    except ImportError as exc:
        raise _Usage(str(exc)) from None


async def _say_until_stopped(args: argparse.Namespace) -> int:
    """``say``, ended by SIGTERM or SIGHUP as Ctrl-C ends it: the task is cancelled, the partial file discarded."""
    import asyncio
    import contextlib
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_IGN:
            continue  # started with it ignored (nohup): it stays ignored
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # Windows loops have no handlers
            loop.add_signal_handler(signum, stop, signum)
    try:
        return await _say(args)
    except asyncio.CancelledError:
        if received:
            raise _Stopped(received[0]) from None
        raise


async def _say(args: argparse.Namespace) -> int:
    from .output import AudioOutput, OutputError

    fmt = args.format
    text: str | None = None  # None: read stdin
    # Python makes sys.stdin None when the process starts with it closed (<&-): nothing to read.
    if args.text == ["-"] or (not args.text and (sys.stdin is None or not sys.stdin.isatty())):
        if sys.stdin is None:
            raise _Usage("nothing to say: stdin is closed" + ("" if args.text else "; give TEXT"))
    else:
        text = " ".join(args.text)
        if not text.strip():
            raise _Usage("nothing to say: give TEXT, or '-' to read stdin" if not args.text else "nothing to say")
    stream_options, sample_rate = _stream_options(args)
    _check_ca_bundle(args)
    try:
        output = AudioOutput(_output_path(args.output, fmt), fmt, sample_rate)
    except OutputError as exc:
        raise _Usage(str(exc)) from None
    try:
        if args.local:
            await _say_local(args, text, stream_options, output)
        else:
            async with _client(args) as client:
                await _speak(client, args, text, stream_options, output)
    except BaseException:
        output.discard()  # an interrupted or failed stream leaves no file
        raise
    return EXIT_OK


async def _say_local(
    args: argparse.Namespace, text: str | None, stream_options: dict[str, object], output: AudioOutput
) -> None:
    try:
        from ..emulator import DEFAULT_CREDENTIALS, Emulator
    except ImportError as exc:
        raise _Usage(f"--local needs the emulator extra: {_EXTRA_HINT} ({exc.__cause__ or exc})") from None
    async with Emulator() as emulator:
        client = _client(
            args,
            endpoint_url=emulator.endpoint_url,
            verify=emulator.ca_file,
            credentials=next(iter(DEFAULT_CREDENTIALS.items())),
            region=args.region or "us-east-1",
        )
        async with client:
            await _speak(client, args, text, stream_options, output)


async def _speak(
    client: PollyStreamingClient,
    args: argparse.Namespace,
    text: str | None,
    stream_options: dict[str, object],
    output: AudioOutput,
) -> None:
    """One stream from ``text`` (or stdin, line by line) into ``output``."""
    import contextlib

    from .output import Progress

    if text is not None:
        source: str | AsyncIterator[str] = text
    else:
        from .stdin import read_lines

        lines = read_lines(sys.stdin.fileno(), sys.stdin.encoding or "utf-8")
        try:
            first = await _first_line(client, lines)
        except BaseException:
            await lines.aclose()
            raise
        if first is None:
            await lines.aclose()
            raise _Usage("nothing to say: stdin held no text")
        source = _prepend(first, lines)
    progress = Progress(not args.quiet and sys.stderr.isatty(), output.fmt, output.sample_rate)
    # Closing the generator when a write fails ends the stream and frees its
    # connection at once.
    stream = client.start_speech_synthesis_stream(text=source, **stream_options)  # type: ignore[arg-type]
    try:
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                output.write(chunk)
                progress.update(chunk)
    finally:
        progress.finish()
        if client.cache is not None:
            await client.cache.aclose()
    output.commit()
    if not args.quiet:
        hit = " (from the phrase cache)" if getattr(stream, "cache_hit", False) else ""
        print(f"wrote {output.shown}: {progress.line()}{hit}", file=sys.stderr)


async def _first_line(client: PollyStreamingClient, lines: AsyncGenerator[str, None]) -> str | None:
    """Wait for the first line of stdin while the connection is set up.

    Nothing is sent before there is text (so empty input is a usage error),
    yet the connection and credentials are ready when it comes; a
    credentials or connection failure is reported at once, not after the
    user has typed.
    """
    import asyncio

    async def first() -> str | None:
        return await anext(lines, None)

    reading = asyncio.ensure_future(first())
    warming = asyncio.ensure_future(client.prewarm(1))
    try:
        while not reading.done():
            waiting = {reading} if warming.done() else {reading, warming}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if warming.done():
                warming.result()  # raises the failure now
        line = reading.result()
        if line is not None:
            await warming
        return line
    finally:
        for task in (reading, warming):
            task.cancel()
        await asyncio.wait((reading, warming))


async def _prepend(first: str, rest: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    try:
        yield first
        async for line in rest:
            yield line
    finally:
        await rest.aclose()


# ------------------------------------------------------------------------- voices


def _voices(args: argparse.Namespace) -> int:
    from ..voices import voices_for_language

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


def _failure(exc: Exception) -> tuple[int, str]:
    """The exit code and the one-line message for an error that ended ``say``."""
    from ..exceptions import AuthenticationError, CredentialsError, ServiceException, TransportError
    from .output import OutputError

    name = type(exc).__name__
    if isinstance(exc, OutputError):
        return EXIT_OUTPUT, str(exc)
    if isinstance(exc, CredentialsError | AuthenticationError):
        return EXIT_CREDENTIALS, f"{name}: {exc}"
    if isinstance(exc, ServiceException):
        return EXIT_SERVICE, f"{name}: {exc}"
    if isinstance(exc, TransportError):
        return EXIT_TRANSPORT, f"{name}: {exc}"
    if isinstance(exc, ValueError):
        return EXIT_USAGE, str(exc)  # the library refused an argument or the text
    return EXIT_BUG, f"unexpected error, please report it: {name}: {exc}"


def _emulator(argv: list[str]) -> int:
    # The emulator has its own parser (shared with python -m ...emulator).
    try:
        from .emulator import main as emulator_main
    except ImportError as exc:
        print(f"polly-stream emulator: needs {_EXTRA_HINT} ({exc.__cause__ or exc})", file=sys.stderr)
        return EXIT_USAGE
    return emulator_main(argv, prog="polly-stream emulator")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if sys.stderr is None:
        # Started with stderr closed (2>&-): messages go nowhere, never into stdout, which may carry the audio.
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the process's own stderr, open until it exits
    if argv[:1] == ["emulator"]:
        return _emulator(argv[1:])
    parser, say = _build_parsers()
    args = parser.parse_args(argv)
    if args.command == "voices":
        return _voices(args)
    if args.command == "limiter":
        from .limiter import run as limiter

        return limiter(args)
    import asyncio
    import logging

    if args.verbose:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("amazon_polly_streaming").setLevel(logging.DEBUG)
    try:
        return asyncio.run(_say_until_stopped(args))
    except _Usage as exc:
        say.print_usage(sys.stderr)
        print(f"{say.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("polly-stream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Stopped as stopped:
        import signal

        print(f"polly-stream: stopped by {signal.Signals(stopped.signum).name}", file=sys.stderr)
        return 128 + stopped.signum
    except Exception as exc:
        code, message = _failure(exc)
        if getattr(exc, "stdout", False):
            # stdout is gone (a closed pipe): keep the interpreter's final flush quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("polly-stream: " + " ".join(message.split()), file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
