"""The knowledge service's /metrics over real HTTP: requests, answer times, the index, ``llm``.

No language model runs here, so a stub HTTP server plays one, as in test_rag_llm.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

QUESTIONS = (
    "How many failures open the rag_api breaker?",
    "What happens while a circuit is half-open?",
    "How long does the redis circuit stay open?",
    "Which errors never count as failures?",
    "What does the voice breaker guard?",
)

ANSWERED_BY = ("extractive", "llm", "none")


@pytest.fixture(scope="module")
def service(rag_service, lite_index):
    return rag_service(lite_index, NOVA_RAG_RETRIEVAL="bm25").start()


def ask(url: str, question: str) -> dict:
    response = httpx.post(url + "/query", json={"question": question}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def scrape(url: str) -> httpx.Response:
    response = httpx.get(url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response


def requests(samples: dict, endpoint: str, status: int) -> float:
    key = ("nova_rag_requests_total", (("endpoint", endpoint), ("status", str(status))))
    return samples.get(key, 0.0)


def answered(samples: dict, answered_by: str) -> float:
    key = ("nova_rag_query_duration_seconds_count", (("answered_by", answered_by),))
    return samples[key]


def test_metrics_count_every_query_and_describe_the_index(service, metric_samples, check_metrics):
    before = metric_samples(scrape(service.url).text)
    for question in QUESTIONS:
        ask(service.url, question)
    bad = httpx.post(service.url + "/query", json={"question": ""}, timeout=10)
    assert bad.status_code == 422
    assert httpx.get(service.url + "/nope", timeout=10).status_code == 404
    text = scrape(service.url).text
    after = metric_samples(text)

    def more(endpoint: str, status: int) -> float:
        return requests(after, endpoint, status) - requests(before, endpoint, status)

    n = len(QUESTIONS)
    assert more("/query", 200) == n
    assert more("/query", 422) == 1
    assert more("unmatched", 404) == 1
    assert more("/metrics", 200) == 1  # the first scrape; this one is counted as it answers
    growth = {by: answered(after, by) - answered(before, by) for by in ANSWERED_BY}
    assert growth == {"extractive": n, "llm": 0, "none": 0}
    assert after[("nova_rag_query_duration_seconds_sum", (("answered_by", "extractive"),))] > 0

    health = httpx.get(service.url + "/health", timeout=10).json()
    assert after[("nova_rag_index_documents", ())] == health["documents"] == 1
    assert after[("nova_rag_index_passages", ())] == health["chunks"]
    generation = Path(health["index"]["path"]).name
    assert after[("nova_rag_index_info", (("generation", generation),))] == 1
    built = after[("nova_rag_index_built_timestamp_seconds", ())]
    assert abs(time.time() - health["index"]["age_s"] - built) < 5
    assert not any(name.startswith(("circuit_breaker_", "resilience4j_")) for name, _ in after)
    check_metrics(text)


def test_the_llm_breaker_series_join_when_a_model_is_configured(
    rag_service, lite_index, stub_server, metric_samples, check_metrics
):
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Three."}}]}
    stub_server.reply(200, reply)
    service = rag_service(
        lite_index, NOVA_RAG_RETRIEVAL="bm25", NOVA_LLM_BASE_URL=stub_server.url
    ).start()
    for question in QUESTIONS[:2]:
        assert ask(service.url, question)["answered_by"] == "llm"
    stub_server.reply(500, {"error": "out of memory"})
    for question in QUESTIONS[2:]:  # three failures open the llm circuit
        assert ask(service.url, question)["answered_by"] == "extractive"
    text = scrape(service.url).text
    samples = metric_samples(text)

    llm = (("name", "llm"),)
    assert samples[("circuit_breaker_state", llm)] == 1
    assert samples[("circuit_breaker_calls_total", (*llm, ("outcome", "success")))] == 2
    assert samples[("circuit_breaker_calls_total", (*llm, ("outcome", "failure")))] == 3
    open_ = (("name", "llm"), ("state", "open"))
    assert samples[("resilience4j_circuitbreaker_state", open_)] == 1
    ok = (("kind", "successful"), ("name", "llm"))
    assert samples[("resilience4j_circuitbreaker_calls_seconds_count", ok)] == 2
    assert answered(samples, "llm") == 2
    assert answered(samples, "extractive") == 3
    check_metrics(text)
