"""Retrieval quality on the labelled questions stays where the README says it is.

These are quality figures, not timings: the same index and questions give the same
numbers on any machine, so they can be asserted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_hybrid_retrieval_meets_its_targets():
    result = subprocess.run(
        [sys.executable, "bench/rag_eval.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    rows = {
        line.split()[0]: [float(x) for x in line.split()[1:]]
        for line in result.stdout.splitlines()
        if line.split() and line.split()[0] in {"bm25", "dense", "hybrid"}
    }
    _, recall5, mrr = rows["hybrid"]
    assert recall5 >= 0.9
    assert recall5 > rows["bm25"][1]
    assert mrr > rows["bm25"][2]
    off_topic = next(line for line in result.stdout.splitlines() if "off-topic" in line)
    assert off_topic.endswith("below threshold: 20")
