"""The knowledge service killed, hung, failing and slow under 50 conversations."""

from __future__ import annotations

import pytest
from nova_chaos import (
    CALL_TIMEOUT_S,
    LATENCY_MARGIN_S,
    check_answered,
    check_breakers_in_replies,
    check_circuits,
    check_knowledge_fallbacks,
    check_truth_during_fault,
    run_fault,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

#: A knowledge-service fault costs a turn at most one breaker timeout, plus queueing.
BUDGET_S = CALL_TIMEOUT_S["rag_api"] + LATENCY_MARGIN_S


def check_rag_fault(run) -> None:
    check_answered(run, BUDGET_S)
    check_knowledge_fallbacks(run)
    check_breakers_in_replies(run)
    check_circuits(run)
    check_truth_during_fault(run)


async def test_rag_killed_and_restarted_by_make_up(stack):
    def restart() -> None:
        assert "rag: starting" in stack.up()  # make up again starts only what is missing

    run = await run_fault(stack, "rag SIGKILL", ("rag_api",), stack.kill_rag, restart)
    check_rag_fault(run)


async def test_rag_hung_and_resumed(stack):
    run = await run_fault(stack, "rag SIGSTOP", ("rag_api",), stack.pause_rag, stack.resume_rag)
    check_rag_fault(run)


async def test_rag_answering_500(stack):
    def fail() -> None:
        stack.rag_proxy.route_to(stack.speech.port)  # its /query always answers 500

    def recover() -> None:
        stack.rag_proxy.route_to(stack.rag_port)

    run = await run_fault(stack, "rag HTTP 500", ("rag_api",), fail, recover)
    check_rag_fault(run)


async def test_rag_slower_than_its_timeout(stack):
    def slow() -> None:
        stack.rag_proxy.latency = 1.5 * CALL_TIMEOUT_S["rag_api"]

    def fast() -> None:
        stack.rag_proxy.latency = 0.0

    run = await run_fault(
        stack, f"rag slow (+{1.5 * CALL_TIMEOUT_S['rag_api']:g} s)", ("rag_api",), slow, fast
    )
    check_rag_fault(run)
