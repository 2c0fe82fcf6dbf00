"""The RAG client's failure classification, against a real service and a misbehaving one."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from rag.client import RagAnswer, RagClient, RagRejected, RagUnavailable
from resilience import Breaker, BreakerConfig, CallTimeout, CircuitOpen, Outcome, State

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, rag_ingest) -> Path:
    data = tmp_path_factory.mktemp("index")
    rag_ingest(data, ROOT / "knowledge" / "ops-circuit-breakers.md")
    return data


@pytest.fixture
def rag_breaker(clock, recorder) -> Breaker:
    config = BreakerConfig(name="rag_api", fail_max=3, reset_timeout=30.0, timeout=2.0)
    return Breaker(config, listeners=(recorder,), clock=clock)


@pytest.fixture
async def client_for(rag_breaker):
    clients: list[RagClient] = []

    def make(url: str) -> RagClient:
        clients.append(RagClient(rag_breaker, url))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


async def test_a_real_answer_comes_back_typed(rag_service, data_dir, client_for, recorder):
    client = client_for(rag_service(data_dir).start().url)
    answer = await client.query("How long does the redis breaker stay open?", top_k=2)
    assert isinstance(answer, RagAnswer)
    assert answer.answered_by == "extractive"
    assert len(answer.sources) == 2
    assert answer.sources[0].source.endswith("ops-circuit-breakers.md")
    assert answer.sources[0].title
    assert recorder.outcomes == [Outcome.SUCCESS]
    health = await client.health()
    assert health["documents"] == 1


async def test_a_refused_question_is_a_caller_error_and_never_counts(
    rag_service, data_dir, client_for, rag_breaker, recorder
):
    client = client_for(rag_service(data_dir).start().url)
    for _ in range(5):
        with pytest.raises(RagRejected) as refused:
            await client.query("   ")
    assert refused.value.status_code == 422
    assert "must not be empty" in refused.value.message
    assert rag_breaker.state is State.CLOSED
    assert recorder.count(Outcome.IGNORED) == 5


async def test_server_errors_count_and_open_the_circuit(
    stub_server, client_for, rag_breaker, recorder
):
    stub_server.reply(500, {"error": "index exploded"})
    client = client_for(stub_server.url)
    for _ in range(3):
        with pytest.raises(RagUnavailable, match="index exploded"):
            await client.query("anything")
    assert rag_breaker.state is State.OPEN
    with pytest.raises(CircuitOpen) as rejected:
        await client.query("anything")
    assert rejected.value.retry_after_s == 30.0
    assert len(stub_server.requests) == 3  # the open circuit did not call the service
    assert recorder.count(Outcome.FAILURE) == 3


@pytest.mark.parametrize(
    ("status", "body"),
    [(429, {"error": "slow down"}), (503, {"error": "starting"}), (200, "<html>oops</html>")],
)
async def test_overload_and_nonsense_count_as_failures(
    stub_server, client_for, rag_breaker, status, body
):
    stub_server.reply(status, body)
    with pytest.raises(RagUnavailable):
        await client_for(stub_server.url).query("anything")
    assert rag_breaker.fail_count == 1


async def test_a_malformed_answer_counts(stub_server, client_for, rag_breaker):
    stub_server.reply(200, {"sources": "not a list"})
    with pytest.raises(RagUnavailable, match="malformed"):
        await client_for(stub_server.url).query("anything")


async def test_a_hanging_service_is_cut_off_by_the_breaker_timeout(stub_server, recorder):
    stub_server.reply(200, {"answer": "late"}, delay=30)
    breaker = Breaker(
        BreakerConfig(name="rag_api", fail_max=3, reset_timeout=30.0, timeout=0.3),
        listeners=(recorder,),
    )
    client = RagClient(breaker, stub_server.url, timeout=10)
    try:
        with pytest.raises(CallTimeout):
            await client.query("anything")
    finally:
        await client.aclose()
    assert breaker.fail_count == 1
    assert recorder.count(Outcome.FAILURE) == 1


async def test_the_client_read_timeout_also_counts(stub_server, recorder):
    stub_server.reply(200, {"answer": "late"}, delay=30)
    breaker = Breaker(BreakerConfig(name="rag_api", fail_max=3, reset_timeout=30.0, timeout=None))
    client = RagClient(breaker, stub_server.url, timeout=0.3)
    try:
        with pytest.raises(RagUnavailable, match="ReadTimeout"):
            await client.query("anything")
    finally:
        await client.aclose()
    assert breaker.fail_count == 1


async def test_a_stopped_service_counts_then_recovers_after_restart(
    rag_service, data_dir, client_for, rag_breaker, clock
):
    service = rag_service(data_dir).start()
    client = client_for(service.url)
    await client.query("When does a breaker open?")
    service.stop(signal.SIGKILL)
    for _ in range(3):
        with pytest.raises(RagUnavailable, match="unreachable"):
            await client.query("When does a breaker open?")
    assert rag_breaker.state is State.OPEN

    service.start()
    with pytest.raises(CircuitOpen):
        await client.query("When does a breaker open?")
    clock.advance(30)
    answer = await client.query("When does a breaker open?")
    assert answer.sources
    assert rag_breaker.state is State.CLOSED
