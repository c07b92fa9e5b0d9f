"""Where a counted window's instructions go, per C function, from callgrind's files.

    POLLY_BENCH_CALLGRIND_DIR=/tmp/cg python benchmarks/run.py --counts-only
    python benchmarks/callgrind_top.py /tmp/cg/ours-asyncio-1-*/callgrind.*.2 --per 128
    python benchmarks/callgrind_top.py A.2 --per 128 --against B.2   # A minus B, largest differences first

The ``.2`` file of each count is the measured window (``counting.py``).
``callgrind_annotate`` 3.19 puts all of such a part's cost under
``__libc_start_main``, so this reads the file itself: each function's own
(exclusive) instructions, and what its calls cost (inclusive, as a callee),
divided by ``--per`` (the window's calls, for figures per stream). Python
functions all run in ``_PyEval_EvalFrameDefault``; what they call (hashing,
TLS, CRCs, allocation) shows by name.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

Costs = tuple[collections.Counter[str], collections.Counter[str], collections.Counter[str]]


def load(path: Path) -> Costs:
    """(exclusive cost, inclusive cost as a callee, calls) per function name (``--compress-strings=no``)."""
    own: collections.Counter[str] = collections.Counter()
    callee: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    function = called = ""
    pending: int | None = None  # the count of a "calls=" line, whose next line is that call's cost
    with path.open() as file:
        for line in file:
            if line.startswith("fn="):
                function = line[3:].strip()
            elif line.startswith("cfn="):
                called = line[4:].strip()
            elif line.startswith("calls="):
                pending = int(line[6:].split()[0])
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) < 2:
                    continue
                if pending is not None:
                    callee[called] += int(parts[1])
                    calls[called] += pending
                    pending = None
                else:
                    own[function] += int(parts[1])
    return own, callee, calls


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("file", type=Path)
    options.add_argument("--per", type=float, default=1.0, help="divide by this (the window's calls)")
    options.add_argument("--against", type=Path, help="another file (same --per): show the differences")
    options.add_argument("--top", type=int, default=30)
    args = options.parse_args()
    a = load(args.file)
    b = load(args.against) if args.against else None
    for index, title in ((0, "own instructions"), (1, "instructions of its calls (inclusive, as a callee)")):
        print(f"--- {title}, per {args.per:g}")
        if b is None:
            for name, cost in a[index].most_common(args.top):
                print(f"{cost / args.per:14,.0f}  calls {a[2][name] / args.per:9.1f}  {name[:100]}")
            continue
        names = sorted(set(a[index]) | set(b[index]), key=lambda n: -abs(a[index][n] - b[index][n]))
        for name in names[: args.top]:
            x, y = a[index][name] / args.per, b[index][name] / args.per
            print(f"{x:14,.0f} {y:14,.0f} {x - y:+12,.0f}  {name[:90]}")


if __name__ == "__main__":
    main()
