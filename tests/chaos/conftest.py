"""Chaos fixtures: one Nova stack for the whole run, and the results table at the end.

See ``nova_chaos`` for the stack, the proxies, the stubs, the load and the checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import pytest
from child_process import RedisServer
from nova_chaos import (
    BREAKERS,
    CALL_TIMEOUT_S,
    CONVERSATIONS,
    DOCS,
    FAIL_MAX,
    RESET_TIMEOUT_S,
    RESULTS,
    ROOT,
    SPOKEN_QUESTION,
    ChaosStack,
    LoadGenerator,
    SpeechStub,
    TcpProxy,
    espeak_wav,
    free_port,
    results_table,
)


@pytest.fixture(scope="session")
def chaos_stack(tmp_path_factory, rag_ingest) -> Iterator[ChaosStack]:
    """``deploy/stack.py up`` with every port, path and dependency of its own; down after."""
    base = tmp_path_factory.mktemp("chaos")
    # BM25 only (the service's lite mode): no model to load, and a few milliseconds of CPU
    # a question, so the load leaves the app the CPU its timeouts are measured against.
    rag_ingest(
        base / "rag", *(ROOT / "knowledge" / name for name in DOCS), extra=("--no-embeddings",)
    )
    speech = espeak_wav("Here is what I found.", base / "answer.wav")
    (base / "redis").mkdir()
    redis_server = RedisServer(free_port(), base / "redis", persistent=True).start()
    rag_port = free_port()
    redis_proxy = TcpProxy(redis_server.port).start()
    rag_proxy = TcpProxy(rag_port).start()
    stub = SpeechStub(SPOKEN_QUESTION, speech).start()
    ui_port, health_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOVA_")}
    env |= {
        "NOVA_DATA_DIR": str(base / "state"),
        "NOVA_RAG_DATA_DIR": str(base / "rag"),
        "NOVA_UI_PORT": str(ui_port),
        "NOVA_HEALTH_PORT": str(health_port),
        "NOVA_RAG_PORT": str(rag_port),
        "NOVA_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/0",
        "NOVA_RAG_URL": f"http://127.0.0.1:{rag_proxy.port}",
        "NOVA_RAG_RETRIEVAL": "bm25",
        "NOVA_VOICE_ENABLED": "true",
        "NOVA_STT_BASE_URL": stub.url,
        "NOVA_TTS_BASE_URL": stub.url,
        "NOVA_UP_TIMEOUT_S": "90",
    }
    for name in BREAKERS:
        env[f"NOVA_BREAKER_{name.upper()}_RESET_TIMEOUT"] = str(RESET_TIMEOUT_S[name])
        env[f"NOVA_BREAKER_{name.upper()}_TIMEOUT"] = str(CALL_TIMEOUT_S[name])
        env[f"NOVA_BREAKER_{name.upper()}_FAIL_MAX"] = str(FAIL_MAX[name])
    stack = ChaosStack(
        env,
        base / "state",
        redis_server,
        redis_proxy,
        rag_proxy,
        stub,
        rag_port,
        ui_port,
        health_port,
    )
    try:
        started = stack.up()
        # The proxy answers PING at NOVA_REDIS_URL, so make up leaves Redis to the test.
        assert "redis: already running" in started, started
        asyncio.run(_warm_up(stack))
        yield stack
    finally:
        if stack._rag_paused:
            with contextlib.suppress(OSError):
                stack.resume_rag()
        stack.stack("down")
        stub.stop()
        rag_proxy.stop()
        redis_proxy.stop()
        redis_server.kill()


@pytest.fixture
def stack(chaos_stack) -> ChaosStack:
    """The chaos stack, with every circuit closed and every dependency up."""
    chaos_stack.wait_calm()
    return chaos_stack


async def _warm_up(stack: ChaosStack) -> None:
    """A first burst of load: connection pools fill and every question gets cached."""
    async with LoadGenerator(stack) as load:
        await load.wait_turns(4 * CONVERSATIONS, since=0.0, within=60)


def pytest_terminal_summary(terminalreporter):
    """The chaos results table, printed whether the tests passed or not."""
    if RESULTS:
        terminalreporter.section("chaos results")
        for line in results_table():
            terminalreporter.line(line)
