"""Memory a breaker keeps per call: traced by tracemalloc over 200,000 calls after warm-up."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest
from prometheus_client import CollectorRegistry

from resilience import BreakerConfig, BreakerMetrics, BreakerRegistry

pytestmark = [pytest.mark.stress, pytest.mark.slow]

WARM_UP = 20_000
CALLS = 200_000
#: Far above the < 100 bytes/call target; only a real leak (a record kept per call) fails.
BOUND = 1024


async def work() -> None:
    await asyncio.sleep(0)


async def calls(n: int, call) -> None:
    for _ in range(n):
        await call(work)


async def test_a_breaker_call_keeps_no_memory(figure):
    registry = BreakerRegistry(
        [BreakerConfig(name="memory", fail_max=5, reset_timeout=30.0, timeout=1.0)],
        metrics=BreakerMetrics(CollectorRegistry()),
    )  # as the app builds it: log listener, Prometheus metrics, a per-call timeout
    call = registry["memory"].call_async
    tracemalloc.start()
    try:
        await calls(WARM_UP, call)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await calls(CALLS, call)
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_call = (after - before) / CALLS
    figure(
        f"(d) breaker call_async (metrics, 1 s timeout), {CALLS:,} calls",
        f"{per_call:.2f} bytes/call kept ({after - before:+,} bytes), "
        f"peak {peak - before:+,} bytes above the start",
    )
    assert per_call < BOUND
