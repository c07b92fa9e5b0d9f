"""The connection pool: one leased connection per stream, at most ``size`` in all.

Polly serves one active stream per HTTP/2 connection, so a lease is the whole
connection. Idle connections are reused most-recent first (the warmest TLS
session, and the others age out); callers beyond the cap wait in FIFO order
and are handed a connection, or the right to open one, as leases come back.
Broken, GOAWAY'd and expired connections are discarded, never handed out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from ._connection import Connection
from .exceptions import PoolTimeoutError, TransportError

__all__ = ["Pool"]


class Pool:
    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        *,
        size: int,
        idle_timeout: float,
        pool_timeout: float | None,
    ) -> None:
        self._connect = connect
        self.size = size
        self._idle_timeout = idle_timeout
        self._pool_timeout = pool_timeout
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()
        self._slots = 0  # connections open or being opened, leased or idle
        # A waiter's future resolves to a connection, or to None meaning "a
        # slot is yours: open a connection".
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._closed = False
        self.loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        return f"<Pool size={self.size} open={self._slots} idle={len(self._idle)} waiting={len(self._waiters)}>"

    async def acquire(self) -> tuple[Connection, bool]:
        """Lease a connection; returns (connection, reused)."""
        if self._closed:
            raise TransportError("the client is closed")
        if not self._waiters:
            conn = self._take_idle()
            if conn is not None:
                return conn, True
            if self._slots < self.size:
                self._slots += 1
                return await self._open(), False
        return await self._wait_turn()

    async def _wait_turn(self) -> tuple[Connection, bool]:
        waiter: asyncio.Future[Connection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._pool_timeout):
                granted = await waiter
        except TimeoutError:
            self._give_up(waiter)
            raise PoolTimeoutError(
                f"no pooled connection became free within {self._pool_timeout:g} s (pool_size={self.size})"
            ) from None
        except BaseException:
            self._give_up(waiter)
            raise
        if granted is not None:
            return granted, True
        return await self._open(), False

    def _give_up(self, waiter: asyncio.Future[Connection | None]) -> None:
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            # Granted just as we gave up: pass it on rather than lose it.
            self._hand_back(waiter.result())
        else:
            waiter.cancel()

    async def _open(self) -> Connection:
        """Open a connection in a slot the caller already holds."""
        try:
            conn = await self._connect()
        except BaseException:
            self._hand_back(None)
            raise
        if self._closed:
            conn.close()
            self._hand_back(None)
            raise TransportError("the client was closed while connecting")
        conn._on_close = self._forget
        self._all.add(conn)
        return conn

    def _take_idle(self) -> Connection | None:
        now = self.loop.time()
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.reusable and now - conn.idle_since < self._idle_timeout:
                return conn
            self._discard(conn)
        return None

    def release(self, conn: Connection) -> None:
        """End a lease; a healthy connection goes back to the pool."""
        if conn.reusable and not self._closed:
            conn.idle_since = self.loop.time()
            self._hand_back(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: Connection) -> None:
        conn.close()
        if conn in self._all:
            self._all.discard(conn)
            self._hand_back(None)

    def _hand_back(self, conn: Connection | None) -> None:
        """Give a connection (or, with None, a free slot) to the first live waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._slots -= 1
        elif self._closed:
            self._discard(conn)
        else:
            self._idle.append(conn)

    def _forget(self, conn: Connection) -> None:
        # The socket closed under an idle connection: drop it now rather than
        # discover it at the next acquire.
        if conn in self._idle:
            self._idle.remove(conn)
            self._all.discard(conn)
            self._hand_back(None)

    async def prewarm(self, count: int) -> int:
        """Open idle connections until ``count`` are ready (bounded by the size)."""
        opened: list[Connection] = []
        try:
            while len(self._idle) + len(opened) < count and self._slots < self.size and not self._waiters:
                self._slots += 1
                opened.append(await self._open())
        finally:
            for conn in opened:
                self.release(conn)
        return len(opened)

    async def close(self) -> None:
        """Close every connection (leased ones too) and fail all waiters."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(TransportError("the client was closed while waiting for a connection"))
        conns = list(self._all)
        self._idle.clear()
        self._all.clear()
        for conn in conns:
            conn._on_close = None
            conn.close()
        if conns:
            await asyncio.gather(*(conn.wait_closed() for conn in conns))
