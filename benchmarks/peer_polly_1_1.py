"""Benchmark and interop driver for amazon-polly-streaming 1.1.0 (run in its own Python 3.13 venv).

That release always connects to polly.<region>.amazonaws.com:443 and trusts the
system CAs; the harness redirects its connect function to the emulator and
trusts the emulator's CA. Nothing else of it is changed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
from collections.abc import AsyncIterator
from typing import Any

from workloads import main


class Peer:
    client: Any = None

    async def start(self, args: argparse.Namespace) -> None:
        os.environ["AWS_ACCESS_KEY_ID"] = args.key
        os.environ["AWS_SECRET_ACCESS_KEY"] = args.secret
        # importlib: for type checkers "amazon_polly_streaming" is this repository's package.
        release = importlib.import_module("amazon_polly_streaming")
        _connection_pool = importlib.import_module("amazon_polly_streaming._connection_pool")
        from awscrt import http  # type: ignore[import-not-found]
        from awscrt import io as crt_io

        host, _, port = args.endpoint.removeprefix("https://").partition(":")
        options = crt_io.TlsContextOptions()
        options.override_default_trust_store_from_path(None, args.ca)
        context = crt_io.ClientTlsContext(options)

        async def connect(_host: str, _port: int, *, bootstrap: Any, tls_ctx: Any) -> Any:
            tls = context.new_connection_options()
            tls.set_server_name(host)
            tls.set_alpn_list(["h2"])
            future = http.HttpClientConnection.new(
                host_name=host,
                port=int(port),
                bootstrap=bootstrap,
                socket_options=crt_io.SocketOptions(),
                tls_connection_options=tls,
            )
            return await asyncio.wrap_future(future)

        setattr(_connection_pool, "_connect", connect)  # noqa: B010 - patching a module we do not type
        self.client = release.PollyStreamingClient(args.region, pool_size=args.pool_size)

    def stream(self, text: str, args: argparse.Namespace) -> AsyncIterator[bytes]:
        result: AsyncIterator[bytes] = self.client.start_speech_synthesis_stream(
            text=text, voice_id=args.voice, output_format=args.format, sample_rate=args.rate
        )
        return result

    async def close(self) -> None:
        return None  # the release has no close()


if __name__ == "__main__":
    main(Peer())
