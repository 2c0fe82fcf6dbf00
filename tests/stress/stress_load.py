"""Helpers shared by the stress tests: questions, latency figures, what Redis stored."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS_FILE = ROOT / "tests" / "data" / "rag_questions.jsonl"
FOLLOW_UP = "and how do I fix it?"

#: Per-call timeouts for the healthy runs (seconds), as ``NOVA_BREAKER_*`` variables.
HEALTHY_TIMEOUTS = {
    "NOVA_BREAKER_RAG_API_TIMEOUT": "120",
    "NOVA_BREAKER_REDIS_TIMEOUT": "60",
    "NOVA_REDIS_SOCKET_TIMEOUT": "60",
}

FIGURES: list[str] = []


def questions() -> list[str]:
    lines = QUESTIONS_FILE.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


@dataclass
class Load:
    """Turn latencies, errors and the most turns seen in flight at once."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    started: float = field(default_factory=time.perf_counter)
    wall: float = 0.0

    def enter(self) -> float:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return time.perf_counter()

    def leave(self, started: float) -> None:
        self.in_flight -= 1
        self.latencies.append(time.perf_counter() - started)

    def done(self) -> Load:
        self.wall = time.perf_counter() - self.started
        return self

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall

    def summary(self) -> str:
        return (
            f"{len(self.latencies)} turns, {len(self.errors)} errors, "
            f"{self.most_in_flight} in flight at most; p50 {self.percentile(50) * 1000:.0f} ms, "
            f"p95 {self.percentile(95) * 1000:.0f} ms, p99 {self.percentile(99) * 1000:.0f} ms, "
            f"mean {statistics.fmean(self.latencies) * 1000:.0f} ms; "
            f"{self.per_second:.0f} turns/s over {self.wall:.1f} s"
        )


def stored_questions(redis_url: str, sessions: list[str]) -> dict[str, list[str]]:
    """The questions Redis holds for each session, oldest first."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for session in sessions:
            pipe.zrange(f"nova:session:{session}:turns", 0, -1)
        members = pipe.execute()
    finally:
        client.close()
    return {
        session: [json.loads(member)["q"] for member in stored]
        for session, stored in zip(sessions, members, strict=True)
    }
