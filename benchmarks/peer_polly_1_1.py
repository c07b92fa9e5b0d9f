"""Benchmark and interop driver for amazon-polly-streaming 1.1.0 from PyPI (run in its own Python 3.12+ venv).

That release has no endpoint option: it always connects to
``polly.<region>.amazonaws.com:443`` through
``amazon_polly_streaming._connection_pool._connect(host, port, *, bootstrap, tls_ctx)``
(also imported by name into ``_http2``) and trusts the system CAs. This driver
replaces that one function with one
that opens the same kind of awscrt HTTP/2 connection to the emulator, trusting
the emulator's CA; the request (and its signed ``host``) is unchanged, and
nothing else of the release is touched. Credentials come from the environment
(botocore's default chain, as the release does it).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import AsyncIterator
from typing import Any

from workloads import main


class Peer:
    client: Any = None

    async def start(self, args: argparse.Namespace) -> None:
        # importlib: to type checkers "amazon_polly_streaming" is this repository's package, not the release.
        release = importlib.import_module("amazon_polly_streaming")
        connection_pool: Any = importlib.import_module("amazon_polly_streaming._connection_pool")
        http2: Any = importlib.import_module("amazon_polly_streaming._http2")  # imports it by name (no pool)
        crt_http = importlib.import_module("awscrt.http")
        crt_io = importlib.import_module("awscrt.io")

        host, _, port = args.endpoint.removeprefix("https://").partition(":")
        options = crt_io.TlsContextOptions()
        options.override_default_trust_store_from_path(None, args.ca)
        context = crt_io.ClientTlsContext(options)

        async def connect(_host: str, _port: int, *, bootstrap: Any, tls_ctx: Any) -> Any:
            tls = context.new_connection_options()
            tls.set_server_name(host)
            tls.set_alpn_list(["h2"])
            future = crt_http.HttpClientConnection.new(
                host_name=host,
                port=int(port or 443),
                bootstrap=bootstrap,
                socket_options=crt_io.SocketOptions(),
                tls_connection_options=tls,
            )
            return await asyncio.wrap_future(future)

        connection_pool._connect = http2._connect = connect
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
