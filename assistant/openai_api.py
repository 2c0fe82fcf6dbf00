"""OpenAI-compatible chat and audio endpoints in front of the same ``Assistant``.

curl, the OpenAI SDKs, load tools and other chat UIs can talk to Nova with it. The last
user message is the question; the session is the ``X-Session-Id`` header, else the
``user`` field, else a fresh one per request. Degraded replies are ordinary 200 answers;
the ``nova`` field says which fallback, if any, produced them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from assistant.conversation import Assistant
from assistant.reply import Reply
from assistant.voice.audio import AudioRejected
from resilience import CircuitOpen, DependencyError

__all__ = ["MODEL_ID", "openai_router"]

MODEL_ID = "nova"


class ApiError(Exception):
    """A request the endpoint cannot serve, answered in OpenAI's error format."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param

    def response(self) -> JSONResponse:
        """The error body OpenAI clients know how to read."""
        body = {
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": None,
            }
        }
        return JSONResponse(body, status_code=self.status)


def openai_router(assistant: Callable[[], Assistant]) -> APIRouter:
    """Routes under ``/v1``; ``assistant`` returns the process's assistant."""
    router = APIRouter(prefix="/v1")

    @router.get("/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "nova"}],
        }

    @router.post("/chat/completions", response_model=None)
    async def completions(request: Request) -> JSONResponse | StreamingResponse:
        try:
            body = _parse(await request.body())
            question = _question(body)
        except ApiError as exc:
            return exc.response()
        session = request.headers.get("x-session-id") or body.get("user") or uuid.uuid4().hex
        reply = await assistant().turn(str(session), question)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        extension = _extension(reply, str(session))
        if body.get("stream"):
            return StreamingResponse(
                _stream(reply, completion_id, extension),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Session-Id": str(session)},
            )
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL_ID,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(question, reply.text),
                "nova": extension,
            },
            headers={"X-Session-Id": str(session)},
        )

    @router.post("/audio/transcriptions", response_model=None)
    async def transcriptions(request: Request) -> Response:
        try:
            form = await request.form()
        except Exception as exc:  # python-multipart's parse errors have no common base
            return ApiError(400, f"send multipart/form-data with a file: {exc}").response()
        upload = form.get("file")
        # Starlette's UploadFile, what ``request.form()`` returns: FastAPI's is a subclass
        # that a parsed upload is never an instance of.
        if not isinstance(upload, UploadFile):
            return ApiError(
                400, "the form needs an audio file in the field 'file'", "file"
            ).response()
        data = await upload.read()
        try:
            text = await assistant().transcribe(data, mime=upload.content_type)
        except AudioRejected as exc:
            return ApiError(400, str(exc), "file").response()
        except Exception as exc:
            return _voice_outage(exc)
        if form.get("response_format") == "text":
            return PlainTextResponse(text)
        return JSONResponse({"text": text})

    @router.post("/audio/speech", response_model=None)
    async def speech(request: Request) -> Response:
        try:
            body = _parse(await request.body())
            text, voice = _speech_request(body)
        except ApiError as exc:
            return exc.response()
        nova = assistant()
        if nova.voice is None:
            return ApiError(503, "voice is switched off on this server").response()
        del voice  # every accepted name is the configured voice
        try:
            wav = await nova.voice.wav(text)
        except Exception as exc:
            return _voice_outage(exc)
        return Response(wav, media_type="audio/wav")

    return router


#: The voice Nova ships (piper's en_US-joe-medium).
DEFAULT_VOICE = "joe"
#: OpenAI's stock voice names map to it, so unmodified OpenAI clients work.
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
)
MAX_SPEECH_CHARS = 4096


def _speech_request(body: dict[str, Any]) -> tuple[str, str]:
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "input must be non-empty text", "input")
    if len(text) > MAX_SPEECH_CHARS:
        raise ApiError(400, f"input is over {MAX_SPEECH_CHARS} characters", "input")
    voice = str(body.get("voice") or DEFAULT_VOICE)
    if voice != DEFAULT_VOICE and voice not in OPENAI_VOICES:
        raise ApiError(400, f"unknown voice {voice!r}; use {DEFAULT_VOICE!r}", "voice")
    response_format = body.get("response_format", "wav")
    if response_format != "wav":
        raise ApiError(400, "response_format must be 'wav'", "response_format")
    return text, voice


def _voice_outage(exc: Exception) -> JSONResponse:
    """503 with the friendly message: an open circuit or a failing engine."""
    if isinstance(exc, CircuitOpen):
        message = f"voice is temporarily unavailable; retry in {exc.retry_after_s:.0f} s"
    elif isinstance(exc, DependencyError):
        message = "voice is temporarily unavailable; please try again shortly"
    else:
        raise exc
    body = {
        "error": {"message": message, "type": "service_unavailable", "param": None, "code": None}
    }
    return JSONResponse(body, status_code=503)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def _question(body: dict[str, Any]) -> str:
    """The last user message's text (string content or a list of text parts)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", "messages")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(
                    str(part.get("text", ""))
                    for part in content
                    if isinstance(part, dict) and part.get("type") == "text"
                )
            if not isinstance(content, str):
                raise ApiError(400, "the user message has no text content", "messages")
            return content
    raise ApiError(400, "messages has no user message", "messages")


def _extension(reply: Reply, session: str) -> dict[str, Any]:
    return {
        "session_id": session,
        "degraded": reply.degraded,
        "from_fallback": reply.from_fallback,
        "fallback_source": reply.fallback_source,
        "notice": reply.notice,
        "sources": [asdict(source) for source in reply.sources],
        "breakers": reply.breakers,
    }


def _usage(question: str, answer: str) -> dict[str, int]:
    """Word counts stand in for tokens: Nova has no tokenizer of its own to bill by."""
    prompt, completion = len(question.split()), len(answer.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _stream(
    reply: Reply, completion_id: str, extension: dict[str, Any]
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with ``[DONE]``."""
    created = int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for token in reply.tokens():
        yield chunk({"content": token})
    yield chunk({}, "stop", nova=extension)
    yield "data: [DONE]\n\n"
