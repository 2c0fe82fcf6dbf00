"""Conversations for the load benchmarks: questions, latency figures, in-process and HTTP runs."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from processes import ROOT

QUESTIONS_FILE = ROOT / "tests" / "data" / "rag_questions.jsonl"
FOLLOW_UP = "and how do I fix it?"
#: Per-call timeouts for the healthy load runs: a burst of a thousand turns queues for
#: seconds on two cores, which the shipped budgets (8 s, 1 s) would take for an outage.
HEALTHY_TIMEOUTS = {
    "NOVA_BREAKER_RAG_API_TIMEOUT": "120",
    "NOVA_BREAKER_REDIS_TIMEOUT": "60",
    "NOVA_REDIS_SOCKET_TIMEOUT": "60",
}


def questions() -> list[str]:
    lines = QUESTIONS_FILE.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


@dataclass
class Load:
    """Turn latencies (s), degraded and failed turns, and the most turns in flight at once."""

    latencies: list[float] = field(default_factory=list)
    degraded: int = 0
    errors: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    wall: float = 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile latency in seconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0

    @property
    def per_second(self) -> float:
        """Turns answered per second of the run."""
        return len(self.latencies) / self.wall if self.wall else 0.0

    def summary(self) -> str:
        """The figures on one line, for a test's report."""
        ms = [self.percentile(q) * 1000 for q in (50, 95, 99)]
        return (
            f"{len(self.latencies)} turns, {len(self.errors)} errors, {self.degraded} degraded, "
            f"{self.most_in_flight} in flight at most; p50 {ms[0]:.0f} ms, p95 {ms[1]:.0f} ms, "
            f"p99 {ms[2]:.0f} ms; {self.per_second:.0f} turns/s over {self.wall:.1f} s"
        )

    def row(self, label: str) -> str:
        """One line of the results table."""
        ms = [self.percentile(q) * 1000 for q in (50, 95, 99)]
        return (
            f"{label:<44}{len(self.latencies):>7}{self.most_in_flight:>9}"
            f"{ms[0]:>9.0f}{ms[1]:>9.0f}{ms[2]:>9.0f}{self.per_second:>9.0f}"
            f"{self.degraded:>9}{len(self.errors):>7}"
        )


HEADER = (
    f"{'run':<44}{'turns':>7}{'in fl.':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    f"{'turns/s':>9}{'degr.':>9}{'errors':>7}"
)

#: ``turn(session, text)`` -> whether the reply was degraded.
Turn = Callable[[str, str], Awaitable[bool]]


async def conversations(turn: Turn, count: int, texts: list[list[str]], tag: str) -> Load:
    """``count`` conversations at once, conversation ``i`` saying ``texts[i % len]`` in order."""
    load = Load()
    go = asyncio.Event()

    async def conversation(i: int) -> None:
        await go.wait()
        for text in texts[i % len(texts)]:
            load.in_flight += 1
            load.most_in_flight = max(load.most_in_flight, load.in_flight)
            started = time.perf_counter()
            try:
                was_degraded = await turn(f"{tag}-{i}", text)
                load.degraded += was_degraded
                load.latencies.append(time.perf_counter() - started)
            except Exception as exc:
                load.errors.append(repr(exc))
            finally:
                load.in_flight -= 1

    tasks = [asyncio.create_task(conversation(i)) for i in range(count)]
    await asyncio.sleep(0)
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    load.wall = time.perf_counter() - started
    return load


def chat_turn(http: aiohttp.ClientSession, url: str) -> Turn:
    """A turn over ``POST /v1/chat/completions``; a non-200 or malformed reply raises."""

    async def turn(session: str, text: str) -> bool:
        body = {"model": "nova", "user": session, "messages": [{"role": "user", "content": text}]}
        async with http.post(f"{url}/v1/chat/completions", json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:200]}")
            reply = await response.json()
        if not reply["choices"][0]["message"]["content"]:
            raise RuntimeError("empty reply")
        return bool(reply["nova"]["degraded"])

    return turn


def http_session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=600),
    )


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc status")
