"""Opening a connection: TCP (directly or through an HTTP CONNECT proxy), TLS with ALPN ``h2``.

Every step, the server's HTTP/2 preface included, is bounded by
``connect_timeout`` and every failure is a typed
``ConnectError``: refused, unreachable, proxy refusal, TLS verification, or a
server that does not speak HTTP/2.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from typing import Any

from .._config import ProxyConfig
from ..exceptions import ConnectError, ConnectTimeoutError, PollyStreamingError, TLSError
from .connection import Connection

__all__ = ["open_connection", "tls_context"]

logger = logging.getLogger("amazon_polly_streaming")


@functools.lru_cache(maxsize=8)
def tls_context(verify: bool | str) -> ssl.SSLContext:
    """One TLS context per verification setting (loading CAs is slow)."""
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        logger.warning("TLS certificate verification is disabled (verify=False): the endpoint is not authenticated")
    else:
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    return context


def _tls_error(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError | ssl.CertificateError)


async def open_connection(
    *,
    host: str,
    port: int,
    authority: str,
    ssl_context: ssl.SSLContext,
    server_hostname: str | None,
    connect_timeout: float,
    proxy: ProxyConfig | None = None,
) -> Connection:
    """Connect, handshake TLS with ALPN ``h2`` and send the HTTP/2 preface.

    The server's preface must then come before ``connect_timeout`` ends too
    (the connection watches for it without holding the first stream back).
    """
    loop = asyncio.get_running_loop()
    conn = Connection(loop, authority, preface_deadline=loop.time() + connect_timeout)
    target = f"{host}:{port}"
    try:
        async with asyncio.timeout(connect_timeout):
            if proxy is None:
                await loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=connect_timeout,
                )
            else:
                await _connect_through_proxy(
                    loop, conn, proxy, host, port, ssl_context, server_hostname, connect_timeout
                )
    except TimeoutError:
        conn.close()
        raise ConnectTimeoutError(f"connecting to {target} took longer than {connect_timeout:g} s") from None
    except PollyStreamingError:
        conn.close()
        raise
    except OSError as exc:
        conn.close()
        if _tls_error(exc):
            if isinstance(exc, ssl.SSLCertVerificationError):
                detail = f"certificate verify failed: {exc.verify_message}"
            else:
                detail = getattr(exc, "reason", None) or str(exc)
            raise TLSError(f"TLS handshake with {target} failed: {detail}") from exc
        raise ConnectError(f"cannot connect to {target}: {exc.strerror or exc}") from exc
    except BaseException:
        conn.abort()  # cancelled: nothing half-open stays behind
        raise
    transport = conn.transport
    assert transport is not None
    ssl_object: Any = transport.get_extra_info("ssl_object")
    alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    if alpn != "h2":
        conn.abort()
        raise TLSError(f"{target} did not negotiate HTTP/2 over TLS (ALPN gave {alpn!r}); Polly requires h2")
    return conn


class _TunnelSetup(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT; TLS then takes the transport over."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[bytes] = loop.create_future()
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\r\n\r\n" in self._buffer and not self.answer.done():
            self.answer.set_result(self._buffer)
        elif len(self._buffer) > 64 * 1024 and not self.answer.done():
            self.answer.set_exception(ConnectError("the proxy's answer to CONNECT is too long"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectError("the proxy closed the connection during CONNECT"))


async def _connect_through_proxy(
    loop: asyncio.AbstractEventLoop,
    conn: Connection,
    proxy: ProxyConfig,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    server_hostname: str | None,
    connect_timeout: float,
) -> None:
    """Tunnel with HTTP CONNECT, then start TLS to the endpoint inside the tunnel."""
    setup = _TunnelSetup(loop)
    try:
        transport, _ = await loop.create_connection(lambda: setup, proxy.host, proxy.port)
    except OSError as exc:
        raise ConnectError(f"cannot connect to proxy {proxy.host}:{proxy.port}: {exc.strerror or exc}") from exc
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n".encode("latin-1")
        if proxy.authorization:
            request += b"Proxy-Authorization: " + proxy.authorization + b"\r\n"
        transport.write(request + b"\r\n")
        answer = await setup.answer
        status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or parts[1] != "200":
            raise ConnectError(f"proxy {proxy.host}:{proxy.port} refused the tunnel: {status_line[:200]}")
        tls_transport = await loop.start_tls(
            transport, setup, ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=connect_timeout
        )
    except BaseException:
        transport.abort()
        raise
    if tls_transport is None:
        raise ConnectError("the proxy tunnel closed during the TLS handshake")
    tls_transport.set_protocol(conn)
    conn.connection_made(tls_transport)
