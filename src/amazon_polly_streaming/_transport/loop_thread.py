"""An async generator run on an event loop of its own thread, its items handed to a blocking caller.

A blocking caller (``sync.iter_synthesize``) waits between chunks for as long
as it likes (playback, an upload). Were the loop run only inside its
``next()``, nothing would run meanwhile: no keep-alive, no text forwarded, and
the server would end the stream for idleness. Here the loop runs all along on
a daemon thread; chunks cross to the caller through a buffer bounded in bytes,
and when that is full the loop stops reading the generator (HTTP/2 flow
control holds the rest at the server) while the loop's other tasks go on.

A chunk costs one lock round and, only when the loop waits for room, one
wake-up of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable

__all__ = ["LoopThread"]


class _CallerGone(Exception):
    """The caller closed the generator: stop reading."""


class LoopThread:
    """Runs ``generator`` on a new event loop in a daemon thread; :meth:`get` hands out its chunks.

    ``limit`` bounds the bytes waiting for the caller; ``close`` runs on that
    loop once the generator is done (the client that made it closes there).
    """

    def __init__(
        self, generator: AsyncGenerator[bytes, None], close: Callable[[], Awaitable[None]], limit: int
    ) -> None:
        self._close = close
        self._generator = generator
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._end = False
        self._error: BaseException | None = None
        self._gone = False  # the caller left
        self._closing = False  # the generator is done; closing
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._room: asyncio.Event | None = None  # set (on the loop) when the caller took a chunk
        self._waiting = False  # the loop waits for room
        self._thread = threading.Thread(target=self._run, name="polly-sync-stream", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the loop's thread

    def _run(self) -> None:
        try:
            loop = asyncio.new_event_loop()  # the policy's loop: uvloop's where installed
        except BaseException as exc:
            self._finish(exc)  # the caller must not wait for ever
            return
        try:
            self._task = loop.create_task(self._pump())
            with self._lock:
                self._loop = loop
                gone = self._gone
            if gone:
                self._task.cancel()
            loop.run_until_complete(self._task)
        except BaseException as exc:  # the pump failed before it could say so
            self._finish(exc)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _pump(self) -> None:
        self._room = asyncio.Event()
        error: BaseException | None = None
        try:
            async for chunk in self._generator:
                await self._put(chunk)
        except (_CallerGone, asyncio.CancelledError):
            pass
        except BaseException as exc:
            error = exc
        finally:
            with self._lock:
                self._closing = True  # a late stop() must not cut the clean-up short
            try:
                await self._generator.aclose()
            finally:
                await self._close()
                self._finish(error)

    async def _put(self, chunk: bytes) -> None:
        room = self._room
        assert room is not None
        while True:
            with self._lock:
                if self._gone:
                    raise _CallerGone
                if self._buffered < self._limit:
                    self._chunks.append(chunk)
                    self._buffered += len(chunk)
                    self._lock.notify()
                    return
                self._waiting = True
                room.clear()
            await room.wait()

    def _finish(self, error: BaseException | None) -> None:
        with self._lock:
            if not self._end:
                self._end = True
                self._error = error
            self._lock.notify()

    def _cancel(self, task: asyncio.Task[None]) -> None:
        # Decided here, on the loop, not in stop(): the pump may have begun its
        # clean-up between stop()'s look and this call, and a cancellation
        # then would cut the client's close short (its pool's tasks and
        # sockets left to the garbage collector).
        if not self._closing:
            task.cancel()

    def _wake(self) -> None:
        room = self._room
        if room is not None:
            room.set()

    # ------------------------------------------------------------ the caller's thread

    def get(self) -> bytes | None:
        """The next chunk, blocking until it comes; None at the end; raises what ended the stream."""
        with self._lock:
            while not self._chunks:
                if self._end:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    return None
                self._lock.wait()
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            wake = self._waiting and self._buffered < self._limit
            if wake:
                self._waiting = False
            loop = self._loop
        if wake and loop is not None:
            loop.call_soon_threadsafe(self._wake)
        return chunk

    def stop(self, timeout: float) -> None:
        """The caller is done: end the stream (if it still runs) and wait, bounded, for the thread."""
        with self._lock:
            self._gone = True
            running = not self._closing and not self._end
            loop, task = self._loop, self._task
        if running and loop is not None and task is not None:
            # (RuntimeError: the loop closed meanwhile, the thread is ending anyway.)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._cancel, task)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
