"""Benchmark driver for this repository's ``PollyStreamingClient`` (credentials from the environment)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

from workloads import main


class Ours:
    client: Any = None

    async def start(self, args: argparse.Namespace) -> None:
        from amazon_polly_streaming import PollyStreamingClient

        if args.fixed_clock:
            # Under callgrind a stream takes about 50 times as long, so the second that dates the requests
            # would turn over 50 times as often per stream as in real use, and each new second signs the
            # request afresh: the count would measure valgrind's slowness. With the clock still, every
            # stream reuses the signature made in the warm-up, as all but one stream in hundreds do at
            # full speed; a fresh signature's cost is measured apart (README, Benchmarks).
            import time

            from amazon_polly_streaming import _session

            now = time.time()
            _session.wall_clock = lambda: now

        self.client = PollyStreamingClient(
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
