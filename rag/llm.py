"""The optional language model: an OpenAI-compatible ``/v1/chat/completions`` server.

Ollama, vLLM, llama.cpp's server and others speak this protocol. Every request goes
through the ``llm`` breaker with its timeout, so a slow or dead model costs one timeout,
then nothing until the circuit half-opens; the caller answers extractively meanwhile.
"""

from __future__ import annotations

from typing import Any

import httpx

from rag.retrieval import Hit
from resilience import Breaker, DependencyError

__all__ = ["LlmError", "LlmWriter"]

SYSTEM_PROMPT = (
    "You are Nova, a helpful assistant. Answer the user's question using only the "
    "numbered passages given. Be brief: two to four sentences. If the passages do not "
    "answer the question, say you don't know. Do not mention the passages themselves."
)
MAX_TOKENS = 300


class LlmError(DependencyError):
    """The model answered with something that is not a completion."""


class LlmWriter:
    """Writes answers from retrieved passages with a chat-completions model."""

    def __init__(
        self, base_url: str, model: str, breaker: Breaker, api_key: str | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = breaker.config.timeout or 20.0
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        )
        self.model = model
        self.breaker = breaker

    async def write(self, question: str, hits: list[Hit]) -> str:
        """The model's answer; raises on failure or ``CircuitOpen`` when the circuit is open."""
        passages = "\n\n".join(
            f"[{n}] {hit.chunk.title}: {hit.chunk.text}" for n, hit in enumerate(hits, start=1)
        )
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Passages:\n{passages}\n\nQuestion: {question}"},
        ]
        return await self.breaker.call_async(self._complete, messages)

    async def _complete(self, messages: list[dict[str, str]]) -> str:
        response = await self._client.post(
            "/v1/chat/completions",
            json={
                "model": self.model,
                "messages": messages,
                "temperature": 0.2,
                "max_tokens": MAX_TOKENS,
                "stream": False,
            },
        )
        response.raise_for_status()
        try:
            body: Any = response.json()
            text = body["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LlmError(f"unexpected reply from the language model: {exc!r}") from exc
        if not isinstance(text, str) or not text.strip():
            raise LlmError("the language model returned an empty answer")
        return text.strip()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
