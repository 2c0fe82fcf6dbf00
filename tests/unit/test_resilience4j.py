"""resilience4j's series beside Nova's: exactly the samples a known sequence of calls implies."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from resilience import BreakerConfig, BreakerMetrics, BreakerRegistry, CallerError, CircuitOpen

pytestmark = pytest.mark.unit

STATES = ("closed", "open", "half_open", "disabled", "forced_open", "metrics_only")
KINDS = {"success": "successful", "failure": "failed", "ignored": "ignored"}
PREFIX = "resilience4j_"


def ok() -> str:
    return "ok"


def fail() -> None:
    raise ConnectionError("refused")


def bad_request() -> None:
    raise CallerError("question is empty")


@pytest.fixture
def breakers(clock) -> BreakerRegistry:
    configs = [
        BreakerConfig(name="rag_api", fail_max=3, reset_timeout=30.0, timeout=None),
        BreakerConfig(name="redis", fail_max=5, reset_timeout=15.0, timeout=None),
        BreakerConfig(name="voice", fail_max=2, reset_timeout=45.0, timeout=None, enabled=False),
    ]
    return BreakerRegistry(configs, metrics=BreakerMetrics(CollectorRegistry()), clock=clock)


@pytest.fixture
def scrape(breakers, metric_samples):
    """Every sample the registry exposes, as the health server's ``/metrics`` would."""
    assert breakers.metrics is not None
    registry = breakers.metrics.registry
    return lambda: metric_samples(generate_latest(registry).decode())


def resilience4j(samples: dict) -> dict:
    return {key: value for key, value in samples.items() if key[0].startswith(PREFIX)}


def states(samples: dict, name: str) -> dict[str, float]:
    return {
        state: samples[("resilience4j_circuitbreaker_state", (("name", name), ("state", state)))]
        for state in STATES
    }


def expected(samples: dict, current: dict[str, str], calls: dict, rejected: dict) -> dict:
    """The resilience4j samples for these states and call counts.

    Durations are real, so each kind's buckets and sum are Nova's own for that outcome;
    the counts are the test's.
    """
    want = {}
    for name, state in current.items():
        for each in STATES:
            labels = (("name", name), ("state", each))
            want[("resilience4j_circuitbreaker_state", labels)] = float(each == state)
        labels = (("kind", "not_permitted"), ("name", name))
        want[("resilience4j_circuitbreaker_not_permitted_calls_total", labels)] = rejected.get(
            name, 0
        )
        for outcome, kind in KINDS.items():
            nova = (("name", name), ("outcome", outcome))
            for (sample, labels), value in samples.items():
                if sample == "circuit_breaker_call_duration_seconds_bucket" and labels[1:] == nova:
                    r4j = (("kind", kind), labels[0], ("name", name))
                    want[("resilience4j_circuitbreaker_calls_seconds_bucket", r4j)] = value
            series = (("kind", kind), ("name", name))
            count = calls.get(name, {}).get(kind, 0)
            want[("resilience4j_circuitbreaker_calls_seconds_count", series)] = count
            want[("resilience4j_circuitbreaker_calls_seconds_sum", series)] = samples[
                ("circuit_breaker_call_duration_seconds_sum", nova)
            ]
    return want


def test_every_breaker_has_the_resilience4j_series_before_any_call(scrape):
    samples = scrape()
    assert resilience4j(samples) == expected(
        samples, {"rag_api": "closed", "redis": "closed", "voice": "metrics_only"}, {}, {}
    )


def test_a_known_sequence_gives_exactly_the_expected_samples(breakers, scrape, clock):
    rag, voice = breakers["rag_api"], breakers["voice"]
    rag.call(ok)
    rag.call(ok)
    with pytest.raises(CallerError):
        rag.call(bad_request)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            rag.call(fail)
    with pytest.raises(CircuitOpen):
        rag.call(ok)
    voice.call(ok)
    with pytest.raises(ConnectionError):
        voice.call(fail)  # a disabled breaker measures but never opens

    samples = scrape()
    assert states(samples, "rag_api")["open"] == 1
    calls = {
        "rag_api": {"successful": 2, "failed": 3, "ignored": 1},
        "voice": {"successful": 1, "failed": 1},
    }
    current = {"rag_api": "open", "redis": "closed", "voice": "metrics_only"}
    assert resilience4j(samples) == expected(samples, current, calls, {"rag_api": 1})

    clock.advance(31)  # the scrape itself finds the circuit due for a trial
    assert states(scrape(), "rag_api") == {state: float(state == "half_open") for state in STATES}

    rag.call(ok)
    samples = scrape()
    calls["rag_api"]["successful"] = 3
    current["rag_api"] = "closed"
    assert resilience4j(samples) == expected(samples, current, calls, {"rag_api": 1})
    inf = (("kind", "successful"), ("le", "+Inf"), ("name", "rag_api"))
    assert samples[("resilience4j_circuitbreaker_calls_seconds_bucket", inf)] == 3
    assert samples[("resilience4j_circuitbreaker_calls_seconds_sum", inf[::2])] > 0


async def test_cancelled_calls_have_no_resilience4j_kind(breakers, scrape):
    async def hang() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(breakers["redis"].call_async(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    samples = scrape()
    cancelled = (("name", "redis"), ("outcome", "cancelled"))
    assert samples[("circuit_breaker_calls_total", cancelled)] == 1
    current = {"rag_api": "closed", "redis": "closed", "voice": "metrics_only"}
    assert resilience4j(samples) == expected(samples, current, {}, {})
