"""Many callers at once: counters stay consistent, one trip makes one open, no leaks."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import tracemalloc
from collections import Counter

import pytest

from resilience import Breaker, BreakerConfig, CircuitOpen, Outcome, State

pytestmark = pytest.mark.unit


class Boom(ConnectionError):
    """A dependency failure."""


def assert_transitions_chain(recorder) -> None:
    """Each transition starts where the last one ended; open never follows open."""
    state = State.CLOSED
    for old, new in recorder.transitions:
        assert old is state, recorder.transitions
        assert new is not old
        state = new


def assert_counts_consistent(recorder, total: int, executed_failures: int) -> None:
    outcomes = Counter(recorder.outcomes)
    assert sum(outcomes.values()) == total
    assert outcomes[Outcome.FAILURE] == executed_failures
    assert outcomes[Outcome.CANCELLED] == 0


def chaotic_breaker(recorder) -> Breaker:
    """Opens often and recovers almost at once, so every transition gets exercised."""
    config = BreakerConfig(
        name="chaos", fail_max=3, reset_timeout=0.0005, timeout=None, half_open_max_calls=2
    )
    return Breaker(config, listeners=(recorder,))


async def test_1000_tasks_x_100_calls_keep_state_and_counters_consistent(recorder):
    breaker = chaotic_breaker(recorder)
    rng = random.Random(7)
    executed_failures = 0

    async def flaky(fails: bool) -> None:
        nonlocal executed_failures
        await asyncio.sleep(0)
        if fails:
            executed_failures += 1
            raise Boom("flaky")

    async def caller() -> None:
        for _ in range(100):
            with contextlib.suppress(Boom, CircuitOpen):
                await breaker.call_async(flaky, rng.random() < 0.3)
            await asyncio.sleep(0)  # a real caller does other I/O between calls

    await asyncio.gather(*(caller() for _ in range(1000)))

    assert_counts_consistent(recorder, 100_000, executed_failures)
    assert_transitions_chain(recorder)
    assert recorder.opens() > 10
    assert recorder.count(Outcome.REJECTED) > 0


def test_16_threads_x_10000_calls_keep_state_and_counters_consistent(recorder):
    breaker = chaotic_breaker(recorder)
    failures = Counter()

    def worker(seed: int) -> None:
        rng = random.Random(seed)

        def flaky(fails: bool) -> None:
            if fails:
                failures[seed] += 1
                raise Boom("flaky")

        for _ in range(10_000):
            with contextlib.suppress(Boom, CircuitOpen):
                breaker.call(flaky, rng.random() < 0.3)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert_counts_consistent(recorder, 160_000, sum(failures.values()))
    assert_transitions_chain(recorder)
    assert recorder.opens() > 10


async def test_one_trip_makes_exactly_one_open_transition(recorder):
    """50 calls admitted while closed all fail together: the circuit opens once."""
    config = BreakerConfig(name="dep", fail_max=5, reset_timeout=30.0, timeout=None)
    breaker = Breaker(config, listeners=(recorder,))
    gate = asyncio.Event()

    async def fail_together() -> None:
        await gate.wait()
        raise Boom("down")

    tasks = [asyncio.create_task(breaker.call_async(fail_together)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(isinstance(result, Boom) for result in results)
    assert recorder.transitions == [(State.CLOSED, State.OPEN)]
    assert breaker.state is State.OPEN


def test_threads_through_one_breaker_run_concurrently():
    """16 calls must be inside the guarded function at the same moment.

    If the breaker held its lock around the call (as ``pybreaker.CircuitBreaker.call``
    does), the barrier could never fill and would break after its timeout.
    """
    breaker = Breaker(BreakerConfig(name="dep", fail_max=5, reset_timeout=30.0, timeout=None))
    barrier = threading.Barrier(16, timeout=30)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            breaker.call(barrier.wait)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_100000_rejections_leave_no_memory_behind():
    breaker = Breaker(BreakerConfig(name="dep", fail_max=1, reset_timeout=3600.0, timeout=None))
    breaker.force_open()

    def reject_many(n: int) -> None:
        for _ in range(n):
            with contextlib.suppress(CircuitOpen):
                breaker.call(time.monotonic)

    reject_many(1000)  # warm up caches before measuring
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        reject_many(100_000)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 10_000, f"{growth} bytes kept after 100 000 rejections"
