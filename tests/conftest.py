"""Shared test helpers: a clock the test moves by hand, and an event recorder."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from resilience import Breaker, BreakerConfig, Outcome, State


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Recorder:
    """A breaker listener that keeps every event, thread-safely."""

    transitions: list[tuple[State, State]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_state_change(self, breaker: Breaker, old: State, new: State) -> None:
        with self.lock:
            self.transitions.append((old, new))

    def on_call(self, breaker, outcome, duration_s, exc) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def count(self, outcome: Outcome) -> int:
        return self.outcomes.count(outcome)

    def opens(self) -> int:
        return sum(1 for _, new in self.transitions if new is State.OPEN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_breaker(clock, recorder):
    """Build a breaker on the fake clock with the recorder attached."""

    def make(**overrides) -> Breaker:
        values = {"name": "dep", "fail_max": 3, "reset_timeout": 30.0, "timeout": None}
        values.update(overrides)
        return Breaker(BreakerConfig(**values), listeners=(recorder,), clock=clock)

    return make
