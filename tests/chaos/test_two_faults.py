"""Redis and the knowledge service down at once: degraded answers, and still nothing lost."""

from __future__ import annotations

import pytest
from nova_chaos import (
    CALL_TIMEOUT_S,
    LATENCY_MARGIN_S,
    REDIS_CALLS_PER_TURN,
    check_answered,
    check_breakers_in_replies,
    check_circuits,
    check_knowledge_fallbacks,
    check_sessions_in_redis,
    check_truth_during_fault,
    run_fault,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

#: A turn may meet both breakers' timeouts before the circuits open.
BUDGET_S = (
    REDIS_CALLS_PER_TURN * CALL_TIMEOUT_S["redis"] + CALL_TIMEOUT_S["rag_api"] + LATENCY_MARGIN_S
)


async def test_redis_and_rag_killed_together(stack):
    def kill_both() -> None:
        stack.redis.kill()
        stack.kill_rag()

    def restart_both() -> None:
        stack.redis.start()
        assert "rag: starting" in stack.up()

    run = await run_fault(
        stack, "redis + rag SIGKILL", ("redis", "rag_api"), kill_both, restart_both
    )
    check_answered(run, BUDGET_S)
    check_knowledge_fallbacks(run)
    check_breakers_in_replies(run)
    check_circuits(run)
    check_truth_during_fault(run)
    check_sessions_in_redis(run, stack)
