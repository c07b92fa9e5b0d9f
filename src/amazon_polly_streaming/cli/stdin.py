"""Lines of standard input as they arrive, for ``polly-stream say -``.

A terminal or a pipe is watched with the event loop's reader callback and
read only once it has data, so the read never blocks and Ctrl-C (which
cancels the main task) ends the wait at once. ``asyncio.to_thread(readline)``
would leave a thread blocked in ``read(2)`` that ``asyncio.run`` then waits
for at shutdown: the process would hang until the next line or end of input.

The descriptor stays in blocking mode: it is shared with the shell (a
terminal) or the writer (a pipe), and O_NONBLOCK would change it for them.
Regular files (and anything else the selector refuses, like /dev/null) cannot
be watched; they are read in daemon threads of our own, which ``asyncio.run``
does not wait for at exit (unlike its default executor).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncGenerator

__all__ = ["read_lines"]

_CHUNK = 64 * 1024


async def read_lines(fd: int, encoding: str) -> AsyncGenerator[str, None]:
    """Non-blank lines of ``fd`` with their newline, and a last unterminated line, as they arrive.

    Undecodable bytes become U+FFFD rather than failing a stream half-way.
    """
    import asyncio
    import codecs

    from .._transport.threads import call_in_thread
    from .._wire.request import MAX_TEXT_CHARS

    loop = asyncio.get_running_loop()
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    watchable = _watchable(loop, fd)
    # The unterminated line so far, in pieces: only new text is searched for
    # a newline, so a long line costs linear time, not quadratic.
    pending: list[str] = []
    pending_size = 0
    while True:
        if watchable:
            data = await _read_when_ready(loop, fd)
        else:
            data = await call_in_thread(lambda: os.read(fd, _CHUNK), name="polly-stream stdin")
        text = decoder.decode(data, final=not data)
        if "\n" in text:
            first, *lines, rest = text.split("\n")
            lines.insert(0, "".join(pending) + first)
            pending, pending_size = [rest], len(rest)
            for line in lines:
                if line.strip():
                    yield line + "\n"
        else:
            pending.append(text)
            pending_size += len(text)
        if pending_size > MAX_TEXT_CHARS:
            # One text (a line) may hold no more: refused now, not after reading
            # all of an endless line (tr -d '\n' < /dev/urandom) into memory.
            raise ValueError(
                f"a line of stdin holds more than {MAX_TEXT_CHARS:,} characters, more than one text may hold: "
                "end its sentences or paragraphs with newlines"
            )
        if not data:
            break
    last = "".join(pending)
    if last.strip():
        yield last


def _watchable(loop: asyncio.AbstractEventLoop, fd: int) -> bool:
    """True when the loop can tell us that ``fd`` has data (a terminal, a pipe, a socket)."""
    import stat

    if stat.S_ISREG(os.fstat(fd).st_mode):
        return False
    try:
        loop.add_reader(fd, lambda: None)
    except (OSError, ValueError, NotImplementedError):
        return False  # epoll refuses some devices (EPERM); Windows loops have no readers
    loop.remove_reader(fd)
    return True


async def _read_when_ready(loop: asyncio.AbstractEventLoop, fd: int) -> bytes:
    ready = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    # Readable: read(2) returns what is there (a terminal: the line typed)
    # without waiting, though the descriptor is in blocking mode.
    return os.read(fd, _CHUNK)
