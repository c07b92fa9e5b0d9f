"""A client's settings, each checked once, at construction, before any I/O.

Leaf module: no asyncio, ssl or h2. Everything that can be refused without a
connection is refused here, with ``ValueError``/``TypeError``: an endpoint
URL whose user info, path or query would be dropped, a proxy we cannot
speak to, a CA bundle that does not exist, timeouts that are not positive.
Secrets (the proxy password) live in objects whose ``repr`` redacts them.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._admission import Limiter
    from .retries import RetryPolicy

__all__ = ["ClientConfig", "Endpoint", "ProxyConfig", "positive", "proxy_for"]


class Endpoint:
    """Where to connect: host, port, and the ``:authority`` that is signed."""

    __slots__ = ("authority", "host", "port", "url")

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        if not isinstance(url, str):
            raise TypeError(f"endpoint_url must be a str, not {type(url).__name__}")
        if "@" in url:
            # Never echo such a URL: its user info may hold a secret.
            raise ValueError("endpoint_url must not contain user info (user:password@); pass credentials= instead")
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise ValueError(f"endpoint_url must be an https:// URL (Polly speaks HTTP/2 over TLS), not {url!r}")
        if not parts.hostname:
            raise ValueError(f"endpoint_url has no host: {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            # The operation's path is fixed (/v1/synthesisStream); a base path
            # or query would be silently ignored, so refuse it.
            raise ValueError(f"endpoint_url must be scheme://host[:port] only, without a path or query: {url!r}")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"endpoint_url has an invalid port: {url!r}") from exc
        if port is None:
            port = 443
        elif port == 0:
            raise ValueError(f"endpoint_url has an invalid port: {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if port == 443 else f"{host}:{port}"

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r})"


class ProxyConfig:
    """An HTTP proxy to tunnel through with CONNECT; its credentials stay out of ``repr``."""

    __slots__ = ("_authorization", "host", "port")

    def __init__(self, host: str, port: int, authorization: bytes | None) -> None:
        self.host = host
        self.port = port
        self._authorization = authorization

    @classmethod
    def parse(cls, url: str) -> ProxyConfig:
        from base64 import b64encode
        from urllib.parse import unquote, urlsplit

        if not isinstance(url, str):
            raise TypeError(f"proxy must be a str, not {type(url).__name__}")
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"proxy must be an http://host:port URL (the tunnel to Polly is TLS inside CONNECT), not a "
                f"{parts.scheme or 'schemeless'}:// one"
            )
        try:
            port = parts.port or 8080
        except ValueError as exc:
            raise ValueError("proxy has an invalid port") from exc
        authorization = None
        if parts.username is not None:
            user, password = unquote(parts.username), unquote(parts.password or "")
            authorization = b"Basic " + b64encode(f"{user}:{password}".encode())
        return cls(parts.hostname, port, authorization)

    @property
    def authorization(self) -> bytes | None:
        """The ``Proxy-Authorization`` value, if the URL had credentials."""
        return self._authorization

    def key(self) -> tuple[str, int, int]:
        """What tells two proxies apart for connection sharing (the credentials only by hash)."""
        return (self.host, self.port, hash(self._authorization))

    def __repr__(self) -> str:
        auth = ", auth=<redacted>" if self._authorization else ""
        return f"ProxyConfig({self.host!r}, {self.port}{auth})"


def proxy_for(host: str, explicit: str | None, environ: Mapping[str, str]) -> ProxyConfig | None:
    """The proxy for ``host``: ``explicit``, else HTTPS_PROXY unless NO_PROXY matches."""
    url = explicit
    if url is None:
        url = environ.get("HTTPS_PROXY") or environ.get("https_proxy")
        if not url:
            return None
        no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
        for entry in (item.strip().lower() for item in no_proxy.split(",")):
            bare = entry.lstrip(".")
            if entry == "*" or (bare and (host == bare or host.endswith("." + bare))):
                return None
    return ProxyConfig.parse(url)


def positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds")
    if not value > 0:
        raise ValueError(f"{name} must be positive")
    return float(value)


def check_limiter(limiter: object) -> Limiter | None:
    """None, a limiter (anything with ``acquire``), or an int meaning ``LocalLimiter(n)``."""
    if limiter is None:
        return None
    if isinstance(limiter, int) and not isinstance(limiter, bool):
        from .limits import LocalLimiter

        return LocalLimiter(limiter)
    if not callable(getattr(limiter, "acquire", None)):
        raise TypeError(f"limiter must be a LocalLimiter, a RedisLimiter or an int, not {type(limiter).__name__}")
    return limiter  # type: ignore[return-value]


def check_region(region: object) -> str:
    if not isinstance(region, str):
        raise TypeError(f"region must be a str, not {type(region).__name__}")
    if not region or not region.isascii() or not all(c.isalnum() or c == "-" for c in region):
        raise ValueError(f"invalid region {region!r}")
    return region


def check_verify(verify: object) -> bool | str:
    if isinstance(verify, bool):
        return verify
    if not isinstance(verify, str):
        raise TypeError("verify must be True, False or the path of a CA bundle")
    if not os.path.exists(verify):
        raise ValueError(f"verify: the CA bundle {verify!r} does not exist")
    return verify


class ClientConfig:
    """Everything a client's streams need to know, validated; shared by its per-loop runtimes."""

    __slots__ = (
        "connect_timeout",
        "endpoint",
        "idle_timeout",
        "keepalive_interval",
        "limiter",
        "pool_size",
        "pool_timeout",
        "proxy",
        "read_timeout",
        "region",
        "retries",
        "verify",
    )

    def __init__(
        self,
        *,
        region: str,
        pool_size: int,
        endpoint: Endpoint,
        verify: bool | str,
        connect_timeout: float,
        read_timeout: float,
        pool_timeout: float | None,
        idle_timeout: float,
        proxy: ProxyConfig | None,
        keepalive_interval: float | None,
        retries: RetryPolicy | None,
        limiter: Limiter | None = None,
    ) -> None:
        self.region = region
        self.pool_size = pool_size
        self.endpoint = endpoint
        self.verify = verify
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool_timeout = pool_timeout
        self.idle_timeout = idle_timeout
        self.proxy = proxy
        self.keepalive_interval = keepalive_interval
        self.retries = retries
        self.limiter = limiter

    def pool_key(self) -> tuple[object, ...]:
        """Clients whose keys are equal may share idle connections (same endpoint, TLS and proxy)."""
        endpoint = self.endpoint
        proxy = None if self.proxy is None else self.proxy.key()
        return (endpoint.host, endpoint.port, endpoint.authority, self.verify, proxy)

    def __repr__(self) -> str:
        return f"ClientConfig(region={self.region!r}, endpoint={self.endpoint.url!r}, pool_size={self.pool_size})"
