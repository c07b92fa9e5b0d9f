"""Test support: ``async def`` tests run in a fresh event loop, each bounded in time.

No pytest-asyncio: a coroutine test function is run with ``asyncio.run`` under
``asyncio.timeout`` (the ``timeout`` marker's value, or 60 s), and
pytest-timeout guards the whole test including set-up as a second line.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

pytest_plugins = ["pytester"]

DEFAULT_ASYNC_TIMEOUT = 60.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    marker = pyfuncitem.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker is not None and marker.args else DEFAULT_ASYNC_TIMEOUT
    arguments: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def bounded() -> None:
        async with asyncio.timeout(limit):
            await function(**arguments)

    asyncio.run(bounded())
    return True
