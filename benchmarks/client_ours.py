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
