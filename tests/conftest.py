"""Test support: ``async def`` tests run in a fresh event loop, each bounded in time.

No pytest-asyncio: a coroutine test function is run in a new event loop under
``asyncio.timeout`` (the ``timeout`` marker's value, or 60 s), and
pytest-timeout guards the whole test including set-up as a second line.

A module marked ``pytest.mark.all_loops`` runs each of its async tests on
every event loop we support: asyncio's own and uvloop (a test dependency
only; its runs are skipped where it is not installed). Test ids name the loop:
``test_x[asyncio]``, ``test_x[uvloop]``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_server import MISSING_MESSAGE, RedisServer, redis_binary

pytest_plugins = ["pytester"]

DEFAULT_ASYNC_TIMEOUT = 60.0
#: The parameter that names the loop of an ``all_loops`` test.
LOOP_PARAM = "event_loop_kind"
LOOPS = ("asyncio", "uvloop")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "all_loops: run each async test on asyncio and on uvloop")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not inspect.iscoroutinefunction(metafunc.function):
        return
    if metafunc.definition.get_closest_marker("all_loops") is None:
        return
    # The test function does not take the loop as an argument: the runner
    # below reads it from the call spec.
    metafunc.fixturenames.append(LOOP_PARAM)
    metafunc.parametrize(LOOP_PARAM, LOOPS)


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


async def _reserve_libuv_fd() -> None:
    """Make libuv open the file descriptor it keeps for the loop's life, before a test counts them.

    The first time a uvloop loop listens, libuv opens /dev/null and holds it
    (its answer to EMFILE in accept()); a leak check would take it for a leak.
    """
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    server.close()
    await server.wait_closed()


def run_on(kind: str, coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``coroutine()`` to completion in a fresh loop of ``kind``."""
    factory = _loop_factory(kind)  # skips before the coroutine exists
    with asyncio.Runner(loop_factory=factory) as runner:
        if kind == "uvloop":
            runner.run(_reserve_libuv_fd())
        runner.run(coroutine())


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    marker = pyfuncitem.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker is not None and marker.args else DEFAULT_ASYNC_TIMEOUT
    arguments: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    callspec = getattr(pyfuncitem, "callspec", None)
    kind = callspec.params.get(LOOP_PARAM, "asyncio") if callspec is not None else "asyncio"

    async def bounded() -> None:
        async with asyncio.timeout(limit):
            await function(**arguments)

    run_on(kind, bounded)
    return True


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on a free loopback port, persistence off; stopped after the test.

    Without the binary the test is skipped, naming Debian's package -- except
    under ``CI``, where a missing Redis must fail the build, not hide tests.
    """
    if redis_binary() is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING_MESSAGE)
        pytest.skip(MISSING_MESSAGE)
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()
