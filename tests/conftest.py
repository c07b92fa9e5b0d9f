"""Test support: ``async def`` tests run in a fresh event loop, each bounded in time.

No pytest-asyncio: a coroutine test function is run in a new event loop under
``asyncio.timeout`` (the ``timeout`` marker's value, or 60 s), and
pytest-timeout guards the whole test including set-up as a second line.

A module marked ``pytest.mark.all_loops`` runs each of its async tests on
every event loop we support: asyncio's own and uvloop (a test dependency
only; its runs are skipped where it is not installed). Test ids name the loop:
``test_x[asyncio]``, ``test_x[uvloop]``.

No test reads the machine's AWS settings: the session starts without any
``AWS_*`` variable, with empty config and credentials files (``clean_aws``),
and the child processes tests start get the same from ``peers.clean_env``
(benchmarks/peers.py, shared with the benchmark). A test of those variables
sets them itself.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

# The benchmark's modules: the peer clients, and the clean environment every client process gets.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from peers import AWS_ISOLATION, is_aws_setting

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


#: Where a loopback connection never goes through a proxy (``NO_PROXY`` syntax).
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(autouse=True, scope="session")
def clean_aws() -> Iterator[None]:
    """The whole session, session-scoped fixtures included, without the machine's AWS settings.

    A developer's ``AWS_PROFILE``, region, keys, ``AWS_ENDPOINT_URL*`` or ``AWS_CA_BUNDLE`` would
    otherwise reach every client a test makes without saying otherwise, and every child process. Proxies
    stay (installing the peers or the JS SDK may need one) but loopback, where every emulator listens,
    bypasses them.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if is_aws_setting(name)]:
            patch.delenv(name)
        for name, value in AWS_ISOLATION.items():
            patch.setenv(name, value)
        for name in ("NO_PROXY", "no_proxy"):
            bypass = [entry for entry in os.environ.get(name, "").split(",") if entry.strip()]
            patch.setenv(name, ",".join([*bypass, *LOOPBACK]))
        yield


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
