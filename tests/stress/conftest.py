"""Load on real parts: redis-server, the knowledge service and the app, on free ports.

The knowledge service serves a BM25-only index of ``knowledge/`` (no model to load, a few
milliseconds a question), so the load lands on the assistant and its breakers. Every
figure a stress test measures is listed at the end of the run ("stress figures"); no
test asserts a wall-clock time.

A burst of a thousand turns at once queues: for the knowledge service on two shared
cores that is several seconds, past the ``rag_api`` breaker's 8 s budget. The healthy
runs raise the per-call timeouts (``HEALTHY_TIMEOUTS``) so that queueing is not taken for
an outage; everything else is as shipped.
"""

from __future__ import annotations

from pathlib import Path

import processes
import pytest
from stress_load import FIGURES
from turns import HEALTHY_TIMEOUTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def figure():
    """``figure(label, text)`` adds a line to the "stress figures" section of the summary."""

    def add(label: str, text: str) -> None:
        FIGURES.append(f"{label}: {text}")

    return add


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "stress figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def lite_knowledge(tmp_path_factory, rag_ingest) -> Path:
    """A BM25-only index of all of ``knowledge/`` (serve it with NOVA_RAG_RETRIEVAL=bm25)."""
    data = tmp_path_factory.mktemp("stress-index")
    rag_ingest(data, ROOT / "knowledge", extra=("--no-embeddings",))
    return data


@pytest.fixture(scope="module")
def knowledge_service(rag_service, lite_knowledge):
    service = rag_service(lite_knowledge, NOVA_RAG_RETRIEVAL="bm25").start()
    yield service
    service.stop()


@pytest.fixture
def healthy_timeouts(monkeypatch):
    for name, value in HEALTHY_TIMEOUTS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def nova_app(tmp_path_factory, knowledge_service, module_redis_server):
    """``python -m assistant`` as ``make up`` starts it (voice off), with the healthy timeouts.

    Its Chainlit app root is a temporary copy, so nothing is written into the checkout.
    """
    with processes.nova_app(
        tmp_path_factory.mktemp("nova-app"),
        redis_url=module_redis_server.url,
        rag_url=knowledge_service.url,
        env=HEALTHY_TIMEOUTS,
    ) as app:
        yield app
