"""Run the emulator from a shell: ``python -m amazon_polly_streaming.emulator`` or ``polly-stream emulator``.

When ready it prints one JSON line on stdout (``endpoint_url``, ``ca_file``,
``port``, ``pid``) and serves until SIGINT, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
from collections.abc import Sequence

from ..emulator import DEFAULT_CREDENTIALS, FAULT_KINDS, PHASES, Emulator, EmulatorConfig, Fault
from .argtypes import non_negative_number, port_number, positive_int, positive_seconds

__all__ = ["build_parser", "main"]


def _credential(value: str) -> tuple[str, str]:
    key, sep, secret = value.partition(":")
    if not sep or not key or not secret:
        raise argparse.ArgumentTypeError("expected ACCESS_KEY_ID:SECRET")
    return key, secret


def _fault(value: str) -> Fault:
    try:
        return Fault.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser(prog: str = "python -m amazon_polly_streaming.emulator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "A local Amazon Polly StartSpeechSynthesisStream endpoint: HTTP/2 over TLS with its own CA, "
            "SigV4 checks, real speech (eSpeak NG), Polly's errors and limits, and fault injection. "
            "Prints one JSON line with endpoint_url and ca_file when ready."
        ),
        epilog=f"Fault kinds: {', '.join(sorted(FAULT_KINDS))}. Phases: {', '.join(PHASES)}. "
        "A client can also choose a fault per request with {{fault:KIND@PHASE}} in its text.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=0, help="port (default 0: a free one)")
    parser.add_argument("--cert", help="server certificate (PEM); default: generate a CA and a certificate")
    parser.add_argument("--key", help="server private key (PEM)")
    parser.add_argument("--ca", help="CA file to report with --cert")
    parser.add_argument("--strict", action="store_true", help="reject every malformed HTTP/2 request")
    parser.add_argument("--no-verify-signatures", action="store_true", help="accept any SigV4 signature")
    parser.add_argument(
        "--credential",
        action="append",
        type=_credential,
        metavar="AKID:SECRET",
        help="accepted key pair (repeatable; default the AWS documentation's AKIDEXAMPLE pair)",
    )
    parser.add_argument("--audio", choices=("speech", "tone"), default="speech", help="speech, or a cheap tone")
    parser.add_argument(
        "--first-audio-delay", type=non_negative_number, default=0.0, metavar="S", help="time to first audio"
    )
    parser.add_argument(
        "--real-time-factor", type=non_negative_number, default=0.0, help="0: as fast as possible; 1: real time"
    )
    parser.add_argument("--idle-timeout", type=positive_seconds, default=5.0, metavar="S", help="input idle limit (5)")
    parser.add_argument(
        "--max-stream-duration", type=positive_seconds, default=600.0, metavar="S", help="stream limit (600)"
    )
    parser.add_argument("--max-concurrent-streams", type=positive_int, default=100, help="HTTP/2 SETTINGS value (100)")
    parser.add_argument(
        "--max-active-streams",
        type=positive_int,
        metavar="N",
        help="the account's concurrency quota: streams over all connections at once; stream N+1 gets "
        "ThrottlingException (Polly's default for generative voices is 26; default: no limit)",
    )
    parser.add_argument("--fault", action="append", type=_fault, metavar="KIND[@PHASE]", help="for every request")
    return parser


async def _serve(config: EmulatorConfig) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # SIGHUP too (the terminal it ran in closed): killed by it, the emulator
    # left its temporary folder, CA and server private keys included, in /tmp.
    # A signal it was started with ignored (nohup) stays ignored.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)  # no SIGHUP on Windows
        if signum is None or signal.getsignal(signum) is signal.SIG_IGN:
            continue
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with Emulator(config) as emulator:
        key = next(iter(config.credentials))
        line = {
            "endpoint_url": emulator.endpoint_url,
            "ca_file": emulator.ca_file,
            "port": emulator.port,
            "pid": os.getpid(),
            "access_key_id": key,
        }
        env = {
            "AWS_ENDPOINT_URL_POLLY": emulator.endpoint_url,
            "AWS_CA_BUNDLE": emulator.ca_file,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": key,
        }
        if DEFAULT_CREDENTIALS.get(key) == config.credentials[key]:
            # The AWS documentation's example pair: public test values, so the
            # secret is printed too. A pair given with --credential is not.
            line["secret_access_key"] = env["AWS_SECRET_ACCESS_KEY"] = config.credentials[key]
        print(json.dumps(line), flush=True)
        print("# to point AWS SDKs and polly-stream at it:", file=sys.stderr)
        print("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()), file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog or "python -m amazon_polly_streaming.emulator")
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        cert_file=args.cert,
        key_file=args.key,
        ca_file=args.ca,
        strict=args.strict,
        verify_signatures=not args.no_verify_signatures,
        credentials=dict(args.credential) if args.credential else dict(DEFAULT_CREDENTIALS),
        audio=args.audio,
        first_audio_delay=args.first_audio_delay,
        real_time_factor=args.real_time_factor,
        idle_timeout=args.idle_timeout,
        max_stream_duration=args.max_stream_duration,
        max_concurrent_streams=args.max_concurrent_streams,
        max_active_streams=args.max_active_streams,
        faults=args.fault or [],
    )
    for option, path in (("--cert", args.cert), ("--key", args.key), ("--ca", args.ca)):
        if path is not None and not os.path.isfile(path):
            parser.error(f"{option} {path}: no such file")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(config))
    except OSError as exc:  # the address is taken, a certificate does not load, ...
        print(f"{parser.prog}: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
