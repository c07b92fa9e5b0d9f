"""A client's state on one event loop: its leases of the shared pool, its live streams.

Connections, futures and tasks belong to one event loop. A client used from
several loops (a thread each, or ``asyncio.run`` called again) has one
``Runtime`` per loop, and a runtime only ever touches its own loop's
transports. Everything here runs on that loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

from ._transport.connection import Connection
from ._transport.dial import open_connection, tls_context
from ._transport.pool import ConnectionPool, Slots, loop_is_ending, shared_pool
from ._version import __version__
from ._wire.request import RequestSigner
from .exceptions import TransportError

if TYPE_CHECKING:
    from ._config import ClientConfig
    from .credentials import CredentialResolver

__all__ = ["USER_AGENT", "Runtime", "StreamOwner"]

logger = logging.getLogger("amazon_polly_streaming")
USER_AGENT = f"amazon-polly-streaming/{__version__} python/{sys.version_info[0]}.{sys.version_info[1]}"


class StreamOwner:
    """What a runtime needs of a live stream: a way to end it when the client closes."""

    def abandon(self, error: TransportError) -> None:
        raise NotImplementedError


class Runtime:
    """One client on one event loop."""

    def __init__(self, config: ClientConfig, credentials: CredentialResolver) -> None:
        self.loop = asyncio.get_running_loop()
        self.config = config
        self.endpoint = config.endpoint
        self.credentials = credentials
        self.signer = RequestSigner(config.region)
        #: The session's HTTP/2 form of the last signed request's headers, which the signer hands every stream
        #: of the same second (``_session._http2_headers``): kept here, it goes with the client.
        self.http2_headers: Any = None
        self._ssl_context = tls_context(config.verify)
        self.pool: ConnectionPool = self._shared_pool()
        self.slots = Slots(config.pool_size, config.pool_timeout)
        self.streams: set[StreamOwner] = set()
        self._unpooled: set[Connection] = set()
        self._connecting: set[asyncio.Task[Connection]] = set()
        self.closed = False

    def __repr__(self) -> str:
        return f"<Runtime {self.endpoint.authority} streams={len(self.streams)} {self.slots!r}>"

    def _shared_pool(self) -> ConnectionPool:
        pool = shared_pool(self.loop, self.config.pool_key())
        pool.attach(self)
        return pool

    def _pool_in_service(self) -> ConnectionPool:
        """The pool, or a new one if the last was shut by what looked like the loop's end but was not."""
        if self.pool.shut:
            if loop_is_ending(self.loop):
                raise TransportError("the event loop is shutting down")
            self.pool = self._shared_pool()
        return self.pool

    # ------------------------------------------------------------ connections

    async def _dial(self) -> Connection:
        config = self.config
        endpoint = self.endpoint
        conn = await open_connection(
            host=endpoint.host,
            port=endpoint.port,
            authority=endpoint.authority,
            ssl_context=self._ssl_context,
            server_hostname=endpoint.host,
            connect_timeout=config.connect_timeout,
            proxy=config.proxy,
        )
        logger.debug("connected to %s", endpoint.authority)
        return conn

    async def connect(self) -> Connection:
        """A new connection; ``close()`` interrupts it while it is being made."""
        if self.closed:
            raise TransportError("the client is closed")
        task = self.loop.create_task(self._dial())
        self._connecting.add(task)
        try:
            conn = await task
        except BaseException as exc:
            if task.done() and not task.cancelled() and task.exception() is None:
                # Made in the very step we were cancelled: nobody will use it.
                task.result().abort()
            current = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and self.closed and current and not current.cancelling():
                raise TransportError("the client was closed while the connection was being made") from None
            raise
        finally:
            self._connecting.discard(task)
        if self.closed:
            conn.abort()
            raise TransportError("the client was closed while the connection was being made")
        return conn

    async def lease(self, use_pool: bool) -> tuple[Connection, bool]:
        """A connection for one stream: (connection, reused)."""
        if self.closed:
            raise TransportError("the client is closed")
        if not use_pool:
            conn = await self.connect()
            self._unpooled.add(conn)
            return conn, False
        pool = self.pool if not self.pool.shut else self._pool_in_service()
        await self.slots.acquire()
        try:
            idle = pool.take_idle()
            if idle is not None:
                return idle, True
            return await pool.open(self.connect), False
        except BaseException:
            self.slots.release()
            raise

    def give_back(self, conn: Connection, use_pool: bool) -> None:
        if not use_pool:
            self._unpooled.discard(conn)
            conn.close()
            return
        self.pool.give_back(conn, self.config.idle_timeout)
        self.slots.release()

    async def prewarm(self, count: int) -> int:
        """Open idle pooled connections until ``count`` wait (within this client's cap).

        Returns how many it added; at most ``count`` attempts, so a server
        that takes no streams cannot make it dial for ever.
        """
        target = min(count, self.config.pool_size)
        added = 0
        for _ in range(target):
            pool = self._pool_in_service()
            if pool.idle_count >= target or self.slots.free == 0:
                break
            await self.slots.acquire()
            try:
                conn = await pool.open(self.connect)
            finally:
                self.slots.release()
            try:
                # Warm means ready: the server's preface came (within connect_timeout).
                await conn.wait_preface()
            finally:
                added += pool.give_back(conn, self.config.idle_timeout)
        return added

    # ------------------------------------------------------------ closing

    async def close(self) -> None:
        """End this client's streams and connections on this loop; other clients' are untouched."""
        self.closed = True
        error = TransportError("the client was closed")
        for stream in list(self.streams):
            stream.abandon(error)
        for task in list(self._connecting):
            task.cancel()
        self.slots.close()
        unpooled = list(self._unpooled)
        self._unpooled.clear()
        for conn in unpooled:
            conn.close()
        await self.pool.detach(self)
        if unpooled:
            await asyncio.gather(*(conn.wait_closed() for conn in unpooled))
