"""Two clients in one process, taking turns: CPU per short utterance of each, and their ratio.

Fresh processes of the same code differ by 10-25 % in CPU per stream on this
kind of machine (where the heap lands, which CPU, what the other tenants do),
so an A/B of two processes needs many of them to see a 3 % change. Here both
clients run in one process on one event loop, in blocks of ``--block``
sequential short utterances, the order swapped every round (ABBA, so that a
drift favours neither), either in turn or in ``--streams`` conversations at
once (the scan's shape); each block's CPU is the thread's CPU time. The ratio
of each round's pair, then the median over ``--n`` rounds, is steady to about
2 %.

A client is ``floor`` (the raw h2 floor, replaying ``--presigned``
requests) or a path to a ``src/`` tree: each tree is imported under a
package name of its own (the package imports itself relatively), so two
versions of ours can be compared. Started by ``profile_ours.py --compare``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import workloads
from client_floor import Floor
from client_ours import Ours


def _tree(path: str, name: str) -> ModuleType:
    """Ours from the ``src/`` tree at ``path``, imported as a package of its own named ``name``."""
    init = Path(path) / "amazon_polly_streaming" / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def _block(adapter: Any, calls: int, args: argparse.Namespace) -> float:
    """CPU per call of ``calls`` short utterances: in turn, or in ``--streams`` conversations at once."""

    async def conversation(count: int) -> None:
        for _ in range(count):
            await workloads._drain(adapter, workloads.SHORT_TEXT, args)

    per = max(1, calls // args.streams)
    started = time.thread_time()
    await asyncio.gather(*(conversation(per) for _ in range(args.streams)))
    calls = per * int(args.streams)
    return (time.thread_time() - started) / calls * 1e6


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    adapters: list[Any] = []
    for index, which in enumerate((args.a, args.b)):
        adapters.append(Floor() if which == "floor" else Ours(_tree(which, f"polly_ab_{index}")))
    for adapter in adapters:
        await adapter.start(args)
    try:
        for adapter in adapters:
            await _block(adapter, args.warmup, args)
        figures: list[list[float]] = [[], []]
        for round_ in range(args.n):
            order = (0, 1) if round_ % 2 == 0 else (1, 0)
            for index in order:
                figures[index].append(await _block(adapters[index], args.block, args))
    finally:
        for adapter in adapters:
            await adapter.close()
    ratios = [b / a for a, b in zip(*figures, strict=True)]
    return {
        "a_us_per_call": statistics.median(figures[0]),
        "b_us_per_call": statistics.median(figures[1]),
        "b_over_a": statistics.median(ratios),
        "ratios": [round(r, 4) for r in ratios],
    }


def main() -> None:
    parser = workloads.parser()
    parser.add_argument("--a", required=True, help="'floor' or a src/ tree")
    parser.add_argument("--b", required=True, help="'floor' or a src/ tree")
    parser.add_argument("--block", type=int, default=200, help="sequential calls per block")
    args = parser.parse_args()
    workloads.export_credentials(args)
    loop_factory = None
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(asyncio.wait_for(_run(args), args.timeout))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
