"""Redis fixtures for the session store and answer cache (the breaker and a fail-fast
client), and a small index for tests that need a knowledge service but not its model."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.sessions import redis_client
from resilience import Breaker, BreakerConfig


@pytest.fixture
def redis_breaker(clock, recorder) -> Breaker:
    """The ``redis`` breaker as Nova ships it, on the fake clock: 5 failures, 15 s."""
    config = BreakerConfig(name="redis", fail_max=5, reset_timeout=15.0, timeout=1.0)
    return Breaker(config, listeners=(recorder,), clock=clock)


@pytest.fixture
async def redis(redis_server):
    """A fail-fast client (0.5 s socket timeouts, no retries) for the server under test."""
    client = redis_client(redis_server.url, socket_timeout=0.5, connect_timeout=0.5)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def lite_index(tmp_path_factory, rag_ingest) -> Path:
    """A BM25-only index of one runbook page: a service on it starts without the model.

    Serve it with ``NOVA_RAG_RETRIEVAL=bm25``.
    """
    data = tmp_path_factory.mktemp("lite-index")
    page = Path(__file__).resolve().parents[2] / "knowledge" / "ops-circuit-breakers.md"
    rag_ingest(data, page, extra=("--no-embeddings",))
    return data
