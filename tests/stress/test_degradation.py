"""Each circuit open in turn, against all closed: what a turn costs, and that it stays away.

One ``Runtime`` as the app builds it, on a real redis-server and knowledge service, with
speech served by a stub OpenAI-compatible server (``NOVA_STT_BASE_URL``). For each case
300 conversations of one turn run at once. An open circuit is forced through the
breaker's own API (``force_open``), with a recovery time longer than the test; the one
claim asserted is the robust one: while a circuit is open, no turn reaches its dependency
(requests counted at the knowledge service's client transport, commands counted by Redis
itself, requests counted by the stub speech server). Throughput and p95 are reported.
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
import redis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from turns import Load, conversations, questions

from assistant.runtime import Runtime
from assistant.settings import AssistantSettings
from rag.client import RagClient

pytestmark = [pytest.mark.stress, pytest.mark.slow]

CONVERSATIONS = 300
#: One second of a 440 Hz tone as PCM16 at 16 kHz: speech enough to be sent to STT.
TONE = (np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2").tobytes()


class CountingTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, counting every request that goes out."""

    def __init__(self) -> None:
        self.requests = 0
        self._inner = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class SpeechStub:
    """An OpenAI-compatible transcription server that hears one question and counts requests."""

    def __init__(self, port: int) -> None:
        self.requests = 0
        self.url = f"http://127.0.0.1:{port}"
        app = Starlette(routes=[Route("/v1/audio/transcriptions", self._heard, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def _heard(self, request: Request) -> JSONResponse:
        await request.body()
        self.requests += 1
        return JSONResponse({"text": "How do I talk to Nova instead of typing?"})

    def __enter__(self) -> SpeechStub:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert time.monotonic() < deadline, "the speech stub did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture
def speech_stub(free_port):
    with SpeechStub(free_port()) as stub:
        yield stub


#: Commands the counting itself sends (connection set-up and INFO).
OWN_COMMANDS = ("cmdstat_info", "cmdstat_hello", "cmdstat_client")


def redis_commands(url: str) -> int:
    """Commands Redis has run for its clients, not counting the ones this count sends."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(
        int(value["calls"]) for name, value in stats.items() if not name.startswith(OWN_COMMANDS)
    )


@pytest.fixture
async def runtime(redis_server, knowledge_service, speech_stub, tmp_path, monkeypatch):
    for name in ("RAG_API", "REDIS", "VOICE_PROCESSING"):
        monkeypatch.setenv(f"NOVA_BREAKER_{name}_RESET_TIMEOUT", "3600")
    monkeypatch.setenv("NOVA_BREAKER_RAG_API_TIMEOUT", "120")
    monkeypatch.setenv("NOVA_BREAKER_REDIS_TIMEOUT", "60")
    settings = AssistantSettings.load(
        redis_url=redis_server.url,
        rag_url=knowledge_service.url,
        data_dir=tmp_path / "nova",
        health_port=0,
        voice_enabled=True,
        stt_base_url=speech_stub.url,
        tts_base_url=speech_stub.url,
        redis_socket_timeout=60,
    )
    runtime = Runtime.build(settings)
    transport = CountingTransport()
    runtime.rag = runtime.assistant.rag = RagClient(
        runtime.breakers["rag_api"], knowledge_service.url, transport=transport
    )
    runtime.rag_transport = transport
    await runtime.start()
    yield runtime
    await runtime.stop()


async def run(runtime: Runtime, label: str, *, voice: bool = False) -> tuple[Load, list]:
    """``CONVERSATIONS`` turns at once, one a conversation; the load and every reply."""
    assistant = runtime.assistant
    replies = []

    async def turn(session: str, text: str) -> bool:
        if voice:
            reply = (await assistant.voice_turn(session, TONE, pcm16_rate=16000)).reply
        else:
            reply = await assistant.turn(session, text)
        replies.append(reply)
        return bool(reply is not None and reply.degraded)

    load = await conversations(turn, CONVERSATIONS, [[q] for q in questions()], label)
    assert load.errors == []
    return load, replies


async def test_an_open_circuit_never_reaches_its_dependency(
    runtime, redis_server, speech_stub, figure
):
    breakers = runtime.breakers
    figures = {}

    def counts() -> tuple[int, int, int]:
        return (
            runtime.rag_transport.requests,
            redis_commands(redis_server.url),
            speech_stub.requests,
        )

    await run(runtime, "warm-up")
    # All closed: text turns, then voice turns (the stub hears a question).
    before = counts()
    figures["all closed, text"], replies = await run(runtime, "closed")
    after = counts()
    assert all(not r.degraded for r in replies)
    assert after[0] - before[0] == CONVERSATIONS  # one question each
    assert after[1] > before[1]
    figures["all closed, voice (stub STT)"], replies = await run(runtime, "closed-v", voice=True)
    assert all(r is not None and not r.degraded for r in replies)
    assert speech_stub.requests - after[2] == CONVERSATIONS

    breakers["rag_api"].force_open()
    before = counts()
    figures["rag_api open, text"], replies = await run(runtime, "rag-open")
    after = counts()
    breakers["rag_api"].reset()
    assert after[0] == before[0]  # not one request to the knowledge service
    assert all(
        r.degraded and r.fallback_source in ("answer_cache", "degraded_message") for r in replies
    )

    breakers["redis"].force_open()
    before = counts()
    figures["redis open, text"], replies = await run(runtime, "redis-open")
    after = counts()
    assert after[1] == before[1]  # not one command to Redis
    assert all(not r.degraded for r in replies)  # the knowledge service still answers
    breakers["redis"].reset()
    assert await runtime.sessions.flush()  # and the journaled turns reach Redis after

    breakers["voice_processing"].force_open()
    before = counts()
    figures["voice_processing open, voice"], replies = await run(runtime, "voice-open", voice=True)
    after = counts()
    breakers["voice_processing"].reset()
    assert after[2] == before[2]  # the speech server heard nothing
    assert all(r is not None and r.fallback_source == "voice_unavailable" for r in replies)

    base = figures["all closed, text"]
    for label, load in figures.items():
        figure(
            f"(c) {CONVERSATIONS} at once, {label}",
            f"{load.per_second:.0f} turns/s ({load.per_second / base.per_second:.2f}x closed "
            f"text), p50 {load.percentile(50) * 1000:.0f} ms, "
            f"p95 {load.percentile(95) * 1000:.0f} ms",
        )
