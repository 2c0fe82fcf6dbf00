"""Memory over a long steady load: whether anything grows with turns or breaker calls.

A ``Runtime`` built as the app builds it (voice off) answers conversations without pause
against a redis-server and a lite knowledge service (BM25 index of ``knowledge/``) on
free ports: ``--conversations`` of them at a time (100), each a new session of four
turns (a question, a follow-up, two more questions). Every 30 s the process's RSS, the
turns answered and the breaker calls made (``circuit_breaker_calls_total``) are sampled;
the first window is the warm-up (bounded local caches fill: 1,000 sessions, 1,000 answers).
Then tracemalloc measures the bytes a breaker call keeps, per 10,000 calls over 200,000
(``call_async`` with metrics and a 1 s timeout, as the app builds it).

Targets: RSS growth < 20 MB per 30 s once warm; < 100 bytes kept per breaker call.

Run from the repository root::

    .venv/bin/python bench/soak.py                # 5 minutes of load
    .venv/bin/python bench/soak.py --seconds 90
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import os
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from processes import lite_services
from prometheus_client import CollectorRegistry
from report import machine
from turns import FOLLOW_UP, HEALTHY_TIMEOUTS, questions, rss_bytes

from assistant.runtime import Runtime
from assistant.settings import AssistantSettings
from resilience import BreakerConfig, BreakerMetrics, BreakerRegistry

WINDOW_S = 30.0
MB = 1024 * 1024
TARGET_MB_PER_WINDOW = 20
TARGET_BYTES_PER_CALL = 100
TRACED_CALLS = 200_000
TRACED_WINDOW = 10_000


@dataclass
class Sample:
    """One reading: seconds since the start, RSS bytes, turns and breaker calls so far."""

    at: float
    rss: int
    turns: int
    calls: int


def breaker_calls(runtime: Runtime) -> int:
    registry = runtime.metrics.registry
    total = 0.0
    for family in registry.collect():
        if family.name == "circuit_breaker_calls":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


async def steady_load(
    tmp: Path, redis_url: str, rag_url: str, seconds: float, width: int
) -> tuple[list[Sample], int, list[str]]:
    os.environ.update(HEALTHY_TIMEOUTS)
    settings = AssistantSettings.load(
        redis_url=redis_url,
        rag_url=rag_url,
        data_dir=tmp / "nova",
        health_port=0,
        voice_enabled=False,
    )
    runtime = Runtime.build(settings)
    await runtime.start()
    asked = questions()
    turns = 0
    degraded = 0
    errors: list[str] = []
    stop_at = time.monotonic() + seconds
    sessions = iter(range(10**9))

    async def worker() -> None:
        nonlocal turns, degraded
        while time.monotonic() < stop_at:
            n = next(sessions)
            conversation = [asked[n % len(asked)], FOLLOW_UP]
            conversation += [asked[(n * 7 + 3) % len(asked)], asked[(n * 13 + 5) % len(asked)]]
            for text in conversation:
                try:
                    reply = await runtime.assistant.turn(f"soak-{n}", text)
                    degraded += reply.degraded
                    turns += 1
                except Exception as exc:
                    errors.append(repr(exc))

    async def sampler(samples: list[Sample]) -> None:
        start = time.monotonic()
        while time.monotonic() < stop_at:
            await asyncio.sleep(min(WINDOW_S, max(0.0, stop_at - time.monotonic())))
            samples.append(
                Sample(time.monotonic() - start, rss_bytes(), turns, breaker_calls(runtime))
            )

    samples = [Sample(0.0, rss_bytes(), 0, breaker_calls(runtime))]
    try:
        await asyncio.gather(sampler(samples), *(worker() for _ in range(width)))
        await runtime.sessions.flush()
    finally:
        await runtime.stop()
    return samples, degraded, errors


def report_soak(samples: list[Sample], degraded: int, errors: list[str], width: int) -> None:
    print(f"Steady load: {width} conversations at a time, no pause between turns")
    header = (
        f"{'window end s':>12}{'RSS MB':>9}{'ΔRSS MB':>9}{'turns':>8}{'turns/s':>9}"
        f"{'ΔRSS/10k turns MB':>19}{'breaker calls':>15}{'B/call (RSS)':>13}"
    )
    print(header)
    print("-" * len(header))
    for before, after in itertools.pairwise(samples):
        rss = after.rss - before.rss
        turns = after.turns - before.turns
        calls = after.calls - before.calls
        span = after.at - before.at
        print(
            f"{after.at:>12.0f}{after.rss / MB:>9.1f}{rss / MB:>+9.1f}{turns:>8}"
            f"{turns / span:>9.0f}{rss / MB / max(turns, 1) * 10_000:>+19.2f}{calls:>15}"
            f"{rss / max(calls, 1):>+13.1f}"
        )
    total = samples[-1]
    print(f"{total.turns:,} turns, {degraded} degraded, {len(errors)} errors {errors[:3]}")
    warm = samples[1:]
    if len(warm) >= 2:
        rss = warm[-1].rss - warm[0].rss
        turns = warm[-1].turns - warm[0].turns
        calls = warm[-1].calls - warm[0].calls
        windows = (warm[-1].at - warm[0].at) / WINDOW_S
        per_window = rss / MB / windows
        verdict = "PASS" if per_window < TARGET_MB_PER_WINDOW else "MISS"
        print(
            f"once warm (after the first window): {rss / MB:+.1f} MB over {turns:,} turns = "
            f"{per_window:+.2f} MB per 30 s (target < {TARGET_MB_PER_WINDOW}: {verdict}), "
            f"{rss / MB / max(turns, 1) * 10_000:+.2f} MB per 10,000 turns, "
            f"{rss / max(calls, 1):+.1f} bytes of RSS per breaker call"
        )
    else:
        print("run too short for a warm window: use --seconds 90 or more")


async def traced_calls() -> list[float]:
    registry = BreakerRegistry(
        [BreakerConfig(name="soak", fail_max=5, reset_timeout=30.0, timeout=1.0)],
        metrics=BreakerMetrics(CollectorRegistry()),
    )
    call = registry["soak"].call_async

    async def work() -> None:
        await asyncio.sleep(0)

    for _ in range(TRACED_WINDOW * 2):
        await call(work)
    per_window = []
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(TRACED_CALLS // TRACED_WINDOW):
            for _ in range(TRACED_WINDOW):
                await call(work)
            gc.collect()
            now = tracemalloc.get_traced_memory()[0]
            per_window.append((now - before) / TRACED_WINDOW)
            before = now
    finally:
        tracemalloc.stop()
    return per_window


def report_traced(per_window: list[float]) -> None:
    mean = sum(per_window) / len(per_window)
    verdict = "PASS" if mean < TARGET_BYTES_PER_CALL else "MISS"
    print(
        f"Breaker call_async (metrics, 1 s timeout) under tracemalloc, {TRACED_CALLS:,} calls "
        f"after {TRACED_WINDOW * 2:,} of warm-up"
    )
    print("bytes kept per call, per 10,000 calls: " + " ".join(f"{b:.2f}" for b in per_window))
    print(f"mean {mean:.3f} bytes/call (target < {TARGET_BYTES_PER_CALL}: {verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=300.0, help="of load (default 300)")
    parser.add_argument("--conversations", type=int, default=100, help="at a time (100)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    print(f"machine at start: {machine()}")
    with tempfile.TemporaryDirectory(prefix="nova-soak-") as name:
        tmp = Path(name)
        with lite_services(tmp) as (redis, rag):
            samples, degraded, errors = asyncio.run(
                steady_load(tmp, redis.url, rag.url, args.seconds, args.conversations)
            )
    report_soak(samples, degraded, errors, args.conversations)
    print()
    report_traced(asyncio.run(traced_calls()))
    print(f"machine at end: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
