"""The speech engines failing and hanging while people talk and type to Nova."""

from __future__ import annotations

import pytest
from nova_chaos import (
    CALL_TIMEOUT_S,
    LATENCY_MARGIN_S,
    SPOKEN_QUESTION,
    check_answered,
    check_circuits,
    check_knowledge_answers,
    check_truth_during_fault,
    check_voice_outage,
    espeak_wav,
    run_fault,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

#: A speech request waits at most one breaker timeout, plus queueing.
BUDGET_S = CALL_TIMEOUT_S["voice_processing"] + LATENCY_MARGIN_S
VOICE_CONVERSATIONS = 5


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> bytes:
    """The question spoken by espeak-ng."""
    return espeak_wav(SPOKEN_QUESTION, tmp_path_factory.mktemp("voice") / "question.wav")


@pytest.mark.parametrize("mode", ["error", "hang"])
async def test_speech_engine_failing(stack, recording, mode):
    heard_before = len(stack.speech.heard_seconds)

    def fail() -> None:
        stack.speech.mode = mode

    def recover() -> None:
        stack.speech.mode = "ok"

    run = await run_fault(
        stack,
        f"voice {'HTTP 500' if mode == 'error' else 'hung'}",
        ("voice_processing",),
        fail,
        recover,
        voice_conversations=VOICE_CONVERSATIONS,
        recording=recording,
    )
    check_answered(run, BUDGET_S, kinds=("stt", "tts"))
    check_knowledge_answers(run)
    check_voice_outage(run, stack.speech.heard_seconds[heard_before:])
    check_circuits(run)
    check_truth_during_fault(run)
