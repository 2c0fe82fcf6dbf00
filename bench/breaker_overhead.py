"""What a call through Nova's ``Breaker`` costs, next to a bare call and bare pybreaker.

Every dependency call Nova makes goes through a breaker, so the breaker's own cost is
paid on every turn. This prints, in one run, ns per call for the sync and async paths
(closed, success), the open-circuit rejection, the same with the Prometheus metrics
listener attached, and an asyncio throughput test, with the targets beside the figures
(information only: nothing here fails).

Run from the repository root::

    .venv/bin/python bench/breaker_overhead.py          # about 40 s
    .venv/bin/python bench/breaker_overhead.py --quick  # a few seconds, noisy (for tests)

Each figure is the median of several runs of N calls, timed with ``time.perf_counter_ns``
with the garbage collector off; runs of all paths are interleaved so drift hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import statistics
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from itertools import repeat
from time import perf_counter_ns
from typing import Any

import pybreaker
from prometheus_client import CollectorRegistry

from resilience.breaker import Breaker
from resilience.config import BreakerConfig
from resilience.errors import CircuitOpen
from resilience.metrics import BreakerMetrics
from resilience.registry import BreakerRegistry

#: The per-call timeout used for the "with a timeout" paths (Nova's defaults are 1-20 s).
TIMEOUT_S = 1.0
#: Long enough that an opened circuit stays open for the whole run.
LONG_RESET_S = 3600.0
#: Async loops yield to the event loop every this many calls, as a real loop would, so
#: cancelled timer handles are purged; the bare loop does the same, so it cancels out.
ASYNC_BATCH = 1000

#: Targets, printed as PASS/MISS beside the results.
TARGET_ASYNC_VS_PYBREAKER = 1.5
TARGET_THROUGHPUT_FRACTION = 0.5

BARE_SYNC = "bare fn()"
BARE_ASYNC = "bare await afn()"
PYBREAKER_CALL = "pybreaker cb.call(fn)"
PYBREAKER_REJECT = "pybreaker open: CircuitBreakerError"
NOVA_ASYNC = "Nova await call_async(afn), timeout=None"
NOVA_ASYNC_TIMEOUT = f"Nova await call_async(afn), timeout={TIMEOUT_S:g}"
NOVA_REJECT = "Nova open: CircuitOpen"
ASYNCIO_TIMEOUT = f"  ref: async with asyncio.timeout({TIMEOUT_S:g}): await afn()"


@dataclass(frozen=True)
class Settings:
    """How long to run: calls per run, runs per figure, and the throughput test's size."""

    sync_n: int
    async_n: int
    repeats: int
    tasks: int
    calls_per_task: int
    throughput_repeats: int


FULL = Settings(
    sync_n=200_000,
    async_n=100_000,
    repeats=5,
    tasks=1000,
    calls_per_task=100,
    throughput_repeats=3,
)
QUICK = Settings(
    sync_n=10_000,
    async_n=5_000,
    repeats=3,
    tasks=100,
    calls_per_task=50,
    throughput_repeats=1,
)


@dataclass
class Case:
    """One path to time: ``measure(n)`` runs it ``n`` times and returns the elapsed ns."""

    name: str
    measure: Callable[[int], int]
    is_async: bool
    #: The bare call this path's overhead is measured against (``None`` for a bare call).
    bare: str | None
    #: The pybreaker path its overhead is compared with (``None``: no comparison).
    versus: str | None
    samples: list[float] = field(default_factory=list)

    @property
    def ns_per_call(self) -> float:
        """Median ns per call over the runs so far."""
        return statistics.median(self.samples)


# -- the trivial functions being guarded ------------------------------------------------


def fn() -> None:
    return None


async def afn() -> None:
    return None


async def work() -> None:
    await asyncio.sleep(0)


# -- timing loops -------------------------------------------------------------------------


def sync_bare(target: Callable[[], object]) -> Callable[[int], int]:
    def run(n: int) -> int:
        start = perf_counter_ns()
        for _ in repeat(None, n):
            target()
        return perf_counter_ns() - start

    return run


def sync_guarded(
    call: Callable[[Callable[[], object]], object], target: Callable[[], object]
) -> Callable[[int], int]:
    def run(n: int) -> int:
        start = perf_counter_ns()
        for _ in repeat(None, n):
            call(target)
        return perf_counter_ns() - start

    return run


def sync_rejected(
    call: Callable[[Callable[[], object]], object],
    target: Callable[[], object],
    error: type[BaseException],
) -> Callable[[int], int]:
    def run(n: int) -> int:
        start = perf_counter_ns()
        for _ in repeat(None, n):
            # A plain try/except, as callers write it (contextlib.suppress costs more).
            try:
                call(target)
            except error:
                continue
        return perf_counter_ns() - start

    # Check once, untimed, that the breaker really rejects (and does not call through).
    try:
        call(target)
    except error:
        return run
    raise RuntimeError(f"{call!r} did not raise {error.__name__}")


def async_bare(
    runner: asyncio.Runner, target: Callable[[], Awaitable[None]]
) -> Callable[[int], int]:
    async def loop(batches: int) -> int:
        start = perf_counter_ns()
        for _ in repeat(None, batches):
            for _ in repeat(None, ASYNC_BATCH):
                await target()
            await asyncio.sleep(0)
        return perf_counter_ns() - start

    return lambda n: runner.run(loop(n // ASYNC_BATCH))


def async_timeout(
    runner: asyncio.Runner, target: Callable[[], Awaitable[None]]
) -> Callable[[int], int]:
    async def loop(batches: int) -> int:
        start = perf_counter_ns()
        for _ in repeat(None, batches):
            for _ in repeat(None, ASYNC_BATCH):
                async with asyncio.timeout(TIMEOUT_S):
                    await target()
            await asyncio.sleep(0)
        return perf_counter_ns() - start

    return lambda n: runner.run(loop(n // ASYNC_BATCH))


def async_guarded(
    runner: asyncio.Runner, breaker: Breaker, target: Callable[[], Awaitable[None]]
) -> Callable[[int], int]:
    call = breaker.call_async

    async def loop(batches: int) -> int:
        start = perf_counter_ns()
        for _ in repeat(None, batches):
            for _ in repeat(None, ASYNC_BATCH):
                await call(target)
            await asyncio.sleep(0)
        return perf_counter_ns() - start

    return lambda n: runner.run(loop(n // ASYNC_BATCH))


def timed(measure: Callable[[int], int], n: int) -> int:
    """One run with the collector off (as ``timeit`` does)."""
    gc.collect()
    gc.disable()
    try:
        return measure(n)
    finally:
        gc.enable()


# -- breakers ---------------------------------------------------------------------------


def config(name: str, timeout: float | None, reset_timeout: float = 60.0) -> BreakerConfig:
    return BreakerConfig(name=name, fail_max=5, reset_timeout=reset_timeout, timeout=timeout)


def app_breakers() -> BreakerRegistry:
    """Breakers built the way the app builds them: log listener plus Prometheus metrics."""
    return BreakerRegistry(
        [
            config("metrics", None),
            config("metrics_timeout", TIMEOUT_S),
            config("metrics_open", None, LONG_RESET_S),
        ],
        metrics=BreakerMetrics(CollectorRegistry()),
    )


def build_cases(runner: asyncio.Runner) -> list[Case]:
    plain = Breaker(config("bench", None))
    plain_timeout = Breaker(config("bench_timeout", TIMEOUT_S))
    plain_open = Breaker(config("bench_open", None, LONG_RESET_S))
    plain_open.force_open()
    reference = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    reference_open = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=LONG_RESET_S)
    reference_open.open()
    app = app_breakers()
    app["metrics_open"].force_open()

    def sync(name: str, run: Callable[[int], int], bare: str | None, vs: str | None) -> Case:
        return Case(name, run, is_async=False, bare=bare, versus=vs)

    def asyn(name: str, run: Callable[[int], int], bare: str | None, vs: str | None) -> Case:
        return Case(name, run, is_async=True, bare=bare, versus=vs)

    return [
        sync(BARE_SYNC, sync_bare(fn), None, None),
        sync(PYBREAKER_CALL, sync_guarded(reference.call, fn), BARE_SYNC, PYBREAKER_CALL),
        sync("Nova breaker.call(fn)", sync_guarded(plain.call, fn), BARE_SYNC, PYBREAKER_CALL),
        asyn(BARE_ASYNC, async_bare(runner, afn), None, None),
        asyn(NOVA_ASYNC, async_guarded(runner, plain, afn), BARE_ASYNC, PYBREAKER_CALL),
        asyn(
            NOVA_ASYNC_TIMEOUT,
            async_guarded(runner, plain_timeout, afn),
            BARE_ASYNC,
            PYBREAKER_CALL,
        ),
        asyn(ASYNCIO_TIMEOUT, async_timeout(runner, afn), BARE_ASYNC, PYBREAKER_CALL),
        sync(
            PYBREAKER_REJECT,
            sync_rejected(reference_open.call, fn, pybreaker.CircuitBreakerError),
            BARE_SYNC,
            PYBREAKER_REJECT,
        ),
        sync(
            NOVA_REJECT,
            sync_rejected(plain_open.call, fn, CircuitOpen),
            BARE_SYNC,
            PYBREAKER_REJECT,
        ),
        sync(
            "Nova+metrics breaker.call(fn)",
            sync_guarded(app["metrics"].call, fn),
            BARE_SYNC,
            PYBREAKER_CALL,
        ),
        asyn(
            "Nova+metrics call_async, timeout=None",
            async_guarded(runner, app["metrics"], afn),
            BARE_ASYNC,
            PYBREAKER_CALL,
        ),
        asyn(
            f"Nova+metrics call_async, timeout={TIMEOUT_S:g}",
            async_guarded(runner, app["metrics_timeout"], afn),
            BARE_ASYNC,
            PYBREAKER_CALL,
        ),
        sync(
            "Nova+metrics open: CircuitOpen",
            sync_rejected(app["metrics_open"].call, fn, CircuitOpen),
            BARE_SYNC,
            PYBREAKER_REJECT,
        ),
    ]


def run_cases(cases: list[Case], settings: Settings) -> None:
    """Warm every path up, then time them round-robin ``repeats`` times."""
    for case in cases:
        n = settings.async_n if case.is_async else settings.sync_n
        timed(case.measure, max(ASYNC_BATCH, n // 10))
    for _ in range(settings.repeats):
        for case in cases:
            n = settings.async_n if case.is_async else settings.sync_n
            n = n // ASYNC_BATCH * ASYNC_BATCH if case.is_async else n
            case.samples.append(timed(case.measure, n) / n)


# -- throughput ---------------------------------------------------------------------------


async def throughput_plain(tasks: int, calls: int) -> int:
    async def worker() -> None:
        for _ in repeat(None, calls):
            await work()

    start = perf_counter_ns()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return perf_counter_ns() - start


async def throughput_breaker(breaker: Breaker, tasks: int, calls: int) -> int:
    call = breaker.call_async

    async def worker() -> None:
        for _ in repeat(None, calls):
            await call(work)

    start = perf_counter_ns()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return perf_counter_ns() - start


def run_throughput(runner: asyncio.Runner, settings: Settings) -> dict[str, float]:
    """Median wall seconds for ``tasks`` x ``calls_per_task`` calls, per variant."""
    app = app_breakers()
    tasks, calls = settings.tasks, settings.calls_per_task
    variants: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
        "no breaker": lambda: throughput_plain(tasks, calls),
        "Nova, timeout=None": lambda: throughput_breaker(Breaker(config("tp", None)), tasks, calls),
        f"Nova, timeout={TIMEOUT_S:g}": lambda: throughput_breaker(
            Breaker(config("tp_timeout", TIMEOUT_S)), tasks, calls
        ),
        "Nova+metrics, timeout=None": lambda: throughput_breaker(app["metrics"], tasks, calls),
        f"Nova+metrics, timeout={TIMEOUT_S:g}": lambda: throughput_breaker(
            app["metrics_timeout"], tasks, calls
        ),
    }
    samples: dict[str, list[int]] = {name: [] for name in variants}
    for _ in range(settings.throughput_repeats):
        for name, make in variants.items():
            gc.collect()
            samples[name].append(runner.run(make()))
    return {name: statistics.median(ns) / 1e9 for name, ns in samples.items()}


# -- report -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(cases: list[Case], throughput: dict[str, float], settings: Settings) -> None:
    by_name = {case.name: case for case in cases}

    def overhead(name: str) -> float:
        case = by_name[name]
        return case.ns_per_call - by_name[case.bare].ns_per_call if case.bare else 0.0

    width = max(len(case.name) for case in cases) + 2
    print(
        f"Breaker overhead: median of {settings.repeats} runs; "
        f"{settings.sync_n:,} sync / {settings.async_n:,} async calls per run"
    )
    print("overhead = ns/call minus the matching bare call (fn() for sync, await afn() for async)")
    print("x pybreaker = overhead / bare pybreaker's overhead for the same outcome")
    print("(closed success; the rejection rows vs pybreaker's rejection)")
    print("rejection rows include the try/except; Nova+metrics = built by BreakerRegistry")
    print("(LogListener + BreakerMetrics on a CollectorRegistry), as the app builds it")
    print()
    print(f"{'path':<{width}}{'ns/call':>10}{'overhead':>10}{'x pybreaker':>13}")
    print("-" * (width + 33))
    for case in cases:
        if case.bare is None:
            extra, ratio = "-", "-"
        else:
            extra = f"{overhead(case.name):.0f}"
            ratio = "-"
            if case.versus is not None and case.versus != case.name:
                ratio = f"{overhead(case.name) / overhead(case.versus):.2f}x"
        print(f"{case.name:<{width}}{case.ns_per_call:>10.0f}{extra:>10}{ratio:>13}")

    base = throughput["no breaker"]
    calls = settings.tasks * settings.calls_per_task
    print()
    print(
        f"Throughput: {settings.tasks:,} tasks x {settings.calls_per_task} calls, each "
        f"awaiting asyncio.sleep(0); median of {settings.throughput_repeats} run(s)"
    )
    print(f"{'variant':<{width}}{'wall s':>10}{'calls/s':>12}{'fraction':>10}")
    print("-" * (width + 32))
    for name, seconds in throughput.items():
        print(f"{name:<{width}}{seconds:>10.3f}{calls / seconds:>12,.0f}{base / seconds:>10.2f}")

    limit = TARGET_ASYNC_VS_PYBREAKER * overhead(PYBREAKER_CALL)
    print()
    print("Targets (information, not assertions)")
    print(
        f"  async overhead <= {TARGET_ASYNC_VS_PYBREAKER}x bare pybreaker's sync overhead "
        f"({overhead(PYBREAKER_CALL):.0f} ns), i.e. <= {limit:.0f} ns"
    )
    for name in (NOVA_ASYNC, NOVA_ASYNC_TIMEOUT):
        value = overhead(name)
        ratio = value / overhead(PYBREAKER_CALL)
        miss = "" if value <= limit else f"  (over by {value - limit:.0f} ns)"
        print(
            f"    {name:<{width}}{value:>7.0f} ns {ratio:>6.2f}x  {verdict(value <= limit)}{miss}"
        )
    share = overhead(ASYNCIO_TIMEOUT)
    print(
        f"    for reference, asyncio.timeout({TIMEOUT_S:g}) alone costs {share:.0f} ns; "
        "Nova's per-call timer (one loop.call_at handle) replaces it"
    )
    nova, ref = by_name[NOVA_REJECT].ns_per_call, by_name[PYBREAKER_REJECT].ns_per_call
    print("  rejection no slower than pybreaker's rejection")
    print(
        f"    {NOVA_REJECT} {nova:.0f} ns vs {PYBREAKER_REJECT} {ref:.0f} ns "
        f"({nova / ref:.2f}x)  {verdict(nova <= ref)}"
    )
    print(f"  throughput fraction (breaker / no breaker) >= {TARGET_THROUGHPUT_FRACTION}")
    for name, seconds in throughput.items():
        if name != "no breaker":
            fraction = base / seconds
            print(
                f"    {name:<{width}}{fraction:>7.2f}  "
                f"{verdict(fraction >= TARGET_THROUGHPUT_FRACTION)}"
            )
    print()
    print(f"machine: {os.cpu_count()} cores, python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short, noisy run (for tests)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    # The app's LogListener warns when the bench opens its circuits; keep stdout a table.
    logging.getLogger("resilience").addHandler(logging.NullHandler())
    with asyncio.Runner() as runner:
        cases = build_cases(runner)
        run_cases(cases, settings)
        throughput = run_throughput(runner, settings)
    report(cases, throughput, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
