"""Nova's ``Breaker``: pybreaker's state machine, made safe for asyncio and for threads.

pybreaker keeps the state, the counters (its storage) and the transitions; this adapter
decides when to call them. Each guarded call goes through three steps:

1. *admit* (under the lock): closed lets it through, open rejects it with a fresh
   ``CircuitOpen`` until ``reset_timeout`` has passed, half-open lets at most
   ``half_open_max_calls`` trial calls run at once;
2. *run* (outside the lock), so calls through one breaker run concurrently;
3. *record* (under the lock) against the state the call was admitted in: a result from
   an older state (a call admitted before the circuit opened) changes nothing, so one
   trip makes exactly one open transition.

Only system failures count; caller errors pass through as ``Outcome.IGNORED``; task
cancellation is nobody's failure.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

import pybreaker

from resilience.config import BreakerConfig
from resilience.errors import CallTimeout, CircuitOpen

__all__ = ["Breaker", "BreakerListener", "BreakerStatus", "Clock", "Outcome", "State"]

P = ParamSpec("P")
T = TypeVar("T")

#: Seconds from an arbitrary origin that never goes backwards; ``time.monotonic`` by default.
Clock = Callable[[], float]

_MAX_ERROR_TEXT = 200


class State(enum.Enum):
    """Where a circuit is. The value is what ``/health`` shows."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @classmethod
    def from_pybreaker(cls, name: str) -> State:
        """Translate pybreaker's state name (``"half-open"``) into a ``State``."""
        return cls(name.replace("-", "_"))


class Outcome(enum.Enum):
    """What became of one call; the value is the ``outcome`` metric label."""

    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class BreakerListener(Protocol):
    """Observes a breaker. Called synchronously, so keep it quick and never raise."""

    def on_state_change(self, breaker: Breaker, old: State, new: State) -> None:
        """The circuit moved from ``old`` to ``new``."""

    def on_call(
        self, breaker: Breaker, outcome: Outcome, duration_s: float, exc: BaseException | None
    ) -> None:
        """A call finished (or was rejected, with ``duration_s`` 0)."""


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """A point-in-time view of one breaker, as ``/health`` reports it."""

    state: State
    fail_count: int
    last_failure: dict[str, str] | None
    opened_at: str | None
    retry_after_s: float
    fail_max: int
    reset_timeout: float
    timeout: float | None
    half_open_max_calls: int
    enabled: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the state as its string value."""
        return {
            "state": self.state.value,
            "fail_count": self.fail_count,
            "last_failure": self.last_failure,
            "opened_at": self.opened_at,
            "retry_after_s": self.retry_after_s,
            "fail_max": self.fail_max,
            "reset_timeout": self.reset_timeout,
            "timeout": self.timeout,
            "half_open_max_calls": self.half_open_max_calls,
            "enabled": self.enabled,
        }


class _Translator(pybreaker.CircuitBreakerListener):
    """Turns pybreaker's state-change events into Nova's, and keeps the adapter's view in step."""

    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = State.from_pybreaker(old_state.name) if old_state else State.CLOSED
        self._breaker._entered(old, State.from_pybreaker(new_state.name))


class _Deadline:
    """Cancels the current task after ``timeout`` seconds: a lean ``asyncio.timeout``.

    One timer handle per call instead of a context manager, which costs a third as much
    on every guarded call; the cancellation bookkeeping is the same as ``asyncio.timeout``.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_task")

    def __init__(self, timeout: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a breaker timeout needs to run inside an asyncio task")
        loop = asyncio.get_running_loop()
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self._handle = loop.call_at(loop.time() + timeout, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def disarm(self) -> bool:
        """Stop the timer; true if it fired and its cancellation was the only new one."""
        self._handle.cancel()
        return self._expired and self._task.uncancel() <= self._cancelling


#: Proof of admission: the generation and state a call was let through in.
_Ticket = tuple[int, State]


class Breaker:
    """A circuit breaker for sync and async calls, built on ``pybreaker.CircuitBreaker``."""

    def __init__(
        self,
        config: BreakerConfig,
        *,
        listeners: tuple[BreakerListener, ...] = (),
        clock: Clock = time.monotonic,
        storage: pybreaker.CircuitBreakerStorage | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: tuple[BreakerListener, ...] = tuple(listeners)
        self._state = State.CLOSED
        self._generation = 0
        self._trials = 0
        self._opened_at = 0.0
        self._last_failure: dict[str, str] | None = None
        self._cb = pybreaker.CircuitBreaker(
            fail_max=config.fail_max,
            reset_timeout=config.reset_timeout,
            success_threshold=config.success_threshold,
            exclude=list(config.exclude),
            listeners=[_Translator(self)],
            state_storage=storage,
            name=config.name,
        )
        self._storage = self._cb._state_storage
        if self._storage.state != pybreaker.STATE_CLOSED:
            self._state = State.from_pybreaker(self._storage.state)
            self._opened_at = clock()

    @property
    def name(self) -> str:
        """The breaker's name, as used in metrics, logs and ``/health``."""
        return self._config.name

    @property
    def config(self) -> BreakerConfig:
        """The configuration this breaker was built from."""
        return self._config

    @property
    def state(self) -> State:
        """The current state, advanced to half-open if the recovery timeout has passed."""
        with self._lock:
            self._maybe_half_open()
            return self._state

    @property
    def fail_count(self) -> int:
        """Consecutive failures counted in the current closed period."""
        return self._storage.counter

    def counts_as_failure(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a system failure by this breaker's rules (not a caller error)."""
        return self._classify(exc) is Outcome.FAILURE

    def add_listener(self, listener: BreakerListener) -> None:
        """Subscribe ``listener`` to this breaker's events."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    # -- guarded calls -------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call a sync function through the breaker.

        A thread cannot be interrupted from outside, so ``timeout`` does not apply here:
        give the client its own timeout (socket, HTTP) shorter than the turn's budget.
        """
        if not self._config.enabled:
            return self._measured(fn, *args, **kwargs)
        ticket = self._admit()
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(ticket, exc, start)
            raise
        self._finish(ticket, None, start)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await a coroutine function through the breaker, cancelled after ``timeout``."""
        if not self._config.enabled:
            return await self._measured_async(fn, *args, **kwargs)
        ticket = self._admit()
        start = time.perf_counter()
        timeout = self._config.timeout
        deadline = None if timeout is None else _Deadline(timeout)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            expired = deadline is not None and deadline.disarm()
            if expired and isinstance(exc, asyncio.CancelledError):
                timed_out = CallTimeout(self.name, timeout or 0.0)
                self._finish(ticket, timed_out, start)
                raise timed_out from exc
            self._finish(ticket, exc, start)
            raise
        if deadline is not None:
            deadline.disarm()
        self._finish(ticket, None, start)
        return result

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a sync or ``async def`` function so every call goes through the breaker."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                return await self.call_async(fn, *args, **kwargs)

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(fn, *args, **kwargs)

        return guarded

    # -- operator controls ---------------------------------------------------------------

    def force_open(self) -> None:
        """Open the circuit now (maintenance, tests); it recovers after ``reset_timeout``."""
        with self._lock:
            if self._state is not State.OPEN:
                self._cb.open()

    def reset(self) -> None:
        """Close the circuit and forget the failures."""
        with self._lock:
            if self._state is State.CLOSED:
                self._storage.reset_counter()
            else:
                self._cb.close()

    def status(self) -> BreakerStatus:
        """A consistent snapshot of this breaker for health reports."""
        with self._lock:
            self._maybe_half_open()
            opened = self._storage.opened_at
            retry_after = 0.0
            if self._state is State.OPEN:
                retry_after = max(0.0, self._opened_at + self._config.reset_timeout - self._clock())
            return BreakerStatus(
                state=self._state,
                fail_count=self._storage.counter,
                last_failure=self._last_failure,
                opened_at=opened.isoformat() if opened else None,
                retry_after_s=round(retry_after, 3),
                fail_max=self._config.fail_max,
                reset_timeout=self._config.reset_timeout,
                timeout=self._config.timeout,
                half_open_max_calls=self._config.half_open_max_calls,
                enabled=self._config.enabled,
            )

    # -- internals -----------------------------------------------------------------------

    def _maybe_half_open(self) -> None:
        """Under the lock: move an open circuit to half-open once its timeout has passed."""
        if (
            self._state is State.OPEN
            and self._clock() >= self._opened_at + self._config.reset_timeout
        ):
            self._cb.half_open()

    def _admit(self) -> _Ticket:
        """Let a call through or raise a fresh ``CircuitOpen``."""
        # Closed needs no lock: ``_entered`` sets the state before it bumps the generation,
        # so a ticket can only pair a new generation with that generation's state. A stale
        # pairing carries an old generation, and ``_finish`` ignores old generations.
        generation, state = self._generation, self._state
        if state is State.CLOSED:
            return (generation, state)
        with self._lock:
            self._maybe_half_open()
            state = self._state
            if state is State.CLOSED:
                return (self._generation, state)
            if state is State.HALF_OPEN and self._trials < self._config.half_open_max_calls:
                self._trials += 1
                return (self._generation, state)
            retry_after = 0.0
            if state is State.OPEN:
                retry_after = self._opened_at + self._config.reset_timeout - self._clock()
            listeners = self._listeners
        for listener in listeners:
            listener.on_call(self, Outcome.REJECTED, 0.0, None)
        raise CircuitOpen(self.name, max(0.0, retry_after))

    def _classify(self, exc: BaseException | None) -> Outcome:
        if exc is None:
            return Outcome.SUCCESS
        if isinstance(exc, asyncio.CancelledError) or not isinstance(exc, Exception):
            return Outcome.CANCELLED
        if self._cb.is_system_error(exc):
            return Outcome.FAILURE
        return Outcome.IGNORED

    def _finish(self, ticket: _Ticket, exc: BaseException | None, start: float) -> None:
        """Record a call's result against the state it was admitted in, then notify."""
        duration = time.perf_counter() - start
        outcome = self._classify(exc)
        # A success while closed with no failures counted changes nothing: skip the lock.
        if not (outcome is Outcome.SUCCESS and ticket[1] is State.CLOSED and not self.fail_count):
            with self._lock:
                if outcome is Outcome.FAILURE:
                    self._last_failure = _failure_record(exc)
                generation, admitted = ticket
                if generation == self._generation:
                    self._apply(admitted, outcome)
        for listener in self._listeners:
            listener.on_call(self, outcome, duration, exc)

    def _apply(self, admitted: State, outcome: Outcome) -> None:
        """Under the lock, for a call admitted in the current generation."""
        storage = self._storage
        if admitted is State.HALF_OPEN:
            self._trials -= 1
            if outcome is Outcome.FAILURE:
                self._cb.open()
            elif outcome is Outcome.SUCCESS:
                storage.increment_success_counter()
                if storage.success_counter >= self._config.success_threshold:
                    self._cb.close()
        elif outcome is Outcome.FAILURE:
            storage.increment_counter()
            if storage.counter >= self._config.fail_max:
                self._cb.open()
        elif outcome is Outcome.SUCCESS and storage.counter:
            storage.reset_counter()

    def _entered(self, old: State, new: State) -> None:
        """Called by pybreaker (under our lock) after each transition."""
        self._state = new  # before the generation: see ``_admit``
        self._generation += 1
        self._trials = 0
        if new is State.OPEN:
            self._opened_at = self._clock()
        for listener in self._listeners:
            listener.on_state_change(self, old, new)

    def _measured(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """A disabled breaker: call straight through, but still report the outcome."""
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._report(self._classify(exc), start, exc)
            raise
        self._report(Outcome.SUCCESS, start, None)
        return result

    async def _measured_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        start = time.perf_counter()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._report(self._classify(exc), start, exc)
            raise
        self._report(Outcome.SUCCESS, start, None)
        return result

    def _report(self, outcome: Outcome, start: float, exc: BaseException | None) -> None:
        duration = time.perf_counter() - start
        for listener in self._listeners:
            listener.on_call(self, outcome, duration, exc)


def _failure_record(exc: BaseException | None) -> dict[str, str]:
    """When and what: the error's class and message, short, never a traceback."""
    text = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"
    return {"at": datetime.now(UTC).isoformat(), "error": text[:_MAX_ERROR_TEXT]}
