"""The knowledge service's ``GET /metrics``: requests, answer times and the index in use.

Its own ``CollectorRegistry``, served by the service itself (port 8002); the ``llm``
breaker's series join it when a language model is configured. The index figures are
read from the live index at each scrape, so they follow a re-ingest without a hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.answer import AnsweredBy
from rag.live import LiveIndex

__all__ = ["UNMATCHED", "CountRequests", "RagMetrics"]

#: The ``endpoint`` label of requests no route matched (kept to one value on purpose).
UNMATCHED = "unmatched"
#: Seconds; from a BM25-only answer to one written by a language model.
QUERY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30)


class RagMetrics:
    """The service's Prometheus series, on ``registry``."""

    def __init__(self, registry: CollectorRegistry, live: LiveIndex) -> None:
        self.registry = registry
        self._requests = Counter(
            "nova_rag_requests",
            "HTTP requests by route and status code.",
            ["endpoint", "status"],
            registry=registry,
        )
        queries = Histogram(
            "nova_rag_query_duration_seconds",
            "Time to answer a question (POST /query with 200), by how it was answered.",
            ["answered_by"],
            buckets=QUERY_BUCKETS,
            registry=registry,
        )
        self._queries = {source: queries.labels(source) for source in get_args(AnsweredBy)}
        registry.register(_IndexCollector(live))

    def count_request(self, endpoint: str, status: int) -> None:
        """Count one HTTP request."""
        self._requests.labels(endpoint, str(status)).inc()

    def observe_query(self, answered_by: AnsweredBy, seconds: float) -> None:
        """Time one answered question."""
        self._queries[answered_by].observe(seconds)


class CountRequests:
    """ASGI middleware: counts every HTTP request by its route's path and its status.

    The route's path (``/query``), not the URL, keeps the label small. A request is
    counted as its response starts, so a client never sees an answer its count lacks;
    one that raised counts as the 500 the server answers it with.
    """

    def __init__(self, app: ASGIApp, metrics: RagMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on and count it by the status it is answered with."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def count_and_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self._count(scope, message["status"])
            await send(message)

        try:
            await self._app(scope, receive, count_and_send)
        except Exception:
            if not started:
                self._count(scope, HTTPStatus.INTERNAL_SERVER_ERROR.value)
            raise

    def _count(self, scope: Scope, status: int) -> None:
        endpoint = getattr(scope.get("route"), "path", UNMATCHED)
        self._metrics.count_request(str(endpoint), status)


class _IndexCollector(Collector):
    """The index being served: its size, its generation and when it was built."""

    def __init__(self, live: LiveIndex) -> None:
        self._live = live

    def collect(self) -> Iterator[Metric]:
        """Read at scrape time from the answerer in use."""
        index = self._live.current.retriever.index
        yield GaugeMetricFamily(
            "nova_rag_index_documents", "Documents in the index being served.", len(index.files)
        )
        yield GaugeMetricFamily(
            "nova_rag_index_passages", "Passages in the index being served.", len(index.chunks)
        )
        yield GaugeMetricFamily(
            "nova_rag_index_built_timestamp_seconds",
            "When the index being served was built, in Unix time.",
            index.built_at,
        )
        yield InfoMetricFamily(
            "nova_rag_index",
            "The index generation being served.",
            {"generation": index.directory.name},
        )
