"""``import amazon_polly_streaming`` stays in single-digit milliseconds and loads no heavy package.

botocore is a regular dependency, but the package imports it only when the
credential chain needs it, in a worker thread; asyncio, ssl and h2 load with
the first stream.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from peers import clean_env

pytestmark = pytest.mark.timeout(60)

LAZY = ("botocore", "asyncio", "ssl", "h2", "configparser", "cryptography", "numpy", "espeakng_loader", "redis")

PROBE = """
import json, sys
import amazon_polly_streaming
from amazon_polly_streaming import PollyStreamingClient
PollyStreamingClient(region="us-east-1")
from amazon_polly_streaming.cache import MemoryCache
PollyStreamingClient(region="us-east-1", cache=MemoryCache())
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _env(pycache: Path) -> dict[str, str]:
    env = clean_env()
    # Measure what an installed package costs: pip compiles bytecode at install
    # time, so let this interpreter cache it (outside the source tree).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _cumulative_us(stderr: str) -> int:
    for line in stderr.splitlines():
        # "import time:  self [us] | cumulative | imported package"
        fields = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == "amazon_polly_streaming":
            return int(fields[1])
    raise AssertionError(f"amazon_polly_streaming not in the -X importtime report:\n{stderr}")


def test_import_and_construction_load_nothing_heavy(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=_env(tmp_path), timeout=30, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert loaded.isdisjoint(LAZY), sorted(loaded & set(LAZY))


def test_import_time_is_single_digit_milliseconds(tmp_path: Path) -> None:
    command = [sys.executable, "-X", "importtime", "-c", "import amazon_polly_streaming"]
    env = _env(tmp_path)
    subprocess.run(command, capture_output=True, env=env, timeout=30, check=True)  # writes the bytecode cache
    # The best of a few runs: the machine is shared, and only the floor is the package's own cost.
    best = min(
        _cumulative_us(subprocess.run(command, capture_output=True, text=True, env=env, timeout=30, check=True).stderr)
        for _ in range(5)
    )
    assert best < 10_000, f"import took {best / 1000:.1f} ms"
