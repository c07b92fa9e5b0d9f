"""The README's examples run as written, against the emulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["llm_tokens.py", "barge_in.py"])
def test_example_runs(name: str) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=100, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "first audio" in out.stdout
