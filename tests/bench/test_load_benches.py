"""The load, soak and /health benchmarks run end to end and print their figures (short runs,
no timing asserted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    assert "Traceback" not in result.stderr
    return result.stdout


def test_load_prints_in_process_http_and_degraded_runs():
    out = bench("bench/load.py", "--quick")
    for label in ("1. In-process", "2. HTTP", "3. Degraded replies", "rag_api open", "p99 ms"):
        assert label in out, out
    assert "machine at end" in out


def test_soak_prints_memory_per_window_and_per_breaker_call():
    out = bench("bench/soak.py", "--seconds", "12", "--conversations", "10")
    for label in ("ΔRSS MB", "0 errors", "bytes/call", "target < 100"):
        assert label in out, out


def test_health_http_compares_the_health_port_with_hello_world():
    assert shutil.which("wrk"), "wrk is needed (apt-get install wrk)"
    out = bench("bench/health_http.py", "--seconds", "1")
    assert "Nova health port GET /health" in out
    assert "hello-world ASGI app, uvicorn" in out
