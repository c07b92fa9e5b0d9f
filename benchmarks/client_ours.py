"""Benchmark driver for this repository's ``PollyStreamingClient`` (credentials from the environment)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from workloads import main


class Ours:
    """Ours, imported when started (cold start includes the import): the package on the path, or ``package``
    (``ab_driver.py`` loads a second ``src/`` tree under a name of its own)."""

    client: Any = None

    def __init__(self, package: ModuleType | None = None) -> None:
        self.package = package

    async def start(self, args: argparse.Namespace) -> None:
        package = self.package or importlib.import_module("amazon_polly_streaming")
        if args.fixed_clock:
            # Under callgrind a stream takes about 50 times as long, so the second that dates the requests
            # would turn over 50 times as often per stream as in real use, and each new second signs the
            # request afresh: the count would measure valgrind's slowness. With the clock still, every
            # stream reuses the signature made in the warm-up, as all but one stream in hundreds do at
            # full speed; a fresh signature's cost is measured apart (README, Benchmarks).
            import time

            session = importlib.import_module(package.__name__ + "._session")
            now = time.time()
            session.wall_clock = lambda: now  # type: ignore[attr-defined]

        self.client = package.PollyStreamingClient(
            args.region, pool_size=args.pool_size, endpoint_url=args.endpoint, verify=args.ca
        )

    def stream(self, text: str, args: argparse.Namespace) -> AsyncIterator[bytes]:
        result: AsyncIterator[bytes] = self.client.start_speech_synthesis_stream(
            text=text, voice_id=args.voice, output_format=args.format, sample_rate=args.rate
        )
        return result

    async def close(self) -> None:
        await self.client.close()


if __name__ == "__main__":
    main(Ours())
