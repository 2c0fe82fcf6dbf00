"""Many conversations at once, all healthy: every turn answered, none degraded, all stored.

(a) 1500 conversations through ``Assistant.turn`` in this process, built as the app
builds it (``Runtime``) against a real redis-server and knowledge service; (b) 1000
conversations over HTTP against ``python -m assistant``. Each conversation asks one
question from ``tests/data/rag_questions.jsonl`` and then a short follow-up, and every
conversation starts at the same moment.
"""

from __future__ import annotations

import asyncio

import pytest
from stress_load import stored_questions
from turns import FOLLOW_UP, chat_turn, conversations, http_session, questions

from assistant.runtime import Runtime
from assistant.settings import AssistantSettings

pytestmark = [pytest.mark.stress, pytest.mark.slow]

IN_PROCESS_CONVERSATIONS = 1500
HTTP_CONVERSATIONS = 1000


async def test_1500_conversations_in_process(
    redis_server, knowledge_service, tmp_path, healthy_timeouts, figure
):
    settings = AssistantSettings.load(
        redis_url=redis_server.url,
        rag_url=knowledge_service.url,
        data_dir=tmp_path / "nova",
        health_port=0,
        voice_enabled=False,
    )
    runtime = Runtime.build(settings)
    await runtime.start()
    asked = questions()
    texts = [[question, FOLLOW_UP] for question in asked]
    try:

        async def turn(session: str, text: str) -> bool:
            reply = await runtime.assistant.turn(session, text)
            return reply.degraded or not reply.text

        load = await conversations(turn, IN_PROCESS_CONVERSATIONS, texts, "c")
        figure(f"(a) {IN_PROCESS_CONVERSATIONS} conversations in-process", load.summary())

        assert load.errors == []
        assert load.degraded == 0
        assert len(load.latencies) == 2 * IN_PROCESS_CONVERSATIONS
        assert load.most_in_flight == IN_PROCESS_CONVERSATIONS
        assert {b.name: b.state.value for b in runtime.breakers} == {
            "rag_api": "closed",
            "redis": "closed",
            "voice_processing": "closed",
        }
        assert await runtime.sessions.flush()  # writes queued behind another go out now
    finally:
        await runtime.stop()
    sessions = [f"c-{i}" for i in range(IN_PROCESS_CONVERSATIONS)]
    stored = stored_questions(redis_server.url, sessions)
    wrong = {
        session: turns
        for i, (session, turns) in enumerate(stored.items())
        if turns != [asked[i % len(asked)], FOLLOW_UP]
    }
    assert wrong == {}


async def test_1000_conversations_over_http(nova_app, module_redis_server, figure):
    asked = questions()
    async with http_session(HTTP_CONVERSATIONS) as http:
        turn = chat_turn(http, nova_app.url)
        await turn("warm-up", asked[0])
        texts = [[question, FOLLOW_UP] for question in asked]
        load = await conversations(turn, HTTP_CONVERSATIONS, texts, "h")
    figure(f"(b) {HTTP_CONVERSATIONS} conversations over HTTP", load.summary())

    assert load.errors == []
    assert load.degraded == 0
    assert len(load.latencies) == 2 * HTTP_CONVERSATIONS
    assert load.most_in_flight == HTTP_CONVERSATIONS
    # Writes that queued behind another are replayed by the app within a second or so.
    sessions = [f"h-{i}" for i in range(HTTP_CONVERSATIONS)]
    expected = {s: [asked[i % len(asked)], FOLLOW_UP] for i, s in enumerate(sessions)}
    deadline = asyncio.get_running_loop().time() + 60
    while (stored := stored_questions(module_redis_server.url, sessions)) != expected:
        assert asyncio.get_running_loop().time() < deadline, {
            s: t for s, t in stored.items() if t != expected[s]
        }
        await asyncio.sleep(0.2)
