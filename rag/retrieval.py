"""Finding the chunks that answer a question: BM25, embeddings, or both fused.

Hybrid (the default) ranks by reciprocal rank fusion of the two lists, which beat either
alone on paraphrased questions (bench/rag_eval.py). BM25 alone needs no model (the lite
mode); dense alone is there to compare.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import bm25s
import Stemmer

from rag.chunking import Chunk
from rag.embedding import Embedder, FloatArray
from rag.settings import Retrieval
from rag.store import LoadedIndex

__all__ = ["RRF_K", "Hit", "Retriever", "bm25_tokens"]

#: Reciprocal rank fusion constant (Cormack et al. 2009); larger flattens the ranks.
RRF_K = 60
#: Each half proposes this many times ``top_k`` candidates (at least ``MIN_CANDIDATES``).
CANDIDATE_FACTOR = 5
MIN_CANDIDATES = 30

_STEMMER = Stemmer.Stemmer("english")


def bm25_tokens(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stemmed words without English stop words, as the BM25 index sees them."""
    tokens: list[list[str]] = bm25s.tokenize(
        texts, stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )
    return tokens


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk: its fused ``score`` and, where computed, each half's own."""

    chunk: Chunk
    score: float
    similarity: float | None
    bm25: float | None


class Retriever:
    """Searches one loaded index; thread-safe for concurrent queries."""

    def __init__(self, index: LoadedIndex, embedder: Embedder | None, mode: Retrieval) -> None:
        if mode != "bm25" and (embedder is None or index.faiss_index is None):
            raise ValueError(
                f"retrieval mode {mode!r} needs the embedding model and an index built with it"
            )
        self.index = index
        self.mode: Retrieval = mode
        self.embedder = embedder if mode != "bm25" else None
        self._bm25: bm25s.BM25 | None = None
        if mode != "dense" and index.chunks:
            self._bm25 = bm25s.BM25()
            self._bm25.index(
                bm25_tokens([c.indexed_text() for c in index.chunks]), show_progress=False
            )
        self._bm25_lock = threading.Lock()

    @property
    def chunks(self) -> list[Chunk]:
        """The indexed chunks, in index order."""
        return self.index.chunks

    def search(self, question: str, top_k: int) -> list[Hit]:
        """The best ``top_k`` chunks for ``question``, best first."""
        n = len(self.index.chunks)
        if n == 0:
            return []
        wanted = min(n, max(top_k * CANDIDATE_FACTOR, MIN_CANDIDATES))
        embedder = self.embedder
        dense = self._dense(embedder.embed_query(question), wanted) if embedder else {}
        lexical = self._lexical(question, wanted) if self._bm25 is not None else {}
        if self.mode == "dense":
            ranked = sorted(dense, key=lambda i: -dense[i])
            scores = dense
        elif self.mode == "bm25":
            ranked = sorted(lexical, key=lambda i: -lexical[i])
            scores = lexical
        else:
            scores = _fuse(dense, lexical)
            ranked = sorted(scores, key=lambda i: -scores[i])
        return [
            Hit(self.index.chunks[i], scores[i], dense.get(i), lexical.get(i))
            for i in ranked[:top_k]
        ]

    def _dense(self, vector: FloatArray, wanted: int) -> dict[int, float]:
        assert self.index.faiss_index is not None
        scores, ids = self.index.faiss_index.search(vector.reshape(1, -1), wanted)
        return {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0}

    def _lexical(self, question: str, wanted: int) -> dict[int, float]:
        assert self._bm25 is not None
        tokens = bm25_tokens([question])
        if not tokens[0]:
            return {}
        with self._bm25_lock:  # bm25s keeps per-call scratch state on the retriever
            ids, scores = self._bm25.retrieve(tokens, k=wanted, show_progress=False, n_threads=1)
        return {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=True) if s > 0}


def _fuse(*rankings: dict[int, float]) -> dict[int, float]:
    """Reciprocal rank fusion: each list adds 1 / (RRF_K + rank) for every chunk in it."""
    fused: dict[int, float] = {}
    for scores in rankings:
        for rank, i in enumerate(sorted(scores, key=lambda i: -scores[i]), start=1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
    return fused
