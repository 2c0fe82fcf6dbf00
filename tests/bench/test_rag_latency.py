"""The RAG latency benchmark runs end to end and prints every figure (no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_build_service_scale_and_summary():
    result = subprocess.run(
        [sys.executable, "bench/rag_latency.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    out = result.stdout
    assert "Traceback" not in result.stderr
    for label in (
        "Index build: python -m rag ingest knowledge",
        "index.faiss",
        "chunks.jsonl",
        "Service latency",
        "FAISS at scale",
        "recall@10",
        "BM25 at scale",
        "BM25 build s",
        "Summary",
        "machine:",
        "load average",
    ):
        assert label in out, label
    for mode in ("hybrid", "bm25"):
        for concurrency in (1, 10, 50):
            assert re.search(rf"^{mode}\s+{concurrency}\s+40\s", out, re.MULTILINE), (
                mode,
                concurrency,
            )
    for index in ("IndexFlatIP", "IndexHNSWFlat"):
        assert re.search(rf"^\s*20,000\s+{index}\s", out, re.MULTILINE), index
    hnsw = re.search(r"^\s*20,000\s+IndexHNSWFlat\s.*\s(\d\.\d{3})$", out, re.MULTILINE)
    assert hnsw is not None
    assert 0.0 <= float(hnsw.group(1)) <= 1.0
    assert re.search(r"^\s*20,000\s+\d+\.\d\d\s", out, re.MULTILINE), "BM25 row at 20,000"
    assert out.count("the numbers favour") == 2
