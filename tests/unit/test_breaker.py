"""The breaker's state machine, one rule per test, on a clock the test moves."""

from __future__ import annotations

import asyncio
import time

import pytest

from resilience import CallerError, CallTimeout, CircuitOpen, Outcome, State

pytestmark = pytest.mark.unit


class Boom(ConnectionError):
    """A dependency failure."""


class HTTPError(Exception):
    """Shaped like httpx.HTTPStatusError: carries ``response.status_code``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.response = type("Response", (), {"status_code": status})()


async def fail() -> None:
    raise Boom("dependency down")


async def ok() -> str:
    return "ok"


async def fail_times(breaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            await breaker.call_async(fail)


async def test_opens_after_exactly_fail_max_consecutive_failures(make_breaker, recorder):
    breaker = make_breaker(fail_max=3)
    await fail_times(breaker, 2)
    assert breaker.state is State.CLOSED
    assert breaker.fail_count == 2
    await fail_times(breaker, 1)
    assert breaker.state is State.OPEN
    assert recorder.transitions == [(State.CLOSED, State.OPEN)]


async def test_a_success_resets_the_consecutive_count(make_breaker):
    breaker = make_breaker(fail_max=3)
    await fail_times(breaker, 2)
    assert await breaker.call_async(ok) == "ok"
    await fail_times(breaker, 2)
    assert breaker.state is State.CLOSED
    assert breaker.fail_count == 2


@pytest.mark.parametrize("error", [CallerError("bad input"), HTTPError(404), HTTPError(422)])
async def test_caller_errors_never_count(make_breaker, recorder, error):
    breaker = make_breaker(fail_max=1)

    async def bad_request() -> None:
        raise error

    for _ in range(5):
        with pytest.raises(type(error)):
            await breaker.call_async(bad_request)
    assert breaker.state is State.CLOSED
    assert breaker.fail_count == 0
    assert recorder.count(Outcome.IGNORED) == 5


@pytest.mark.parametrize("status", [500, 503, 429, 408])
async def test_server_errors_and_overload_statuses_count(make_breaker, status):
    breaker = make_breaker(fail_max=1)

    async def server_error() -> None:
        raise HTTPError(status)

    with pytest.raises(HTTPError):
        await breaker.call_async(server_error)
    assert breaker.state is State.OPEN


async def test_exclusions_are_configurable_per_breaker(make_breaker):
    breaker = make_breaker(fail_max=1, exclude=(KeyError,))

    async def missing() -> None:
        raise KeyError("no such session")

    with pytest.raises(KeyError):
        await breaker.call_async(missing)
    assert breaker.state is State.CLOSED

    async def not_found() -> None:
        raise HTTPError(404)

    with pytest.raises(HTTPError):  # the default rule is replaced, so a 404 now counts
        await breaker.call_async(not_found)
    assert breaker.state is State.OPEN


async def test_open_rejects_at_once_without_calling(make_breaker, clock, recorder):
    breaker = make_breaker(fail_max=1, reset_timeout=30.0)
    await fail_times(breaker, 1)
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1

    clock.advance(10.0)
    with pytest.raises(CircuitOpen) as rejected:
        await breaker.call_async(counted)
    assert calls == 0
    assert rejected.value.breaker == "dep"
    assert rejected.value.retry_after_s == pytest.approx(20.0)
    assert recorder.count(Outcome.REJECTED) == 1


async def test_each_rejection_is_a_fresh_exception(make_breaker):
    breaker = make_breaker(fail_max=1)
    await fail_times(breaker, 1)
    seen = []
    for _ in range(3):
        with pytest.raises(CircuitOpen) as rejected:
            await breaker.call_async(ok)
        seen.append(rejected.value)
    assert len({id(exc) for exc in seen}) == 3


async def test_half_open_after_the_recovery_timeout_then_closes_on_success(
    make_breaker, clock, recorder
):
    breaker = make_breaker(fail_max=1, reset_timeout=30.0)
    await fail_times(breaker, 1)
    clock.advance(29.9)
    assert breaker.state is State.OPEN
    clock.advance(0.2)
    assert breaker.state is State.HALF_OPEN
    assert await breaker.call_async(ok) == "ok"
    assert breaker.state is State.CLOSED
    assert recorder.transitions == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


async def test_a_failed_trial_reopens_for_a_full_timeout(make_breaker, clock):
    breaker = make_breaker(fail_max=2, reset_timeout=30.0)
    await fail_times(breaker, 2)
    clock.advance(31.0)
    await fail_times(breaker, 1)
    assert breaker.state is State.OPEN
    assert breaker.status().retry_after_s == pytest.approx(30.0)


async def test_success_threshold_needs_that_many_good_trials(make_breaker, clock):
    breaker = make_breaker(fail_max=1, half_open_max_calls=1, success_threshold=2)
    await fail_times(breaker, 1)
    clock.advance(31.0)
    await breaker.call_async(ok)
    assert breaker.state is State.HALF_OPEN
    await breaker.call_async(ok)
    assert breaker.state is State.CLOSED


@pytest.mark.parametrize("limit", [1, 3])
async def test_half_open_trial_limit_holds_under_100_concurrent_callers(make_breaker, clock, limit):
    breaker = make_breaker(fail_max=1, half_open_max_calls=limit)
    await fail_times(breaker, 1)
    clock.advance(31.0)
    release = asyncio.Event()
    running = 0

    async def trial() -> str:
        nonlocal running
        running += 1
        await release.wait()
        return "ok"

    tasks = [asyncio.create_task(breaker.call_async(trial)) for _ in range(100)]
    # Every task runs to its first await in one pass of the loop: rejected ones finish there.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sum(task.done() for task in tasks) == 100 - limit
    assert running == limit
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("ok") == limit
    rejected = [r for r in results if isinstance(r, CircuitOpen)]
    assert len(rejected) == 100 - limit
    assert breaker.state is State.CLOSED


async def test_a_call_past_its_timeout_is_cancelled_and_counts(make_breaker, recorder):
    breaker = make_breaker(fail_max=2, timeout=0.01)
    finished = False

    async def hang() -> None:
        nonlocal finished
        await asyncio.Event().wait()
        finished = True

    with pytest.raises(CallTimeout) as timed_out:
        await breaker.call_async(hang)
    assert isinstance(timed_out.value, TimeoutError)
    assert not finished
    assert breaker.fail_count == 1
    assert "timed out" in breaker.status().last_failure["error"]
    with pytest.raises(CallTimeout):
        await breaker.call_async(hang)
    assert breaker.state is State.OPEN


async def test_a_timeout_leaves_the_callers_task_uncancelled(make_breaker):
    breaker = make_breaker(fail_max=5, timeout=0.01)

    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(CallTimeout):
        await breaker.call_async(hang)
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0)  # would raise CancelledError if a cancel were left pending
    assert await breaker.call_async(ok) == "ok"


async def test_an_outside_cancel_of_a_timed_call_stays_a_cancel(make_breaker, recorder):
    breaker = make_breaker(fail_max=1, timeout=5.0)
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.call_async(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.count(Outcome.CANCELLED) == 1
    assert breaker.state is State.CLOSED


async def test_a_cancel_that_races_the_timeout_is_not_swallowed(make_breaker, recorder):
    breaker = make_breaker(fail_max=5, timeout=0.01)

    async def hang() -> None:
        await asyncio.Event().wait()

    async def caller() -> None:
        await breaker.call_async(hang)

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)  # the call has started and armed its 0.01 s timer
    asyncio.get_running_loop().call_later(0.02, task.cancel)
    # Block the loop so the timeout and the outside cancel fall due in the same iteration.
    time.sleep(0.05)  # noqa: ASYNC251
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.count(Outcome.CANCELLED) == 1


async def test_a_timeout_raised_by_the_dependency_itself_keeps_its_type(make_breaker):
    breaker = make_breaker(fail_max=1, timeout=5.0)

    async def own_timeout() -> None:
        raise TimeoutError("upstream read timeout")

    with pytest.raises(TimeoutError) as raised:
        await breaker.call_async(own_timeout)
    assert not isinstance(raised.value, CallTimeout)
    assert breaker.state is State.OPEN


async def test_cancellation_is_not_a_dependency_failure(make_breaker, clock, recorder):
    breaker = make_breaker(fail_max=1)
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.call_async(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is State.CLOSED
    assert breaker.fail_count == 0
    assert recorder.count(Outcome.CANCELLED) == 1


async def test_a_cancelled_trial_frees_its_slot(make_breaker, clock):
    breaker = make_breaker(fail_max=1, half_open_max_calls=1)
    await fail_times(breaker, 1)
    clock.advance(31.0)
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.call_async(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is State.HALF_OPEN
    assert await breaker.call_async(ok) == "ok"
    assert breaker.state is State.CLOSED


async def test_a_late_failure_from_before_the_trip_changes_nothing(make_breaker, recorder):
    breaker = make_breaker(fail_max=2)
    gate = asyncio.Event()

    async def late_fail() -> None:
        await gate.wait()
        raise Boom("late")

    late = asyncio.create_task(breaker.call_async(late_fail))
    await asyncio.sleep(0)
    await fail_times(breaker, 2)
    assert breaker.state is State.OPEN
    gate.set()
    with pytest.raises(Boom):
        await late
    assert recorder.opens() == 1
    assert recorder.count(Outcome.FAILURE) == 3


async def test_a_late_success_from_before_the_trip_does_not_close(make_breaker):
    breaker = make_breaker(fail_max=1)
    gate = asyncio.Event()

    async def late_ok() -> str:
        await gate.wait()
        return "ok"

    late = asyncio.create_task(breaker.call_async(late_ok))
    await asyncio.sleep(0)
    await fail_times(breaker, 1)
    gate.set()
    assert await late == "ok"
    assert breaker.state is State.OPEN


async def test_a_disabled_breaker_passes_calls_through_and_still_measures(make_breaker, recorder):
    breaker = make_breaker(fail_max=1, enabled=False)
    await fail_times(breaker, 5)
    assert await breaker.call_async(ok) == "ok"
    assert breaker.state is State.CLOSED
    assert recorder.count(Outcome.FAILURE) == 5
    assert recorder.count(Outcome.SUCCESS) == 1


def test_sync_call_follows_the_same_rules(make_breaker, clock):
    breaker = make_breaker(fail_max=2)

    def sync_fail() -> None:
        raise Boom("down")

    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(sync_fail)
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: "never")
    clock.advance(31.0)
    assert breaker.call(lambda: "back") == "back"
    assert breaker.state is State.CLOSED


async def test_decorators_guard_sync_and_async_functions(make_breaker):
    breaker = make_breaker(fail_max=1)

    @breaker
    def sync_down() -> None:
        raise Boom("down")

    @breaker
    async def async_ok() -> str:
        return "ok"

    assert asyncio.iscoroutinefunction(async_ok)
    assert async_ok.__name__ == "async_ok"
    with pytest.raises(Boom):
        sync_down()
    with pytest.raises(CircuitOpen):
        await async_ok()


async def test_force_open_and_reset(make_breaker, recorder):
    breaker = make_breaker()
    breaker.force_open()
    with pytest.raises(CircuitOpen):
        await breaker.call_async(ok)
    breaker.reset()
    assert await breaker.call_async(ok) == "ok"
    assert recorder.transitions == [(State.CLOSED, State.OPEN), (State.OPEN, State.CLOSED)]


async def test_status_snapshot(make_breaker, clock):
    breaker = make_breaker(fail_max=2, reset_timeout=30.0, timeout=1.5)
    status = breaker.status()
    assert status.state is State.CLOSED
    assert status.last_failure is None
    assert status.opened_at is None
    assert status.retry_after_s == 0.0
    await fail_times(breaker, 2)
    clock.advance(5.0)
    snapshot = breaker.status().as_dict()
    assert snapshot["state"] == "open"
    assert snapshot["fail_count"] == 2
    assert snapshot["last_failure"]["error"] == "Boom: dependency down"
    assert "T" in snapshot["last_failure"]["at"]
    assert snapshot["opened_at"] is not None
    assert snapshot["retry_after_s"] == pytest.approx(25.0)
    assert (snapshot["fail_max"], snapshot["reset_timeout"], snapshot["timeout"]) == (2, 30.0, 1.5)
    assert snapshot["enabled"] is True
    assert snapshot["half_open_max_calls"] == 1
