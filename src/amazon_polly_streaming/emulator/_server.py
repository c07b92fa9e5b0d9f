"""The emulator: a listener, its connections, and one synthesis session per accepted request.

The layers, each in its module: ``_http2`` (the HTTP/2 shell), ``_requests``
and ``_auth`` (the request checks, sans-IO), ``_session`` (one synthesis),
``_faults`` (which fault strikes where). This module wires them together and
keeps the service-wide state: every request's record, the concurrency limit,
injected faults, the TLS listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._config import DEFAULT_CREDENTIALS, EmulatorConfig, RequestRecord
from ._errors import ServiceError
from ._faults import Fault
from ._http2 import Connection, Port, RequestHead
from ._requests import Parameters, parse_request, too_many_streams
from ._session import SynthesisSession

__all__ = ["DEFAULT_CREDENTIALS", "Emulator", "EmulatorConfig", "EmulatorThread", "RequestRecord"]

logger = logging.getLogger("amazon_polly_streaming.emulator")

_PROTOCOL_ERROR = 0x1


class _Stream:
    """An accepted stream: its session and the task that runs it."""

    __slots__ = ("record", "session", "task")

    def __init__(self, session: SynthesisSession, task: asyncio.Task[None]) -> None:
        self.session = session
        self.record = session.record
        self.task = task

    def feed(self, data: bytes, credit: int) -> None:
        self.session.feed(data, credit)

    def input_ended(self) -> None:
        self.session.input_ended()

    def cancel(self, outcome: str) -> None:
        self.record.finish(outcome)
        self.task.cancel()


class Emulator:
    """A local Polly ``StartSpeechSynthesisStream`` endpoint over HTTP/2 and TLS.

    ``async with Emulator(audio="tone") as emulator:`` then point a client at
    ``emulator.endpoint_url`` with ``verify=emulator.ca_file``.
    """

    def __init__(self, config: EmulatorConfig | None = None, **fields: Any) -> None:
        if config is not None and fields:
            raise TypeError("pass an EmulatorConfig or keyword fields, not both")
        self.config = config or EmulatorConfig(**fields)
        self.requests: list[RequestRecord] = []
        self.client_resets: list[int] = []
        self.active_streams = 0
        self.total_connections = 0
        self._connection_ids = itertools.count(1)
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._faults: list[tuple[Fault, int | None]] = []
        self._faults_lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0
        self.ca_file = ""

    def __repr__(self) -> str:
        return f"<Emulator {self.endpoint_url} active_streams={self.active_streams}>"

    @property
    def endpoint_url(self) -> str:
        return f"https://{self.config.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # ------------------------------------------------------------ faults

    def inject(self, fault: Fault | str, count: int | None = 1) -> None:
        """The next ``count`` requests (every one with None) get ``fault``."""
        if isinstance(fault, str):
            fault = Fault.parse(fault)
        with self._faults_lock:
            self._faults.append((fault, count))

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def _fault_for_request(self) -> Fault | None:
        with self._faults_lock:
            if self._faults:
                fault, count = self._faults[0]
                if count is not None:
                    if count <= 1:
                        self._faults.pop(0)
                    else:
                        self._faults[0] = (fault, count - 1)
                return fault
        return self.config.faults[0] if self.config.faults else None

    # ------------------------------------------------------------ the HTTP/2 shell's application

    def connection_made(self, connection: Connection) -> None:
        self._connections.add(connection)
        self.total_connections += 1

    def connection_lost(self, connection: Connection) -> None:
        self._connections.discard(connection)

    def client_reset(self, error_code: int) -> None:
        self.client_resets.append(error_code)

    def request(self, port: Port, head: RequestHead) -> _Stream | None:
        record = RequestRecord(uuid.uuid4().hex, port.connection_id, port.stream_id, time.monotonic())
        record.authority = head.authority
        self.requests.append(record)
        if head.malformed:
            record.finish("malformed")
            port.reset(_PROTOCOL_ERROR)
            return None
        params = Parameters.from_headers(head.headers)
        record.voice_id, record.output_format = params.voice_id, params.output_format
        record.sample_rate, record.language_code = params.sample_rate, params.language_code
        fault = self._fault_for_request()
        config = self.config
        accepted = parse_request(
            head.method, head.path, head.headers, has_body=head.has_body, config=config, now=config.clock()
        )
        if not isinstance(accepted, ServiceError) and (
            config.max_active_streams is not None and self.active_streams >= config.max_active_streams
        ):
            accepted = too_many_streams()
        if isinstance(accepted, ServiceError):
            record.status = accepted.status
            record.finish(f"error:{accepted.error_type}")
            port.respond_error(accepted, record.request_id)
            return None
        record.access_key_id = accepted.access_key_id
        session = SynthesisSession(accepted, port, record, config, fault)
        task = asyncio.get_running_loop().create_task(session.run())
        self.active_streams += 1
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._stream_done(done, port, record))
        return _Stream(session, task)

    def _stream_done(self, task: asyncio.Task[None], port: Port, record: RequestRecord) -> None:
        self._tasks.discard(task)
        self.active_streams -= 1
        port.done()
        if not task.cancelled() and task.exception() is not None:
            logger.warning("stream %d failed: %r", port.stream_id, task.exception())
            record.finish(f"crash:{type(task.exception()).__name__}")

    # ------------------------------------------------------------ running

    def _ssl_context(self) -> ssl.SSLContext:
        config = self.config
        if config.cert_file and config.key_file:
            cert, key = config.cert_file, config.key_file
            self.ca_file = config.ca_file or config.cert_file
        else:
            from ._certs import make_certificates

            self._tempdir = tempfile.TemporaryDirectory(prefix="polly-emulator-")
            paths = make_certificates(Path(self._tempdir.name))
            cert, key, self.ca_file = paths.cert_file, paths.key_file, paths.ca_file
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(list(config.alpn))
        return context

    def _connection(self) -> Connection:
        config = self.config
        return Connection(
            self,
            next(self._connection_ids),
            strict=config.strict,
            max_streams=config.max_concurrent_streams,
            ack_input=config.ack_input,
        )

    async def start(self) -> Emulator:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connection, self.config.host, self.config.port, ssl=self._ssl_context()
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("emulator listening on %s", self.endpoint_url)
        return self

    async def stop(self) -> None:
        """Close the listener, every connection and every stream task."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        await asyncio.sleep(0)
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll ``predicate`` until true; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - state changes in many places; polling is simplest here
                await asyncio.sleep(0.005)

    @classmethod
    def start_in_thread(cls, config: EmulatorConfig | None = None, **fields: Any) -> EmulatorThread:
        return EmulatorThread(cls(config, **fields))


class EmulatorThread:
    """An emulator running in its own event loop on a daemon thread."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(emulator.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="polly-emulator", daemon=True)
        self.thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]

    @property
    def endpoint_url(self) -> str:
        return self.emulator.endpoint_url

    @property
    def ca_file(self) -> str:
        return self.emulator.ca_file

    def inject(self, fault: Fault | str, count: int | None = 1) -> None:
        self.emulator.inject(fault, count)

    def stop(self) -> None:
        if not self.loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def __enter__(self) -> EmulatorThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
