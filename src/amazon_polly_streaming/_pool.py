"""Pooled HTTP/2 connections, shared within an event loop, and each client's cap on its leases.

Polly serves one active stream per HTTP/2 connection, so a lease is a whole
connection. Idle connections to one endpoint (same TLS and proxy settings)
are shared by every client of an event loop, as the 1.1.0 release's guide
promised ("the HTTP/2 connection pool inside the library is already shared
process-wide"): a script that makes a client per call reuses one warm
connection instead of leaking one per client. Each client still caps its
own concurrent streams (:class:`Slots`, FIFO, with an optional timeout).

Idle connections are reused most-recent first (the warmest, and the others
age out) and closed by a timer after their idle timeout. The timer is a
task, so that when ``asyncio.run`` ends the loop (it cancels every task)
the idle sockets are closed rather than left to the garbage collector.
Knows nothing of Polly.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

from ._connection import Connection
from .exceptions import PoolTimeoutError, TransportError

__all__ = ["ConnectionPool", "Slots", "shared_pool"]


class Slots:
    """A client's cap on concurrent leases; callers beyond it wait in FIFO order."""

    __slots__ = ("_free", "_timeout", "_waiters", "closed", "size")

    def __init__(self, size: int, timeout: float | None) -> None:
        self.size = size
        self._free = size
        self._timeout = timeout
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False

    def __repr__(self) -> str:
        return f"<Slots {self.size - self._free}/{self.size} in use, {len(self._waiters)} waiting>"

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self) -> None:
        if self.closed:
            raise TransportError("the client is closed")
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._timeout):
                await waiter
        except TimeoutError:
            self._give_up(waiter)
            raise PoolTimeoutError(
                f"no pooled connection became free within {self._timeout:g} s (pool_size={self.size})"
            ) from None
        except BaseException:
            self._give_up(waiter)
            raise

    def _give_up(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            self.release()  # granted just as we gave up: pass it on rather than lose it
        else:
            waiter.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self._free += 1

    def close(self) -> None:
        """Fail every waiter; further acquires fail."""
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(TransportError("the client was closed while waiting for a connection"))


class ConnectionPool:
    """Idle connections to one endpoint on one event loop, and all the connections it lent."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: Hashable) -> None:
        self.loop = loop
        self.key = key
        self._idle: list[tuple[Connection, float]] = []  # (connection, idle deadline), most recent last
        self._all: set[Connection] = set()
        self._users: weakref.WeakSet[object] = weakref.WeakSet()
        self._keeper: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        #: When the idle timer will next look, if it sleeps until then.
        self._next_check = math.inf

    def __repr__(self) -> str:
        return f"<ConnectionPool {len(self._all)} connections, {len(self._idle)} idle>"

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def connections(self) -> frozenset[Connection]:
        """Every connection of the pool, leased or idle."""
        return frozenset(self._all)

    # ------------------------------------------------------------ users

    def attach(self, user: object) -> None:
        """``user`` (a client's runtime) shares this pool until it detaches or is collected."""
        self._users.add(user)

    async def detach(self, user: object) -> None:
        """``user`` is done; with no user left, close the idle connections now."""
        self._users.discard(user)
        if not self._users:
            await self.close_idle()

    # ------------------------------------------------------------ leases

    def take_idle(self) -> Connection | None:
        """The most recently used idle connection that is still good, or None."""
        idle = self._idle
        now = self.loop.time()
        while idle:
            conn, deadline = idle.pop()
            if conn.reusable and now < deadline:
                return conn
            self._discard(conn)
        return None

    async def open(self, connect: Callable[[], Awaitable[Connection]]) -> Connection:
        conn = await connect()
        conn.on_close = self._forget
        self._all.add(conn)
        return conn

    def give_back(self, conn: Connection, idle_timeout: float) -> None:
        """End a lease: a healthy connection waits, idle, for the next stream of any user."""
        if conn.reusable and self._users and conn in self._all:
            deadline = self.loop.time() + idle_timeout
            self._idle.append((conn, deadline))
            self._keep_time(deadline)
        else:
            self._discard(conn)

    def _discard(self, conn: Connection) -> None:
        self._all.discard(conn)
        conn.on_close = None
        conn.close()

    def _forget(self, conn: Connection) -> None:
        # The socket closed under a connection: never hand it out again.
        self._all.discard(conn)
        self._idle = [item for item in self._idle if item[0] is not conn]

    # ------------------------------------------------------------ idle timer

    def _keep_time(self, deadline: float) -> None:
        if self._keeper is None:
            self._wake = asyncio.Event()
            self._next_check = math.inf
            self._keeper = self.loop.create_task(self._expire_idle(), name="polly-idle-connections")
        elif deadline < self._next_check:
            assert self._wake is not None
            self._wake.set()  # this deadline comes first (a busy pool's later ones need no wake-up)

    async def _expire_idle(self) -> None:
        wake = self._wake
        assert wake is not None
        try:
            while self._idle:
                now = self.loop.time()
                for conn, deadline in [item for item in self._idle if item[1] <= now]:
                    self._idle.remove((conn, deadline))
                    self._discard(conn)
                if not self._idle:
                    break
                wake.clear()
                earliest = min(deadline for _, deadline in self._idle)
                self._next_check = earliest
                try:
                    async with asyncio.timeout_at(earliest):
                        await wake.wait()
                except TimeoutError:
                    pass
                self._next_check = math.inf
        except asyncio.CancelledError:
            # The loop is shutting down (asyncio.run cancels every task at its
            # end) or the pool closes: close the sockets now, not at GC.
            for conn, _ in self._idle:
                self._all.discard(conn)
                conn.on_close = None
                conn.abort()
            self._idle.clear()
            raise
        finally:
            self._keeper = None
        if not self._all and not self._users:
            _forget_pool(self)

    async def close_idle(self) -> None:
        """Close every idle connection and wait for their sockets to go."""
        keeper = self._keeper
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        closing = [conn for conn, _ in self._idle]
        self._idle.clear()
        for conn in closing:
            self._discard(conn)
        if closing:
            await asyncio.gather(*(conn.wait_closed() for conn in closing))
        if not self._all and not self._users:
            _forget_pool(self)


# ---------------------------------------------------------------- registry

_POOLS: dict[asyncio.AbstractEventLoop, dict[Hashable, ConnectionPool]] = {}


def shared_pool(loop: asyncio.AbstractEventLoop, key: Hashable) -> ConnectionPool:
    """The pool of ``loop`` for connections described by ``key`` (made on first use)."""
    for stale in [other for other in _POOLS if other.is_closed()]:
        # A loop that was closed without asyncio.run's clean-up: its sockets
        # can no longer be closed through it; drop them for the collector.
        del _POOLS[stale]
    pools = _POOLS.setdefault(loop, {})
    pool = pools.get(key)
    if pool is None:
        pool = pools[key] = ConnectionPool(loop, key)
    return pool


def _forget_pool(pool: ConnectionPool) -> None:
    pools = _POOLS.get(pool.loop)
    if pools is not None and pools.get(pool.key) is pool:
        del pools[pool.key]
        if not pools:
            del _POOLS[pool.loop]
