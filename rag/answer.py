"""Writing the reply: extractive by default, from a language model when one is configured.

Extractive answers need no model beyond retrieval: the sentences of the best passage
that share most words with the question, in reading order, with their sources. When
``NOVA_LLM_BASE_URL`` is set, a model writes the answer from the same chunks through the
``llm`` breaker; if it fails or that circuit is open, the extractive answer goes out
instead and the reply says so.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Literal

from rag.chunking import split_sentences
from rag.llm import LlmWriter
from rag.retrieval import Hit, Retriever, bm25_tokens
from resilience import CircuitOpen

__all__ = ["NO_ANSWER", "Answer", "Answerer", "extractive_answer"]

logger = logging.getLogger(__name__)

NO_ANSWER = (
    "I couldn't find anything about that in my knowledge base. "
    "Try asking in other words, or about another topic."
)
#: Below this cosine similarity the best chunk is unrelated to the question.
MIN_SIMILARITY = 0.27
MAX_SENTENCES = 3
MAX_ANSWER_WORDS = 90

AnsweredBy = Literal["extractive", "llm", "none"]


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply to one question: text, the chunks behind it, and how it was written."""

    text: str
    hits: list[Hit]
    answered_by: AnsweredBy
    fallback_reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


def extractive_answer(question: str, hits: list[Hit]) -> str:
    """Up to three sentences of the best passage, those sharing most words with the question.

    Sentences stay in reading order and come from one passage, so the answer reads as
    prose; the sources list the other passages. Scoring by shared stemmed words costs well
    under a millisecond; embedding every candidate sentence cost 20-70 ms a question for
    the same choice in most passages, since a passage holds only four or five sentences.
    """
    if not hits:
        return NO_ANSWER
    sentences = split_sentences(hits[0].chunk.text)
    wanted = set(bm25_tokens([question])[0])
    # Shared words first; among equals, the earlier sentence (passages lead with the point).
    scores = [len(wanted.intersection(tokens)) for tokens in bm25_tokens(sentences)]
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    words = 0
    for i in ranked:
        length = len(sentences[i].split())
        if chosen and (len(chosen) == MAX_SENTENCES or words + length > MAX_ANSWER_WORDS):
            break
        chosen.append(i)
        words += length
    return " ".join(sentences[i] for i in sorted(chosen))


def is_relevant(hits: list[Hit]) -> bool:
    """Whether the hits have anything to do with the question.

    With embeddings, cosine similarity separates on- from off-topic questions cleanly
    (bench/rag_eval.py prints both sides); BM25 alone can only tell "no shared word".
    """
    if not hits:
        return False
    similarities = [hit.similarity for hit in hits if hit.similarity is not None]
    if similarities:
        return max(similarities) >= MIN_SIMILARITY
    return any(hit.bm25 for hit in hits)


class Answerer:
    """Retrieval plus answer writing, for the HTTP service."""

    def __init__(self, retriever: Retriever, llm: LlmWriter | None = None) -> None:
        self.retriever = retriever
        self.llm = llm

    async def answer(self, question: str, top_k: int) -> Answer:
        """Retrieve in a worker thread (CPU-bound), then write the answer."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        hits = await asyncio.to_thread(self.retriever.search, question, top_k)
        retrieved = loop.time()
        timings = {"retrieval": round((retrieved - start) * 1000, 2)}
        if not is_relevant(hits):
            return Answer(NO_ANSWER, [], "none", timings_ms=timings)
        extractive = extractive_answer(question, hits)
        if self.llm is None:
            return Answer(extractive, hits, "extractive", timings_ms=timings)
        written = loop.time()
        try:
            text = await self.llm.write(question, hits)
        except CircuitOpen as exc:
            reason = f"language model circuit open; retry in {exc.retry_after_s:.0f} s"
            return Answer(extractive, hits, "extractive", reason, timings)
        except Exception as exc:  # any model failure: the extractive answer still goes out
            logger.warning("language model failed, answering extractively: %s", exc)
            reason = f"language model failed: {type(exc).__name__}"
            return Answer(extractive, hits, "extractive", reason, timings)
        timings["llm"] = round((loop.time() - written) * 1000, 2)
        return Answer(text, hits, "llm", timings_ms=timings)
