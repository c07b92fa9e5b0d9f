"""Blocking calls off the event loop, in daemon threads of our own.

Not the loop's default executor: a blocking call we cannot interrupt (a
credential provider that hangs, a generator reading a pipe) must neither fill
the application's thread pool nor hold ``asyncio.run`` at exit, which waits
for the default executor's threads. A daemon thread is abandoned instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["END", "ThreadedIterator", "call_in_thread"]

T = TypeVar("T")


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def _post(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], result: T | None, error: BaseException | None
) -> None:
    # The loop may have closed while the call blocked: nobody waits any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, result, error)


def call_in_thread(function: Callable[[], T], *, name: str) -> asyncio.Future[T]:
    """Run ``function`` in a new daemon thread; the future settles on the calling loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = function()
        except BaseException as exc:
            _post(loop, future, None, exc)
        else:
            _post(loop, future, result, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class _End:
    def __repr__(self) -> str:
        return "END"


#: What :meth:`ThreadedIterator.next` returns once the iterator is exhausted.
END = _End()


class ThreadedIterator(Generic[T]):
    """A blocking iterator driven from asyncio: each ``next()`` runs in one thread of its own.

    One thread serves one iterator, so ``next()`` and the final ``close()``
    never run concurrently (a generator refuses that). ``close()`` returns at
    once; the thread closes the iterator when its current ``next()`` returns.
    """

    def __init__(self, iterable: Iterable[T], *, name: str) -> None:
        self._iterable = iterable
        self._requests: queue.SimpleQueue[asyncio.Future[T | _End] | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        iterator: Iterator[T] | None = None
        failure: BaseException | None = None
        try:
            iterator = iter(self._iterable)
        except BaseException as exc:
            failure = exc
        try:
            while (request := self._requests.get()) is not None:
                if iterator is None:
                    _post(self._loop, request, None, failure)
                    continue
                try:
                    item: T | _End = next(iterator, END)
                except BaseException as exc:
                    _post(self._loop, request, None, exc)
                else:
                    _post(self._loop, request, item, None)
        finally:
            closer = getattr(iterator, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer()

    async def next(self) -> T | _End:
        """The next item, or :data:`END`."""
        future: asyncio.Future[T | _End] = self._loop.create_future()
        self._requests.put(future)
        return await future

    def close(self) -> None:
        self._requests.put(None)
