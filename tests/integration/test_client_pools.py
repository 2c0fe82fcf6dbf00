"""More concurrent calls than pooled connections: they wait their turn, nothing fails.

A burst of turns larger than a client's connection pool is load, not an outage, so it
must never count against a breaker.
"""

from __future__ import annotations

import asyncio

import pytest

from assistant.sessions import SessionStore, redis_client
from rag.client import RagClient
from resilience import Breaker, BreakerConfig, Outcome, State

pytestmark = pytest.mark.integration

BURST = 300


async def test_a_burst_beyond_the_redis_pool_waits_for_connections(
    redis_server, redis_breaker, recorder, tmp_path
):
    client = redis_client(redis_server.url, max_connections=3)
    store = SessionStore(client, redis_breaker, journal_dir=tmp_path)
    try:
        await asyncio.gather(*(store.get_conversation_context(f"s{i}", 5) for i in range(BURST)))
    finally:
        store._journal.close()
        await client.aclose()
    assert recorder.count(Outcome.FAILURE) == 0
    assert recorder.count(Outcome.SUCCESS) == BURST
    assert redis_breaker.state is State.CLOSED


async def test_a_burst_beyond_the_rag_pool_queues_outside_httpx(stub_server, recorder):
    stub_server.reply(200, {"answer": "yes", "sources": [], "answered_by": "extractive"}, 0.005)
    breaker = Breaker(
        BreakerConfig(name="rag_api", fail_max=3, reset_timeout=30.0, timeout=60.0),
        listeners=(recorder,),
    )
    rag = RagClient(breaker, stub_server.url, max_connections=4)
    pool = rag._client._transport._pool  # httpx's connection pool
    most_queued = 0
    done = False

    async def watch() -> None:
        nonlocal most_queued
        while not done:
            most_queued = max(most_queued, len(pool._requests))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        answers = await asyncio.gather(*(rag.query(f"question {i}") for i in range(BURST)))
    finally:
        done = True
        await watcher
        await rag.aclose()
    assert [a.answer for a in answers] == ["yes"] * BURST
    assert recorder.count(Outcome.FAILURE) == 0
    # httpx rescans its whole queue whenever a connection frees up: keep it short.
    assert 0 < most_queued <= 4
