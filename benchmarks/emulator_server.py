"""The benchmark's server: the emulator in one process of several that share a port, on asyncio or uvloop.

    python benchmarks/emulator_server.py --cert C --key K --ca CA [--port P] [--loop uvloop]

The emulator itself (``amazon_polly_streaming.emulator.Emulator``, tone audio,
as fast as possible); only its listener differs from the emulator's command
line: it sets ``SO_REUSEPORT``, so that the harness can start more processes
on the port of the first and let the kernel spread the connections among
them when one process cannot keep up with the clients. Every process serves
the same certificate, made by the harness. Prints one JSON line (port, pid)
when it listens, and one line of its quota's readings (``Emulator.quota``) on
each SIGUSR1; stops on SIGTERM. The fleet benchmark runs one such process
with ``--max-active-streams`` (a quota is per process) and
``--real-time-factor 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys

from amazon_polly_streaming.emulator import Emulator, EmulatorConfig


class SharedPortEmulator(Emulator):
    """The emulator, listening with ``SO_REUSEPORT``."""

    async def start(self) -> SharedPortEmulator:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self._connection, self.config.host, self.config.port, ssl=self._ssl_context(), reuse_port=True
        )
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        return self


async def serve(config: EmulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with SharedPortEmulator(config) as emulator:
        loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(emulator.quota.stats()._asdict()), flush=True))
        print(json.dumps({"port": emulator.port, "pid": os.getpid()}), flush=True)
        await stop.wait()


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--port", type=int, default=0, help="0 for a free port (the first process)")
    options.add_argument("--cert", required=True)
    options.add_argument("--key", required=True)
    options.add_argument("--ca", required=True)
    options.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    options.add_argument("--max-active-streams", type=int, help="the account's quota (one process only)")
    options.add_argument("--real-time-factor", type=float, default=0.0, help="1: audio at the pace of speech")
    args = options.parse_args()
    config = EmulatorConfig(
        port=args.port,
        cert_file=args.cert,
        key_file=args.key,
        ca_file=args.ca,
        audio="tone",
        real_time_factor=args.real_time_factor,
        max_concurrent_streams=256,
        max_active_streams=args.max_active_streams,
    )
    loop_factory = None
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
