"""``start_speech_synthesis_stream``: one call, one stream (or a few, with retries), audio out.

The text may be a string (the whole request leaves in one write), or an
iterable or async iterable whose chunks go up the moment they are produced,
pumped by a task of their own while audio already flows back. A blocking
sync iterator (a generator reading a pipe) runs in a thread of its own, so it
never freezes the event loop. Whatever ends the text source -- its own error,
its own cancellation -- ends the stream at once, with that error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable

from ._runtime import Runtime
from ._session import SpeechStream
from ._transport.threads import END, ThreadedIterator
from ._wire.request import SynthesisParams
from .exceptions import PollyStreamingError
from .retries import RetryPolicy

__all__ = ["TextSource", "synthesize"]

logger = logging.getLogger("amazon_polly_streaming")
TextSource = Iterable[str] | AsyncIterable[str]
#: How long a stopped text source gets to close itself (its ``finally``).
_SOURCE_CLOSE_GRACE = 1.0


async def synthesize(
    get_runtime: Callable[[], Runtime],
    params: SynthesisParams,
    text: TextSource | list[bytes],
    *,
    whole: bool,
    use_pool: bool,
    text_type: str | None,
    flush: bool,
    policy: RetryPolicy | None,
    on_session: Callable[[SpeechStream], None] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The generator behind ``start_speech_synthesis_stream``.

    ``text`` is a source of text chunks or, ``whole``, a string's encoded
    TextEvents (checked and made at the call, before any I/O).
    ``on_session`` is told each attempt's stream (the phrase cache reads
    its billed characters and metrics).
    """
    attempt = 0
    while True:
        attempt += 1
        session = SpeechStream(get_runtime(), params, use_pool=use_pool, text_type=text_type)
        pump: asyncio.Task[None] | None = None
        if on_session is not None:
            on_session(session)
        try:
            await session.open(keepalive=not whole)
            if whole:
                # Headers, text, close and the final envelope leave in one write.
                await session.send_events(text, close=True, drain=False)  # type: ignore[arg-type]
            else:
                session.send_request()  # the request leaves now, not with the first chunk
                pump = session._loop.create_task(
                    _pump_text(session, text, text_type=text_type, flush=flush),  # type: ignore[arg-type]
                    name="polly-text-source",
                )
                pump.add_done_callback(_consume_pump_result)
            while (items := await session.read_items()) is not None:
                for item in items:
                    if type(item) is bytes:
                        yield item
            return
        except PollyStreamingError as exc:
            # Only a whole text can be sent again; an iterator is spent.
            delay = policy.delay(exc, attempt) if policy is not None and whole else None
            if delay is None:
                raise
            logger.debug("retrying after %s (attempt %d) in %.3f s", type(exc).__name__, attempt, delay)
        finally:
            session.close("the stream ended")
            if pump is not None and not pump.done():
                pump.cancel()
                # Give the text source its chance to close, bounded.
                await asyncio.wait((pump,), timeout=_SOURCE_CLOSE_GRACE)
        await asyncio.sleep(delay)


async def _pump_text(session: SpeechStream, source: TextSource, *, text_type: str | None, flush: bool) -> None:
    """Forward each chunk of ``source`` the moment it is produced, then close the input."""
    try:
        if isinstance(source, list | tuple):
            for chunk in source:
                await session.send(chunk, flush=flush, text_type=text_type)
                await asyncio.sleep(0)  # let the reader run between chunks of a fast iterable
        elif isinstance(source, AsyncIterable):
            iterator = aiter(source)
            try:
                async for chunk in iterator:
                    await session.send(chunk, flush=flush, text_type=text_type)
            finally:
                closer = getattr(iterator, "aclose", None)
                if closer is not None:
                    await closer()
        else:
            # Any other iterable may block between items (a pipe, a socket):
            # its next() runs in a thread so the loop and the keep-alive go on.
            threaded = ThreadedIterator(source, name="polly-text-source")
            try:
                while (chunk := await threaded.next()) is not END:
                    await session.send(chunk, flush=flush, text_type=text_type)  # type: ignore[arg-type]
            finally:
                threaded.close()
        await session.close_input()
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and not task.cancelling():
            # Not cancelled by us: the source's own upstream was cancelled.
            # Fail the stream now rather than keep it alive for nothing.
            session.fail(exc)
        raise
    except BaseException as exc:
        # The text source failed: end the stream and let the reader raise it.
        session.fail(exc)
        raise


def _consume_pump_result(task: asyncio.Task[None]) -> None:
    # The reader reports the pump's failure; mark it retrieved so asyncio
    # does not log "exception was never retrieved".
    if not task.cancelled():
        task.exception()
