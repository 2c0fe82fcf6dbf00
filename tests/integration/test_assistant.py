"""Whole turns against a real redis-server and a real RAG service, with both failing."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import redis

from assistant.conversation import EMPTY_MESSAGE
from assistant.runtime import Runtime
from assistant.settings import AssistantSettings
from resilience import State

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("ops-circuit-breakers.md", "nova-voice.md", "redis-basics.md")
QUESTION = "How many failures open the voice breaker?"


@pytest.fixture(scope="module")
def rag_index(tmp_path_factory, rag_ingest) -> Path:
    data = tmp_path_factory.mktemp("index")
    rag_ingest(data, *(ROOT / "knowledge" / name for name in DOCS))
    return data


@pytest.fixture
def rag(rag_service, rag_index):
    service = rag_service(rag_index).start()
    yield service
    service.stop()


@pytest.fixture
async def runtime(redis_server, rag, tmp_path, clock):
    settings = AssistantSettings.load(
        redis_url=redis_server.url,
        rag_url=rag.url,
        data_dir=tmp_path / "nova",
        health_port=0,
        voice_enabled=False,  # voice turns have their own tests
    )
    runtime = Runtime.build(settings, clock=clock)
    await runtime.start()
    yield runtime
    await runtime.stop()


def stored(redis_server, session: str) -> list[tuple[str, str]]:
    """Every turn Redis holds for ``session``, read with a plain client."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = client.keys(f"*{session}*")
        members = client.zrange(keys[0], 0, -1) if keys else []
    finally:
        client.close()
    return [(json.loads(m)["q"], json.loads(m)["a"]) for m in members]


def rag_calls(runtime: Runtime) -> float:
    return sum(
        runtime.metrics.registry.get_sample_value(
            "circuit_breaker_calls_total", {"name": "rag_api", "outcome": outcome}
        )
        or 0.0
        for outcome in ("success", "failure", "ignored", "rejected")
    )


async def test_a_conversation_keeps_its_context(runtime, redis_server):
    assistant = runtime.assistant
    first = await assistant.turn("s1", QUESTION)
    assert not first.degraded
    assert first.sources
    follow_up = await assistant.turn("s1", "and for redis?")
    assert not follow_up.degraded
    context = await runtime.sessions.get_conversation_context("s1", 5)
    assert [turn.question for turn in context] == [QUESTION, "and for redis?"]
    assert stored(redis_server, "s1") == [
        (QUESTION, first.text),
        ("and for redis?", follow_up.text),
    ]
    assert follow_up.breakers == {
        "rag_api": "closed",
        "redis": "closed",
        "voice_processing": "closed",
    }


@pytest.mark.parametrize("text", ["", "   \n\t", "x" * 2001])
async def test_bad_input_gets_a_friendly_reply_and_goes_nowhere(runtime, redis_server, text):
    reply = await runtime.assistant.turn("s2", text)
    assert not reply.degraded
    assert reply.text == EMPTY_MESSAGE or "2,000" in reply.text
    assert rag_calls(runtime) == 0
    assert stored(redis_server, "s2") == []


async def test_killing_redis_mid_conversation_loses_nothing(runtime, redis_server, clock):
    assistant = runtime.assistant
    sent = []
    for question in (QUESTION, "What does half-open mean?"):
        sent.append((question, (await assistant.turn("s3", question)).text))
    redis_server.kill()
    for question in ("Can I speak to Nova?", "What is a TTL?", "Does Redis persist data?"):
        reply = await assistant.turn("s3", question)
        assert not reply.degraded  # the knowledge service still answers
        sent.append((question, reply.text))
    context = await runtime.sessions.get_conversation_context("s3", 5)
    assert [t.question for t in context] == [q for q, _ in sent]

    redis_server.start()  # an empty Redis, as a crashed cache comes back
    clock.advance(16)
    assert await runtime.sessions.flush()
    assert stored(redis_server, "s3") == sent
    assert runtime.breakers["redis"].state is State.CLOSED


async def test_a_hung_redis_opens_its_circuit_and_turns_stay_quick(runtime, redis_server):
    assistant = runtime.assistant
    await assistant.turn("s4", QUESTION)
    redis_server.pause()
    try:
        durations = []
        for _ in range(4):
            started = time.monotonic()
            reply = await assistant.turn("s4", QUESTION)
            durations.append(time.monotonic() - started)
            assert reply.text
        assert runtime.breakers["redis"].state is State.OPEN
        started = time.monotonic()
        await assistant.turn("s4", "What is a TTL?")
        assert time.monotonic() - started < 5  # an open circuit does not wait on Redis at all
        assert max(durations) < 10
    finally:
        redis_server.resume()


async def test_a_stopped_rag_service_gets_the_degraded_reply(runtime, rag):
    rag.stop(signal.SIGKILL)
    reply = await runtime.assistant.turn("s5", "What does the redis breaker do?")
    assert reply.degraded
    assert reply.from_fallback
    assert reply.fallback_source == "degraded_message"
    assert "temporarily unable to access my knowledge base" in reply.text
    assert "automatically recovering" in reply.text
    assert reply.notice
    assert "Traceback" not in reply.text
    replies = runtime.metrics.registry.get_sample_value
    assert replies("nova_replies_total", {"fallback_source": "degraded_message"}) == 1
    assert replies("nova_replies_total", {"fallback_source": "none"}) == 0


async def test_a_cached_answer_is_served_while_the_rag_service_is_down(runtime, rag):
    fresh = await runtime.assistant.turn("s6", QUESTION)
    rag.stop(signal.SIGKILL)
    saved = await runtime.assistant.turn("s7", "  how many failures open the voice breaker  ")
    assert saved.from_fallback
    assert saved.fallback_source == "answer_cache"
    assert saved.text == fresh.text
    assert [s.source for s in saved.sources] == [s.source for s in fresh.sources]
    assert "saved answer" in saved.notice


async def test_the_rag_circuit_opens_then_closes_after_recovery(runtime, rag, clock):
    rag.stop(signal.SIGKILL)
    for _ in range(3):
        await runtime.assistant.turn("s8", "What is half-open?")
    assert runtime.breakers["rag_api"].state is State.OPEN
    health = await runtime.assistant.turn("s8", "/health")
    assert "`rag_api` | `open`" in health.text
    rejected = await runtime.assistant.turn("s8", "What is half-open?")
    assert "in about 30 seconds" in rejected.text

    rag.start()
    clock.advance(30)
    recovered = await runtime.assistant.turn("s8", "What is half-open?")
    assert not recovered.degraded
    assert runtime.breakers["rag_api"].state is State.CLOSED


async def test_session_clear_forgets_the_conversation(runtime, redis_server):
    await runtime.assistant.turn("s9", QUESTION)
    reply = await runtime.assistant.turn("s9", "/session clear")
    assert "forgotten" in reply.text
    assert await runtime.sessions.get_conversation_context("s9", 5) == []
    assert stored(redis_server, "s9") == []
