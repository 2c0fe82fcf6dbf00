"""resilience4j's circuit-breaker series, computed at scrape time from Nova's own.

Dashboards built for resilience4j's Micrometer names (``resilience4j_circuitbreaker_*``)
work on Nova unchanged. Nothing is recorded twice: a call updates only Nova's series,
and this collector derives the resilience4j ones when ``/metrics`` is read, from the
public ``collect()`` of Nova's counter and histogram and from each breaker's live state.

- ``resilience4j_circuitbreaker_state{name,state}``: 1 for the live state, 0 for the
  other five. A breaker with ``enabled=false`` is ``metrics_only`` (calls pass through
  and are still measured), not ``disabled`` (which records nothing).
- ``resilience4j_circuitbreaker_calls_seconds{name,kind}``: Nova's
  ``circuit_breaker_call_duration_seconds`` for the outcomes ``success``, ``failure`` and
  ``ignored``, as the kinds ``successful``, ``failed`` and ``ignored``.
- ``resilience4j_circuitbreaker_not_permitted_calls_total{name,kind="not_permitted"}``:
  ``circuit_breaker_calls_total{outcome="rejected"}``.

Left out, because nothing in Nova means the same: ``failure_rate``, ``buffered_calls``,
``slow_calls`` and ``slow_call_rate`` (Nova counts consecutive failures, not a sliding
window of calls, and has no slow-call threshold), the timer's ``_max`` (Micrometer's
decaying maximum), and cancelled calls (no resilience4j kind).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from resilience.breaker import Breaker, Outcome

__all__ = ["KINDS", "STATES", "Resilience4jCollector"]

#: Every resilience4j state, as its ``state`` label spells it.
STATES = ("closed", "open", "half_open", "disabled", "forced_open", "metrics_only")
#: Nova's outcome -> resilience4j's ``kind`` on ``calls_seconds``.
KINDS = {Outcome.SUCCESS: "successful", Outcome.FAILURE: "failed", Outcome.IGNORED: "ignored"}

#: One histogram child: its cumulative buckets (``le``, count) in order, and its sum.
_Buckets = list[tuple[str, float]]


class Resilience4jCollector(Collector):
    """Yields resilience4j's series for every watched breaker at each scrape."""

    def __init__(
        self, calls: Counter, durations: Histogram, breakers: Callable[[], Iterable[Breaker]]
    ) -> None:
        self._calls = calls
        self._durations = durations
        self._breakers = breakers

    def collect(self) -> Iterator[Metric]:
        """The state gauge, the calls histogram and the not-permitted counter."""
        breakers = list(self._breakers())
        yield _states(breakers)
        buckets, sums = _histograms(self._durations)
        calls = HistogramMetricFamily(
            "resilience4j_circuitbreaker_calls_seconds",
            "Calls through the circuit breaker by kind, and how long they took.",
            labels=["name", "kind"],
        )
        for breaker in breakers:
            for outcome, kind in KINDS.items():
                key = (breaker.name, outcome.value)
                calls.add_metric([breaker.name, kind], buckets[key], sums[key])
        yield calls
        rejected = _rejections(self._calls)
        not_permitted = CounterMetricFamily(
            "resilience4j_circuitbreaker_not_permitted_calls",
            "Total number of not permitted calls.",
            labels=["name", "kind"],
        )
        for breaker in breakers:
            not_permitted.add_metric([breaker.name, "not_permitted"], rejected[breaker.name])
        yield not_permitted


def _states(breakers: list[Breaker]) -> GaugeMetricFamily:
    """1 for each breaker's current state, 0 for the others."""
    family = GaugeMetricFamily(
        "resilience4j_circuitbreaker_state",
        "The states of the circuit breaker.",
        labels=["name", "state"],
    )
    for breaker in breakers:
        current = breaker.state.value if breaker.config.enabled else "metrics_only"
        for state in STATES:
            family.add_metric([breaker.name, state], 1.0 if state == current else 0.0)
    return family


def _histograms(
    histogram: Histogram,
) -> tuple[dict[tuple[str, str], _Buckets], dict[tuple[str, str], float]]:
    """Buckets and sums of a ``{name, outcome}`` histogram, by (name, outcome)."""
    buckets: dict[tuple[str, str], _Buckets] = defaultdict(list)
    sums: dict[tuple[str, str], float] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            key = (sample.labels["name"], sample.labels["outcome"])
            if sample.name.endswith("_bucket"):
                buckets[key].append((sample.labels["le"], sample.value))
            elif sample.name.endswith("_sum"):
                sums[key] = sample.value
    return buckets, sums


def _rejections(counter: Counter) -> dict[str, float]:
    """Rejected calls by breaker name, from a ``{name, outcome}`` counter."""
    return {
        sample.labels["name"]: sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["outcome"] == Outcome.REJECTED.value
    }
