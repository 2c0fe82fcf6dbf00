"""The async client the assistant uses to ask the RAG service, through the ``rag_api`` breaker.

Failures are sorted where they happen: connection errors, timeouts, 5xx and malformed
replies become ``RagUnavailable`` (the breaker counts them); 4xx become ``RagRejected``, a
caller error that passes through without counting. One pooled connection set is shared
by every turn.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from resilience import Breaker, CallerError, DependencyError
from resilience.errors import TRANSIENT_CLIENT_STATUSES

__all__ = ["RagAnswer", "RagClient", "RagRejected", "RagUnavailable", "Source"]

DEFAULT_URL = "http://127.0.0.1:8002"
CONNECT_TIMEOUT_S = 2.0


class RagUnavailable(DependencyError):
    """The service could not answer: down, hung, failing (5xx) or replying nonsense."""


class RagRejected(CallerError):
    """The service refused the question (4xx); ``message`` is its explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"knowledge service refused the question ({status}): {message}")
        self.status_code = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Source:
    """A passage the answer came from."""

    source: str
    title: str
    heading: str
    score: float
    text: str


@dataclass(frozen=True, slots=True)
class RagAnswer:
    """The service's reply to one question."""

    answer: str
    sources: tuple[Source, ...]
    answered_by: str
    fallback_reason: str | None
    took_ms: float


class RagClient:
    """Asks the RAG service over HTTP; every call goes through ``breaker``."""

    def __init__(
        self,
        breaker: Breaker,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float | None = None,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        read = timeout or breaker.config.timeout or 10.0
        self.breaker = breaker
        # Requests beyond ``max_connections`` queue here, not in httpx's pool: httpcore
        # rescans every queued request against every connection whenever one comes free,
        # which at a thousand queued questions costs far more CPU than the questions.
        self._slots = asyncio.Semaphore(max_connections)
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(read, connect=min(read, CONNECT_TIMEOUT_S)),
            # Every connection stays open between requests: a busy client reconnecting
            # for most requests spends its time on TCP handshakes.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

    async def query(self, question: str, top_k: int = 4) -> RagAnswer:
        """Ask a question; raises ``RagUnavailable``, ``RagRejected`` or ``CircuitOpen``."""
        body = await self.breaker.call_async(
            self._request, "POST", "/query", {"question": question, "top_k": top_k}
        )
        try:
            return RagAnswer(
                answer=str(body["answer"]),
                sources=tuple(
                    Source(
                        source=str(s["source"]),
                        title=str(s.get("title", "")),
                        heading=str(s.get("heading", "")),
                        score=float(s.get("score", 0.0)),
                        text=str(s.get("text", "")),
                    )
                    for s in body.get("sources", [])
                ),
                answered_by=str(body.get("answered_by", "extractive")),
                fallback_reason=body.get("fallback_reason"),
                took_ms=float(body.get("took_ms", 0.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RagUnavailable(f"knowledge service sent a malformed answer: {exc!r}") from exc

    async def health(self) -> dict[str, Any]:
        """The service's ``/health`` body (not guarded: for status pages and probes)."""
        return await self._request("GET", "/health", None)

    async def _request(
        self, method: str, path: str, payload: dict[str, Any] | None
    ) -> dict[str, Any]:
        try:
            async with self._slots:
                response = await self._client.request(method, path, json=payload)
        except httpx.TransportError as exc:
            raise RagUnavailable(f"knowledge service unreachable: {exc!r}") from exc
        status = response.status_code
        if 400 <= status < 500 and status not in TRANSIENT_CLIENT_STATUSES:
            raise RagRejected(status, _error_text(response))
        if status >= 400:
            raise RagUnavailable(f"knowledge service failed ({status}): {_error_text(response)}")
        try:
            body = response.json()
        except ValueError as exc:
            raise RagUnavailable("knowledge service sent a reply that is not JSON") from exc
        if not isinstance(body, dict):
            raise RagUnavailable("knowledge service sent a reply that is not a JSON object")
        return body

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.text[:200])
    except (ValueError, AttributeError):
        return response.text[:200]
