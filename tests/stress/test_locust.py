"""The operators' locustfile drives a real app for a few seconds without one failure."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.stress, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LOCUST = Path(sys.executable).parent / "locust"


def test_locustfile_runs_headless_without_failures(nova_app, tmp_path, figure):
    prefix = tmp_path / "locust"
    command = [str(LOCUST), "-f", "locustfile.py", "--headless", "-u", "6", "-r", "6", "-t", "8s"]
    command += ["--host", nova_app.url, "--csv", str(prefix), "--only-summary"]
    result = subprocess.run(
        [*command, "--stop-timeout", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "locust_stats.csv").open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    figure(
        "locustfile, 6 users for 8 s",
        f"{total['Request Count']} requests, {total['Failure Count']} failures, "
        f"median {total['Median Response Time']} ms",
    )
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0
    assert "question" in rows or "question [degraded]" in rows
