"""Redis killed, hung and slow under 50 conversations: answers go on and no turn is lost."""

from __future__ import annotations

import pytest
from nova_chaos import (
    CALL_TIMEOUT_S,
    LATENCY_MARGIN_S,
    REDIS_CALLS_PER_TURN,
    check_answered,
    check_breakers_in_replies,
    check_circuits,
    check_knowledge_answers,
    check_sessions_in_redis,
    check_truth_during_fault,
    run_fault,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

#: A Redis fault costs each of a turn's Redis calls at most the breaker's timeout.
BUDGET_S = REDIS_CALLS_PER_TURN * CALL_TIMEOUT_S["redis"] + LATENCY_MARGIN_S


def check_redis_fault(run, stack) -> None:
    check_answered(run, BUDGET_S)
    check_knowledge_answers(run)
    check_breakers_in_replies(run)
    check_circuits(run)
    check_truth_during_fault(run)
    check_sessions_in_redis(run, stack)


async def test_redis_killed_and_restarted(stack):
    run = await run_fault(stack, "redis SIGKILL", ("redis",), stack.redis.kill, stack.redis.start)
    check_redis_fault(run, stack)


async def test_redis_hung_and_resumed(stack):
    run = await run_fault(stack, "redis SIGSTOP", ("redis",), stack.redis.pause, stack.redis.resume)
    check_redis_fault(run, stack)


async def test_redis_slower_than_its_timeout(stack):
    def slow() -> None:
        stack.redis_proxy.latency = 2 * CALL_TIMEOUT_S["redis"]

    def fast() -> None:
        stack.redis_proxy.latency = 0.0

    run = await run_fault(
        stack, f"redis slow (+{2 * CALL_TIMEOUT_S['redis']:g} s)", ("redis",), slow, fast
    )
    check_redis_fault(run, stack)
