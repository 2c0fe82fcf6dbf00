"""Many conversations at once, all healthy: every turn answered, none degraded, all stored.

(a) 1500 conversations through ``Assistant.turn`` in this process, built as the app
builds it (``Runtime``) against a real redis-server and knowledge service; (b) 1000
conversations over HTTP against ``python -m assistant``. Each conversation asks one
question from ``tests/data/rag_questions.jsonl`` and then a short follow-up, and every
conversation starts at the same moment.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from stress_load import FOLLOW_UP, Load, questions, stored_questions

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
    try:
        asked = questions()
        assistant = runtime.assistant
        load = Load()
        degraded: list[str] = []
        go = asyncio.Event()

        async def conversation(i: int) -> None:
            await go.wait()
            for text in (asked[i % len(asked)], FOLLOW_UP):
                started = load.enter()
                try:
                    reply = await assistant.turn(f"c{i}", text)
                except Exception as exc:
                    load.errors.append(repr(exc))
                    load.in_flight -= 1
                    continue
                load.leave(started)
                if reply.degraded or not reply.text:
                    degraded.append(f"c{i}: {reply.fallback_source} {reply.text[:80]}")

        tasks = [asyncio.create_task(conversation(i)) for i in range(IN_PROCESS_CONVERSATIONS)]
        await asyncio.sleep(0)
        load = Load()
        go.set()
        await asyncio.gather(*tasks)
        load.done()
        figure(f"(a) {IN_PROCESS_CONVERSATIONS} conversations in-process", load.summary())

        assert load.errors == []
        assert degraded == []
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
    sessions = [f"c{i}" for i in range(IN_PROCESS_CONVERSATIONS)]
    stored = stored_questions(redis_server.url, sessions)
    wrong = {
        session: turns
        for i, (session, turns) in enumerate(stored.items())
        if turns != [asked[i % len(asked)], FOLLOW_UP]
    }
    assert wrong == {}


async def chat(http: aiohttp.ClientSession, url: str, session: str, text: str) -> dict:
    body = {"model": "nova", "user": session, "messages": [{"role": "user", "content": text}]}
    async with http.post(f"{url}/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_1000_conversations_over_http(nova_app, module_redis_server, figure):
    asked = questions()
    load = Load()
    degraded: list[str] = []
    go = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=HTTP_CONVERSATIONS)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await chat(http, nova_app.url, "warm-up", asked[0])

        async def conversation(i: int) -> None:
            await go.wait()
            for text in (asked[i % len(asked)], FOLLOW_UP):
                started = load.enter()
                try:
                    reply = await chat(http, nova_app.url, f"h{i}", text)
                except Exception as exc:
                    load.errors.append(repr(exc))
                    load.in_flight -= 1
                    continue
                load.leave(started)
                nova = reply["nova"]
                if nova["degraded"] or not reply["choices"][0]["message"]["content"]:
                    degraded.append(f"h{i}: {nova['fallback_source']}")

        tasks = [asyncio.create_task(conversation(i)) for i in range(HTTP_CONVERSATIONS)]
        await asyncio.sleep(0)
        load = Load()
        go.set()
        await asyncio.gather(*tasks)
        load.done()
    figure(f"(b) {HTTP_CONVERSATIONS} conversations over HTTP", load.summary())

    assert load.errors == []
    assert degraded == []
    assert len(load.latencies) == 2 * HTTP_CONVERSATIONS
    assert load.most_in_flight == HTTP_CONVERSATIONS
    # Writes that queued behind another are replayed by the app within a second or so.
    sessions = [f"h{i}" for i in range(HTTP_CONVERSATIONS)]
    expected = {s: [asked[i % len(asked)], FOLLOW_UP] for i, s in enumerate(sessions)}
    deadline = asyncio.get_running_loop().time() + 60
    while (stored := stored_questions(module_redis_server.url, sessions)) != expected:
        assert asyncio.get_running_loop().time() < deadline, {
            s: t for s, t in stored.items() if t != expected[s]
        }
        await asyncio.sleep(0.2)
