"""The breaker benchmark runs end to end and prints every figure (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_the_table_throughput_and_targets():
    result = subprocess.run(
        [sys.executable, "bench/breaker_overhead.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = result.stdout
    for row in (
        "pybreaker cb.call(fn)",
        "Nova breaker.call(fn)",
        "Nova await call_async(afn), timeout=None",
        "Nova open: CircuitOpen",
        "Nova+metrics call_async, timeout=1",
        "no breaker",
        "throughput fraction",
    ):
        assert row in out
    assert out.count("PASS") + out.count("MISS") == 7
    assert "Traceback" not in result.stderr
