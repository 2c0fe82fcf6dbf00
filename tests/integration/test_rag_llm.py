"""Answers written by an OpenAI-compatible model, and the extractive fallback when it fails.

No language model runs on this machine, so a stub HTTP server plays the model server:
it speaks the same ``/v1/chat/completions`` protocol over real HTTP, and can fail on cue.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rag.answer import Answerer
from rag.embedding import Embedder
from rag.ingest import ingest
from rag.llm import LlmWriter
from rag.retrieval import Retriever
from rag.store import IndexStore
from resilience import Breaker, BreakerConfig, State

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "knowledge" / "ops-circuit-breakers.md"
QUESTION = "How many failures does it take to open the voice breaker?"


def completion(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


@pytest.fixture(scope="module")
def retriever(tmp_path_factory) -> Retriever:
    embedder = Embedder.load()
    store = IndexStore(tmp_path_factory.mktemp("index"))
    ingest([DOC], store, embedder)
    return Retriever(store.load(), embedder, "hybrid")


@pytest.fixture
async def writer(stub_server, clock):
    breaker = Breaker(
        BreakerConfig(name="llm", fail_max=2, reset_timeout=30.0, timeout=0.5), clock=clock
    )
    llm = LlmWriter(stub_server.url, "tiny-model", breaker, api_key="secret")
    yield llm
    await llm.aclose()


async def test_the_model_writes_the_answer_from_the_passages(retriever, writer, stub_server):
    stub_server.reply(200, completion("Two failures open it."))
    answer = await Answerer(retriever, writer).answer(QUESTION, top_k=3)
    assert answer.text == "Two failures open it."
    assert answer.answered_by == "llm"
    assert answer.fallback_reason is None
    assert len(answer.hits) == 3
    request = stub_server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    sent = request["json"]
    assert sent["model"] == "tiny-model"
    prompt = sent["messages"][-1]["content"]
    assert QUESTION in prompt
    assert answer.hits[0].chunk.text in prompt


@pytest.mark.parametrize(
    ("status", "body", "delay"),
    [
        (500, {"error": "out of memory"}, 0.0),
        (200, {"choices": []}, 0.0),
        (200, completion("   "), 0.0),
        (200, completion("too late"), 5.0),
    ],
)
async def test_a_failing_model_falls_back_to_the_extractive_answer(
    retriever, writer, stub_server, status, body, delay
):
    stub_server.reply(status, body, delay)
    extractive = await Answerer(retriever).answer(QUESTION, top_k=3)
    answer = await Answerer(retriever, writer).answer(QUESTION, top_k=3)
    assert answer.answered_by == "extractive"
    assert answer.text == extractive.text
    assert answer.fallback_reason.startswith("language model failed")
    assert writer.breaker.fail_count == 1


async def test_an_open_llm_circuit_answers_at_once_without_calling(
    retriever, writer, stub_server, clock
):
    stub_server.reply(500, {"error": "down"})
    answerer = Answerer(retriever, writer)
    for _ in range(2):
        await answerer.answer(QUESTION, top_k=3)
    assert writer.breaker.state is State.OPEN
    calls = len(stub_server.requests)
    answer = await answerer.answer(QUESTION, top_k=3)
    assert answer.answered_by == "extractive"
    assert answer.fallback_reason == "language model circuit open; retry in 30 s"
    assert len(stub_server.requests) == calls

    stub_server.reply(200, completion("Back again."))
    clock.advance(30)
    assert (await answerer.answer(QUESTION, top_k=3)).answered_by == "llm"
    assert writer.breaker.state is State.CLOSED


def test_the_service_uses_the_model_when_configured(tmp_path, rag_ingest, rag_service, stub_server):
    stub_server.reply(200, completion("Written by the model."))
    data = tmp_path / "index"
    rag_ingest(data, DOC)
    service = rag_service(
        data, NOVA_LLM_BASE_URL=stub_server.url, NOVA_LLM_MODEL="tiny-model"
    ).start()
    body = httpx.post(service.url + "/query", json={"question": QUESTION}, timeout=30).json()
    assert body["answer"] == "Written by the model."
    assert body["answered_by"] == "llm"
    health = httpx.get(service.url + "/health", timeout=10).json()
    assert health["llm"]["model"] == "tiny-model"
    assert health["llm"]["breaker"]["state"] == "closed"
