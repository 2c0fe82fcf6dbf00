"""Fallbacks: one helper for "try it, else fall back", and what the user reads."""

from __future__ import annotations

import pytest

from resilience import DEFAULT_DEGRADED_REPLIES, CallerError, CircuitOpen, DegradedReplies
from resilience.fallbacks import call_with_fallback, fallback_on_outage, retry_phrase

pytestmark = pytest.mark.unit


async def test_success_is_not_a_fallback(make_breaker):
    async def primary() -> str:
        return "answer"

    result = await call_with_fallback(make_breaker(), primary, lambda exc: "saved")
    assert (result.value, result.from_fallback, result.error) == ("answer", False, None)


async def test_a_failure_uses_the_fallback_and_says_why(make_breaker):
    async def primary() -> str:
        raise ConnectionError("refused")

    async def fallback(exc: BaseException) -> str:
        return f"saved after {type(exc).__name__}"

    result = await call_with_fallback(make_breaker(), primary, fallback)
    assert result.value == "saved after ConnectionError"
    assert result.from_fallback
    assert not result.circuit_open


async def test_an_open_circuit_uses_the_fallback_without_calling(make_breaker):
    breaker = make_breaker()
    breaker.force_open()
    called = False

    async def primary() -> str:
        nonlocal called
        called = True
        return "answer"

    result = await call_with_fallback(breaker, primary, lambda exc: "saved")
    assert result.value == "saved"
    assert result.circuit_open
    assert isinstance(result.error, CircuitOpen)
    assert not called


async def test_caller_errors_are_not_outages_and_propagate(make_breaker):
    async def primary() -> str:
        raise CallerError("question too long")

    with pytest.raises(CallerError):
        await call_with_fallback(make_breaker(), primary, lambda exc: "saved")


@pytest.mark.parametrize(
    ("seconds", "phrase"),
    [
        (0, "in a few seconds"),
        (12, "in about 20 seconds"),
        (30, "in about 30 seconds"),
        (45, "in about 50 seconds"),
        (61, "in about a minute"),
        (300, "in about 5 minutes"),
    ],
)
def test_retry_phrase(seconds, phrase):
    assert retry_phrase(seconds) == phrase


def test_the_knowledge_base_reply_is_friendly_and_specific():
    text = DEFAULT_DEGRADED_REPLIES.reply("rag_api", 28.2)
    assert "temporarily unable to access my knowledge base" in text
    assert "automatically recovering" in text
    assert "in about 30 seconds" in text


@pytest.mark.parametrize("name", ["rag_api", "redis", "voice_processing", "something_else"])
def test_every_reply_says_it_recovers_and_shows_no_internals(name):
    text = DEFAULT_DEGRADED_REPLIES.reply(name, 15)
    assert "automatically recovering" in text
    for internal in ("Error", "Exception", "Traceback", "{", "}"):
        assert internal not in text


def test_the_catalog_can_be_replaced():
    replies = DegradedReplies({"rag_api": "Library closed, back {when}."}, generic="Busy {when}.")
    assert replies.reply("rag_api", 3) == "Library closed, back in a few seconds."
    assert replies.reply("other", 3) == "Busy in a few seconds."


async def test_fallback_on_outage_serves_clients_that_guard_themselves(make_breaker):
    breaker = make_breaker(fail_max=1)

    async def guarded_call(fn):
        return await breaker.call_async(fn)

    async def boom():
        raise ConnectionError("refused")

    async def bad():
        raise CallerError("empty question")

    result = await fallback_on_outage(breaker, guarded_call(boom), lambda exc: "saved")
    assert (result.value, result.from_fallback, result.circuit_open) == ("saved", True, False)
    result = await fallback_on_outage(breaker, guarded_call(boom), lambda exc: "apology")
    assert result.circuit_open
    breaker.reset()
    with pytest.raises(CallerError):
        await fallback_on_outage(breaker, guarded_call(bad), lambda exc: "never")
