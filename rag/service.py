"""The HTTP API: ``POST /query``, ``GET /health`` and ``GET /metrics``, with clear 4xx errors.

The request body is parsed here rather than by FastAPI's validation so every mistake gets
one plain sentence (``{"error": "...", "field": "..."}``) and the status that fits it:
415 for a body that is not JSON, 400 for broken JSON, 413 for an oversized body, 422 for
a question or ``top_k`` out of bounds. Nothing reaches the user as a traceback.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from rag.answer import Answer
from rag.live import LiveIndex
from rag.metrics import CountRequests, RagMetrics

__all__ = ["BadRequest", "QueryLimits", "create_app"]

logger = logging.getLogger(__name__)

#: Bodies above this are refused before parsing.
MAX_BODY_BYTES = 64 * 1024


class QueryRequest(BaseModel):
    """The ``POST /query`` body (documented in the OpenAPI schema)."""

    question: str = Field(description="What the user asked.", examples=["How do I add documents?"])
    top_k: int = Field(default=4, description="How many sources to return.")


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Bounds on a query, from the settings."""

    max_question_chars: int = 2000
    max_top_k: int = 20


class BadRequest(Exception):
    """Bad input from the caller: answered with ``status`` and a one-line message."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def parse_query(body: bytes, content_type: str, limits: QueryLimits) -> tuple[str, int]:
    """The question and top_k from a request body, or ``BadRequest`` saying what is wrong."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise BadRequest(
            415, f"send JSON with Content-Type: application/json, not {content_type!r}"
        )
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request body is over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(400, 'body must be a JSON object like {"question": "..."}')
    unknown = sorted(set(data) - {"question", "top_k"})
    if unknown:
        raise BadRequest(422, f"unknown field(s): {', '.join(unknown)}", unknown[0])
    question = data.get("question")
    if not isinstance(question, str):
        raise BadRequest(422, "question is required and must be a string", "question")
    question = question.strip()
    if not question:
        raise BadRequest(422, "question must not be empty", "question")
    if len(question) > limits.max_question_chars:
        raise BadRequest(
            422,
            f"question is {len(question)} characters; the limit is {limits.max_question_chars}",
            "question",
        )
    top_k = data.get("top_k", 4)
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise BadRequest(422, "top_k must be a whole number", "top_k")
    if not 1 <= top_k <= limits.max_top_k:
        raise BadRequest(422, f"top_k must be between 1 and {limits.max_top_k}", "top_k")
    return question, top_k


def create_app(
    live: LiveIndex,
    limits: QueryLimits,
    metrics: RagMetrics,
    health: dict[str, Any] | None = None,
) -> FastAPI:
    """The FastAPI app; ``health`` holds the static part of ``/health`` (the model)."""
    app = FastAPI(title="Nova knowledge service", version="1", docs_url="/docs")
    app.add_middleware(CountRequests, metrics=metrics)
    static_health = dict(health or {})

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": exc.message, "field": exc.field}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": "internal error; see the service log"}, status_code=500)

    @app.post(
        "/query",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": QueryRequest.model_json_schema()}},
            }
        },
    )
    async def query(request: Request) -> dict[str, Any]:
        started = time.perf_counter()
        declared = int(request.headers.get("content-length") or 0)
        if declared > MAX_BODY_BYTES:
            raise BadRequest(413, f"request body is over {MAX_BODY_BYTES} bytes")
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        question, top_k = parse_query(body, content_type, limits)
        answerer = await live.answerer()
        answer = await answerer.answer(question, top_k)
        took_s = time.perf_counter() - started
        metrics.observe_query(answer.answered_by, took_s)
        return _render(answer, took_s)

    @app.get("/health")
    async def health_check() -> dict[str, Any]:
        answerer = await live.answerer()
        index = answerer.retriever.index
        llm = answerer.llm
        return {
            "status": "ok",
            "documents": len(index.files),
            "chunks": len(index.chunks),
            "retrieval": answerer.retriever.mode,
            **static_health,
            "index": {
                "path": str(index.directory),
                "type": index.manifest.get("index_type"),
                "built_at": index.built_at,
                "age_s": round(time.time() - index.built_at, 1),
            },
            "llm": None
            if llm is None
            else {"model": llm.model, "breaker": llm.breaker.status().as_dict()},
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_text() -> Response:
        answerer = await live.answerer()
        if answerer.llm is not None:
            answerer.llm.breaker.status()  # moves a due circuit to half-open before the scrape
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _render(answer: Answer, took_s: float) -> dict[str, Any]:
    return {
        "answer": answer.text,
        "sources": [
            {
                "source": hit.chunk.source,
                "title": hit.chunk.title,
                "heading": hit.chunk.heading,
                "score": round(hit.score, 4),
                "text": hit.chunk.text,
            }
            for hit in answer.hits
        ],
        "answered_by": answer.answered_by,
        "fallback_reason": answer.fallback_reason,
        "took_ms": round(took_s * 1000, 2),
    }
