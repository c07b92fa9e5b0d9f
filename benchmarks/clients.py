"""What the benchmark's parts share: where things are, the clients it measures, how much it runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from peers import VENVS, clean_env
from workloads import DEFAULT_KEY, DEFAULT_SECRET

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
OURS, FLOOR = "ours", "raw h2 floor"
REGION = "us-east-1"


@dataclass(frozen=True)
class Counts:
    imports: int  # fresh processes for the import time
    cold: int  # fresh processes for the cold start
    warmup: int  # calls before measuring TTFA or CPU
    ttfa: int  # calls measured for the warm TTFA
    cpu: int  # sequential calls per CPU measurement
    rounds: int  # TTFA and CPU measurements (fresh processes) for ours and the floor; peers get one
    streams: int  # concurrent streams of the bulk workload
    stream_bytes: int  # audio per bulk stream
    bulk_rounds: int  # bulk rounds measured per process
    memory_streams: int  # connections / streams held in the memory workload
    codec_seconds: float
    scan_levels: tuple[int, ...]  # conversations at once in the concurrency scan
    scan_uvloop_levels: tuple[int, ...]  # the levels scanned again on uvloop
    scan_calls: int  # calls measured per scan process, split among its conversations
    scan_min_calls: int  # ... but at least this many per conversation
    scan_rounds: int  # scan processes per client and level, interleaved
    count_levels: tuple[int, ...]  # conversations at once for the instruction counts (on both loops)
    count_calls: int  # calls counted per process, split among its conversations (at least 1 each)
    cache_calls: int = 500  # calls per row of the phrase cache's rows (hits: 4 times as many)
    cache_phrases: int = 10_000  # distinct phrases spoken through the cache of the RSS row
    cache_max_bytes: int = 16 * 2**20  # ... bounded by this MemoryCache(max_bytes=...)
    turns_rounds: int = 96  # rounds of ours and the floor taking turns at N=1, over all processes
    turns_calls: int = 160  # calls per block of those turns (at least 8 per conversation: fewer rounds then)
    turns_min_rounds: int = 16  # ... but at least this many rounds at every level
    turns_processes: int = 4  # the rounds split among this many processes (each lands in a mode of its own)


COUNTS = {
    "full": Counts(
        15, 10, 20, 500, 1000, 5, 64, 1024 * 1024, 3, 64, 3.0, (1, 16, 64, 256), (1, 64), 2048, 8, 5, (1, 64), 128
    ),
    "quick": Counts(5, 3, 10, 100, 200, 3, 16, 1024 * 1024, 1, 16, 1.0, (1, 16, 64, 256), (1, 64), 512, 4, 1, (1,), 32),
    "smoke": Counts(2, 1, 3, 20, 30, 1, 4, 64 * 1024, 1, 4, 0.3, (1, 16), (1,), 32, 2, 1, (), 0),
}
# The phrase cache's counts, smaller than the full run's (its defaults).
COUNTS["quick"] = replace(
    COUNTS["quick"],
    cache_calls=100,
    cache_phrases=2000,
    cache_max_bytes=4 * 2**20,
    turns_rounds=16,
    turns_min_rounds=4,
    turns_processes=2,
)
COUNTS["smoke"] = replace(
    COUNTS["smoke"],
    cache_calls=20,
    cache_phrases=300,
    cache_max_bytes=2**20,
    turns_rounds=1,
    turns_min_rounds=1,
    turns_processes=1,
    turns_calls=16,
)


@dataclass
class Client:
    name: str
    kind: str  # "ours", "floor" or "peer"
    python: str
    driver: str
    module: str  # what the import workload imports ("a,b" for several)
    version: str


# Variables that would change what a client loads (its AWS settings and proxies go too: ``clean_env``).
DROPPED_ENV = frozenset(
    {"PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME"}
)


def client_env(client: Client) -> dict[str, str]:
    env = clean_env(drop=DROPPED_ENV)
    env["PYTHONPYCACHEPREFIX"] = str(VENVS / "pycache")
    # The peers must import their own installed package, never this checkout's.
    env["PYTHONPATH"] = str(HERE) if client.kind == "peer" else os.pathsep.join([str(HERE), str(SRC)])
    env["AWS_ACCESS_KEY_ID"] = DEFAULT_KEY
    env["AWS_SECRET_ACCESS_KEY"] = DEFAULT_SECRET
    return env
