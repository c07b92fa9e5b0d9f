"""The emulator's HTTP/2 shell: one connection's h2 state, flow control, resets and GOAWAY.

It knows nothing of Polly. Each request's head goes to the application
(``Application.request``), which answers with a handler for the stream's body
(``feed``, ``input_ended``, ``cancel``) or none; the handler answers through a
``Port`` bound to its stream.

Flow control of the request body (RFC 9113 5.2): the credit of each DATA frame
goes to the stream's handler with the data, and comes back to the client only
when the handler says it has taken it (``Port.consumed``), so a client whose
data is not taken stops at its stream window instead of filling memory. What a
handler still holds when its stream ends is handed back then; data with no
handler is handed back at once. The connection's window is opened wide enough
for every stream to hold a full window, so a stalled stream never stops the
others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, NamedTuple, Protocol, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ._errors import ServiceError

__all__ = ["Application", "Connection", "Port", "RequestHead", "StreamHandler"]

logger = logging.getLogger("amazon_polly_streaming.emulator")

_CONTENT_TYPE = b"application/vnd.amazon.eventstream"
_PSEUDO = (b":method", b":scheme", b":path", b":authority")


class RequestHead(NamedTuple):
    method: str
    path: str
    #: Every field, names in lower case, pseudo-header fields included.
    headers: list[tuple[str, str]]
    authority: str | None
    has_body: bool
    #: Breaks RFC 9113 8.3 in a way the server refuses (see ``Connection``).
    malformed: bool


#: The stream window we advertise (RFC 9113 6.9.2's initial size, never changed by our SETTINGS).
STREAM_WINDOW = 65535
_MAX_WINDOW = 2**31 - 1


class StreamHandler(Protocol):
    def feed(self, data: bytes, credit: int) -> None:
        """The stream's next ``data``; ``credit`` flow-controlled bytes to hand back via ``Port.consumed``."""

    def input_ended(self) -> None: ...

    def cancel(self, outcome: str) -> None: ...


class Application(Protocol):
    def connection_made(self, connection: Connection) -> None: ...

    def connection_lost(self, connection: Connection) -> None: ...

    def request(self, port: Port, head: RequestHead) -> StreamHandler | None: ...

    def client_reset(self, error_code: int) -> None: ...


class _ServerH2(h2.connection.H2Connection):
    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        # RFC 9113 6.8: a GOAWAY ends no stream its sender already opened. h2
        # would close the whole connection (and drop any frames it has queued),
        # but AWS's JS SDK sends GOAWAY right after the response headers of its
        # only stream and keeps sending events and reading audio. Report it and
        # let the Connection decide.
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors._error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class Connection(asyncio.Protocol):
    """One client connection.

    ``strict`` refuses every request that breaks RFC 9113 8.3 (each
    pseudo-header exactly once, none unknown); otherwise only what the
    service refuses is malformed: a missing ``:method`` or ``:path``, or a
    pseudo-header repeated with different values.
    """

    def __init__(
        self, app: Application, connection_id: int, *, strict: bool, max_streams: int, ack_input: bool
    ) -> None:
        self.app = app
        self.id = connection_id
        self._strict = strict
        self._max_streams = max_streams
        self._ack_input = ack_input
        self.h2 = _ServerH2(
            h2.config.H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=False)
        )
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, StreamHandler] = {}
        #: Flow-controlled bytes given to each stream's handler and not yet handed back.
        self._held: dict[int, int] = {}
        self.closed = False
        #: No new streams; close once the open ones end (our graceful GOAWAY, or the client's).
        self.closing = False
        self._writable: asyncio.Future[None] | None = None
        self._paused = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Any transport that writes, closes and aborts: uvloop's TLS transport
        # is not an asyncio.Transport subclass.
        self.transport = cast("asyncio.Transport", transport)
        self.app.connection_made(self)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self._max_streams},
        )
        self.h2.initiate_connection()
        if self._ack_input:
            # Room for every stream to hold its whole window, twice over for
            # the half a window h2 waits for before each WINDOW_UPDATE.
            window = min(_MAX_WINDOW, 2 * self._max_streams * STREAM_WINDOW)
            if window > STREAM_WINDOW:  # (a server that takes no streams keeps the default)
                self.h2.increment_flow_control_window(window - STREAM_WINDOW)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connection_lost(self)
        for handler in list(self.streams.values()):
            handler.cancel("connection-lost")
        self.streams.clear()
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            logger.debug("connection %d: protocol error %s", self.id, exc)
            self.flush()
            self.abort()
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                credit = event.flow_controlled_length or 0
                handler = self.streams.get(event.stream_id)
                if handler is None:
                    self._hand_back(event.stream_id, credit)
                else:
                    self._held[event.stream_id] = self._held.get(event.stream_id, 0) + credit
                    handler.feed(event.data or b"", credit)
            elif isinstance(event, h2.events.RequestReceived):
                self._on_request(event.stream_id, event.headers or [], bool(event.stream_ended))
            elif isinstance(event, h2.events.StreamEnded):
                handler = self.streams.get(event.stream_id)
                if handler is not None:
                    handler.input_ended()
            elif isinstance(event, h2.events.StreamReset):
                self.app.client_reset(int(event.error_code))
                handler = self.streams.pop(event.stream_id, None)
                self._hand_back(event.stream_id, self._held.pop(event.stream_id, 0))
                if handler is not None:
                    handler.cancel("client-reset")
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._wake()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._on_goaway(int(event.error_code or 0))
        self.flush()

    def _on_goaway(self, error_code: int) -> None:
        if error_code != h2.errors.ErrorCodes.NO_ERROR or not self.streams:
            self.close()
            return
        # A graceful GOAWAY from the client: serve what it opened, refuse the rest.
        self.closing = True

    # ------------------------------------------------------------ requests

    def _on_request(self, stream_id: int, raw: list[tuple[bytes, bytes]], ended: bool) -> None:
        if self.closing:
            # Opened after a GOAWAY (ours or the client's): not processed, safe to retry (RFC 9113 8.7).
            self.reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        pseudo: dict[bytes, list[bytes]] = {}
        headers: list[tuple[str, str]] = []
        for name, value in raw:
            if name.startswith(b":"):
                # A pseudo-header the service tolerates twice (same value) counts once, signed or not.
                if name not in pseudo:
                    headers.append((name.decode("latin-1"), value.decode("latin-1")))
                pseudo.setdefault(name, []).append(value)
            else:
                headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
        malformed = not self._well_formed(pseudo)
        method = pseudo[b":method"][0].decode("latin-1") if not malformed else ""
        path = pseudo[b":path"][0].decode("latin-1") if not malformed else ""
        authority = pseudo[b":authority"][0].decode("latin-1") if b":authority" in pseudo else None
        head = RequestHead(method, path, headers, authority, not ended, malformed)
        handler = self.app.request(Port(self, stream_id), head)
        if handler is not None:
            self.streams[stream_id] = handler

    def _well_formed(self, pseudo: dict[bytes, list[bytes]]) -> bool:
        for name in (b":method", b":path"):
            if len(pseudo.get(name, ())) == 0:
                return False
        if self._strict:
            # RFC 9113 8.3: each pseudo-header exactly once; none unknown.
            return all(len(pseudo.get(name, ())) == 1 for name in _PSEUDO) and set(pseudo) <= set(_PSEUDO)
        # What the service tolerates from existing clients: a repeated
        # pseudo-header with the same value.
        return all(len(set(values)) == 1 for values in pseudo.values())

    def stream_done(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        self._hand_back(stream_id, self._held.pop(stream_id, 0))
        self.flush()
        if self.closing and not self.streams:
            self.close()

    # ------------------------------------------------------------ flow control of request data

    def consumed(self, stream_id: int, size: int) -> None:
        """The handler has taken ``size`` bytes of credit's worth of its data: the client may send more."""
        held = self._held.get(stream_id, 0)
        size = min(size, held)
        if size > 0:
            self._held[stream_id] = held - size
            self._hand_back(stream_id, size)
            self.flush()

    def _hand_back(self, stream_id: int, size: int) -> None:
        # h2 sends WINDOW_UPDATE once half a window has been handed back; for
        # a closed stream it restores only the connection's window.
        if size > 0 and self._ack_input and not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.acknowledge_received_data(size, stream_id)

    # ------------------------------------------------------------ writing

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def _wake(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` as the client's flow-control window and the socket allow."""
        h2conn = self.h2
        while True:
            if self.closed:
                raise ConnectionError("connection closed")
            window = min(h2conn.local_flow_control_window(stream_id), h2conn.max_outbound_frame_size)
            if data and (window <= 0 or self._paused):
                if self._writable is None or self._writable.done():
                    self._writable = asyncio.get_running_loop().create_future()
                await self._writable
                continue
            size = min(len(data), window) if data else 0
            last = size == len(data)
            try:
                h2conn.send_data(stream_id, data[:size] if not last else data, end_stream=end_stream and last)
            except h2.exceptions.ProtocolError as exc:
                raise ConnectionError(f"stream {stream_id} is closed") from exc
            self.flush()
            # Let the loop run between messages: a client that went away is
            # noticed (connection_lost) instead of written to until the
            # window runs out.
            await asyncio.sleep(0)
            if last:
                return
            data = data[size:]

    def send_now(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.send_data(stream_id, data, end_stream=end_stream)
            self.flush()

    def send_headers(self, stream_id: int, request_id: str) -> None:
        self.h2.send_headers(
            stream_id,
            [(b":status", b"200"), (b"content-type", _CONTENT_TYPE), (b"x-amzn-requestid", request_id.encode())],
        )
        self.flush()

    def respond_error(self, stream_id: int, error: ServiceError, request_id: str, *, end: bool = True) -> None:
        body = error.json()
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.send_headers(
                stream_id,
                [
                    (b":status", str(error.status).encode()),
                    (b"content-type", b"application/json"),
                    (b"x-amzn-requestid", request_id.encode()),
                    (b"x-amzn-errortype", error.error_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            )
            self.h2.send_data(stream_id, body, end_stream=end)
            self.flush()

    def end_stream(self, stream_id: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.end_stream(stream_id)
            self.flush()

    def reset(self, stream_id: int, code: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.reset_stream(stream_id, code)
            self.flush()

    def goaway(self, stream_id: int, *, graceful: bool) -> None:
        """GOAWAY: ``graceful`` promises ``stream_id`` (served to its end); otherwise it is refused."""
        last = stream_id if graceful else max(stream_id - 2, 0)
        self.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=last)
        self.flush()
        if graceful:
            # h2 stops sending after its own GOAWAY; the promised stream must
            # still be served, so reopen the state machine for it.
            self.h2.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
            self.closing = True
        else:
            self.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Port:
    """One stream's side of its connection, for the handler that answers it."""

    __slots__ = ("connection", "stream_id")

    def __init__(self, connection: Connection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id

    @property
    def connection_id(self) -> int:
        return self.connection.id

    def send_headers(self, request_id: str) -> None:
        self.connection.send_headers(self.stream_id, request_id)

    def consumed(self, credit: int) -> None:
        """Hand ``credit`` (from ``feed``) back to the client: the data it came with has been taken."""
        self.connection.consumed(self.stream_id, credit)

    def respond_error(self, error: ServiceError, request_id: str, *, end: bool = True) -> None:
        self.connection.respond_error(self.stream_id, error, request_id, end=end)

    async def send(self, data: bytes, *, end_stream: bool = False) -> None:
        await self.connection.send(self.stream_id, data, end_stream=end_stream)

    def send_now(self, data: bytes, *, end_stream: bool = False) -> None:
        self.connection.send_now(self.stream_id, data, end_stream=end_stream)

    def end_stream(self) -> None:
        self.connection.end_stream(self.stream_id)

    def reset(self, code: int) -> None:
        self.connection.reset(self.stream_id, code)

    def abort_connection(self) -> None:
        self.connection.abort()

    def goaway(self, *, graceful: bool) -> None:
        self.connection.goaway(self.stream_id, graceful=graceful)

    def done(self) -> None:
        """The stream's handler is finished with it."""
        self.connection.stream_done(self.stream_id)
