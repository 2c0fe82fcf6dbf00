"""Prometheus view of the breakers: a listener that turns breaker events into metrics.

Nova's own ``circuit_breaker_*`` series live in one ``CollectorRegistry`` that the
health server exposes at ``/metrics``, beside resilience4j's names for the same figures
(``resilience.resilience4j``, computed at scrape time). Metrics only observe: nothing
here changes a breaker.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from resilience.breaker import Breaker, Outcome, State
from resilience.resilience4j import Resilience4jCollector

__all__ = ["STATE_VALUES", "BreakerMetrics"]

#: ``circuit_breaker_state`` gauge values.
STATE_VALUES = {State.CLOSED: 0, State.OPEN: 1, State.HALF_OPEN: 2}

#: Seconds; from a fast Redis call to a slow speech synthesis.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class BreakerMetrics:
    """Subscribes to breakers and keeps their Prometheus series current."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._state = Gauge(
            "circuit_breaker_state",
            "Circuit state: 0 closed, 1 open, 2 half_open.",
            ["name"],
            registry=registry,
        )
        self._failures = Counter(
            "circuit_breaker_failures",
            "Calls that failed with a system error and counted against the circuit.",
            ["name"],
            registry=registry,
        )
        self._recoveries = Counter(
            "circuit_breaker_recoveries",
            "Transitions from half_open back to closed.",
            ["name"],
            registry=registry,
        )
        self._opens = Counter(
            "circuit_breaker_opens",
            "Transitions into open (trips and failed trials).",
            ["name"],
            registry=registry,
        )
        self._calls = Counter(
            "circuit_breaker_calls",
            "Calls through the breaker by outcome.",
            ["name", "outcome"],
            registry=registry,
        )
        self._duration = Histogram(
            "circuit_breaker_call_duration_seconds",
            "Duration of calls the breaker let through, by outcome.",
            ["name", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._series: dict[str, _Series] = {}
        self._breakers: dict[str, Breaker] = {}
        registry.register(Resilience4jCollector(self._calls, self._duration, self._breakers.values))

    def watch(self, breaker: Breaker) -> None:
        """Create the breaker's series (so they exist at zero) and subscribe to it."""
        name = breaker.name
        self._series[name] = _Series(
            state=self._state.labels(name),
            failures=self._failures.labels(name),
            recoveries=self._recoveries.labels(name),
            opens=self._opens.labels(name),
            by_outcome={
                outcome: (
                    self._calls.labels(name, outcome.value),
                    None  # a rejected call never ran
                    if outcome is Outcome.REJECTED
                    else self._duration.labels(name, outcome.value),
                )
                for outcome in Outcome
            },
        )
        self._series[name].state.set(STATE_VALUES[breaker.state])
        self._breakers[name] = breaker
        breaker.add_listener(self)

    def on_state_change(self, breaker: Breaker, old: State, new: State) -> None:
        """Track the state gauge and count opens and recoveries."""
        series = self._series[breaker.name]
        series.state.set(STATE_VALUES[new])
        if new is State.OPEN:
            series.opens.inc()
        elif old is State.HALF_OPEN and new is State.CLOSED:
            series.recoveries.inc()

    def on_call(
        self, breaker: Breaker, outcome: Outcome, duration_s: float, exc: BaseException | None
    ) -> None:
        """Count the call by outcome and time the ones that ran."""
        series = self._series[breaker.name]
        calls, duration = series.by_outcome[outcome]
        calls.inc()
        if outcome is Outcome.FAILURE:
            series.failures.inc()
        if duration is not None:
            duration.observe(duration_s)


@dataclass(frozen=True, slots=True)
class _Series:
    """One breaker's labelled children, looked up once: ``labels()`` costs on every call.

    ``by_outcome`` pairs each outcome's call counter with its duration histogram (none
    for rejections), so a call costs one lookup.
    """

    state: Gauge
    failures: Counter
    recoveries: Counter
    opens: Counter
    by_outcome: dict[Outcome, tuple[Counter, Histogram | None]]
