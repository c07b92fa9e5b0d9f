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
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

from ..exceptions import PoolTimeoutError, TransportError
from .connection import Connection

__all__ = ["ConnectionPool", "Slots", "loop_is_ending", "shared_pool"]


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
        self._stopping = False  # close_idle is stopping the keeper (not the loop's shutdown)
        #: When the timer task will next look, if it sleeps until then.
        self._next_check = math.inf
        #: The shortest idle timeout a connection came back with: one given back now is due no sooner.
        self._shortest_idle = math.inf
        #: The event loop is shutting down: keep nothing, lend nothing.
        self.shut = False

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
            if conn.idle and now < deadline:
                return conn
            self._discard(conn)
        return None

    async def open(self, connect: Callable[[], Awaitable[Connection]]) -> Connection:
        conn = await connect()
        if self.shut:
            conn.abort()
            raise TransportError("the event loop is shutting down")
        conn.on_close = self._forget
        self._all.add(conn)
        self._watch()
        return conn

    def give_back(self, conn: Connection, idle_timeout: float) -> bool:
        """End a lease: a healthy connection waits, idle, for the next stream of any user.

        Returns whether it was kept.
        """
        if conn.reusable and self._users and conn in self._all and not self.shut:
            deadline = self.loop.time() + idle_timeout
            if idle_timeout < self._shortest_idle:
                self._shortest_idle = idle_timeout
            self._idle.append((conn, deadline))
            self._watch(deadline)
            return True
        if self.shut:
            self._all.discard(conn)
            conn.on_close = None
            conn.abort()  # the loop is about to close: no goodbye it could finish
        else:
            self._discard(conn)
        return False

    def _discard(self, conn: Connection) -> None:
        self._all.discard(conn)
        conn.on_close = None
        conn.close()
        self._poke()

    def _forget(self, conn: Connection) -> None:
        # The socket closed under a connection: never hand it out again.
        self._all.discard(conn)
        self._idle = [item for item in self._idle if item[0] is not conn]
        self._poke()

    # ------------------------------------------------------------ the timer task

    def _watch(self, deadline: float = math.inf) -> None:
        """Keep the timer task running while the pool holds any connection, leased or idle.

        A task, not a timer handle: ``asyncio.run`` cancels every task when
        its main coroutine returns, and that cancellation is how the pool
        learns that the loop is ending, before streams still open at that
        moment (a generator left unclosed, a task the runner cancelled) give
        their connections back. A cancellation while the loop runs on (the
        application sweeping its tasks) only ends this task: the next call
        starts another.
        """
        if self._keeper is None:
            self._wake = asyncio.Event()
            self._next_check = math.inf
            self._keeper = self.loop.create_task(self._keep(), name="polly-pooled-connections")
        elif deadline < self._next_check:
            self._poke()  # this deadline comes first (a busy pool's later ones need no wake-up)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _keep(self) -> None:
        wake = self._wake
        assert wake is not None
        swept = False
        try:
            while self._all:
                now = self.loop.time()
                for conn, deadline in [item for item in self._idle if item[1] <= now]:
                    self._idle.remove((conn, deadline))
                    self._discard(conn)
                wake.clear()
                # With leased ones only: one that comes back is due no sooner than the shortest idle timeout
                # from now, so a look then needs no wake-up at every return (a busy pool's keeper woke once
                # per stream); a shorter timeout still wakes it (give_back).
                earliest = min(deadline for _, deadline in self._idle) if self._idle else now + self._shortest_idle
                self._next_check = earliest
                if earliest == math.inf:
                    await wake.wait()  # nothing came back yet: until one does or goes
                    continue
                try:
                    async with asyncio.timeout_at(earliest):
                        await wake.wait()
                except TimeoutError:
                    pass
                self._next_check = math.inf
        except asyncio.CancelledError:
            if self._stopping:
                pass
            elif loop_is_ending(self.loop):
                # asyncio.run is ending the loop: close the idle sockets now
                # (not at garbage collection), and from now on close, rather
                # than keep, every connection that comes back.
                self.shut = True
                for conn, _ in self._idle:
                    self._all.discard(conn)
                    conn.on_close = None
                    conn.abort()
                self._idle.clear()
                _forget_pool(self)
            else:
                # The application swept its tasks (a supervisor, a reload, a
                # test helper) while the loop runs on: the connections stay
                # good, and a new task watches them from the pool's next use.
                swept = True
            raise
        finally:
            self._keeper = None
            self._wake = None
            self._next_check = math.inf
            if swept and self._idle:
                # Not at once: a sweep that repeats until no other task is
                # left would never end. Idle deadlines still close on time.
                earliest = min(deadline for _, deadline in self._idle)
                self.loop.call_at(earliest, self._rewatch)
        if not self._all and not self._users:
            _forget_pool(self)

    def _rewatch(self) -> None:
        if self._keeper is None and self._all and not self.shut:
            self._watch()

    async def close_idle(self) -> None:
        """Close every idle connection (GOAWAY, then the socket) and wait for them to go."""
        keeper = self._keeper
        if keeper is not None:
            self._stopping = True
            keeper.cancel()
            try:
                await asyncio.gather(keeper, return_exceptions=True)
            finally:
                self._stopping = False
        closing = [conn for conn, _ in self._idle]
        self._idle.clear()
        for conn in closing:
            self._discard(conn)
        if closing:
            await asyncio.gather(*(conn.wait_closed() for conn in closing))
        if self._all:
            self._watch()  # leases still out: keep watching them
        elif not self._users:
            _forget_pool(self)


# ---------------------------------------------------------------- registry

_POOLS: dict[asyncio.AbstractEventLoop, dict[Hashable, ConnectionPool]] = {}
# Each event loop's thread reaches the registry: one at a time.
_POOLS_LOCK = threading.Lock()


def shared_pool(loop: asyncio.AbstractEventLoop, key: Hashable) -> ConnectionPool:
    """The pool of ``loop`` for connections described by ``key`` (made on first use)."""
    with _POOLS_LOCK:
        for stale in [other for other in _POOLS if other.is_closed()]:
            # A loop that was closed without asyncio.run's clean-up: its
            # sockets can no longer be closed through it; drop them for the
            # collector.
            del _POOLS[stale]
        pools = _POOLS.setdefault(loop, {})
        pool = pools.get(key)
        if pool is None:
            pool = pools[key] = ConnectionPool(loop, key)
        return pool


def loop_is_ending(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop``'s tasks are being cancelled because the loop is ending.

    ``asyncio.run`` (``asyncio.Runner.close``, also behind ``uvloop.run``)
    ends a loop by cancelling every task at once and running the loop until
    they finish (``_cancel_all_tasks`` in asyncio/runners.py), as do signal
    handlers that stop an application. An application that sweeps its other
    tasks while the loop runs on leaves at least the sweeping task (or its
    main task) alive and uncancelled: that is not an ending.
    """
    if loop.is_closed():
        return True
    return all(task.done() or task.cancelling() for task in asyncio.all_tasks(loop))


def _forget_pool(pool: ConnectionPool) -> None:
    with _POOLS_LOCK:
        pools = _POOLS.get(pool.loop)
        if pools is not None and pools.get(pool.key) is pool:
            del pools[pool.key]
            if not pools:
                del _POOLS[pool.loop]
