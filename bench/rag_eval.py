"""Retrieval quality on the labelled questions: recall@1, recall@5 and MRR@10 per mode.

Indexes ``knowledge/`` into a temporary directory, asks every question in
``tests/data/rag_questions.jsonl`` with BM25 alone, embeddings alone and both fused, and
prints the figures side by side. A question counts as found at rank r when its labelled
source is the r-th distinct document among the retrieved chunks.

It also prints how far apart on-topic and off-topic questions sit in cosine similarity,
which is what the service's "I couldn't find anything" threshold stands on.

Run from the repository root::

    .venv/bin/python bench/rag_eval.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from rag.answer import MIN_SIMILARITY
from rag.embedding import Embedder
from rag.ingest import ingest
from rag.retrieval import Retriever
from rag.settings import Retrieval
from rag.store import IndexStore

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "tests" / "data" / "rag_questions.jsonl"
OFF_TOPIC = ROOT / "tests" / "data" / "off_topic_questions.txt"
MODES: tuple[Retrieval, ...] = ("bm25", "dense", "hybrid")
CHUNKS_PER_QUESTION = 40


def document_ranking(retriever: Retriever, question: str) -> list[str]:
    """Distinct sources in the order their best chunk ranks."""
    ranking: list[str] = []
    for hit in retriever.search(question, CHUNKS_PER_QUESTION):
        if hit.chunk.source not in ranking:
            ranking.append(hit.chunk.source)
    return ranking


def evaluate(retriever: Retriever, labelled: list[dict[str, str]]) -> dict[str, float]:
    ranks = []
    for item in labelled:
        ranking = document_ranking(retriever, item["question"])
        ranks.append(ranking.index(item["source"]) + 1 if item["source"] in ranking else None)
    n = len(ranks)
    return {
        "recall@1": sum(r == 1 for r in ranks) / n,
        "recall@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr@10": sum(1 / r for r in ranks if r is not None and r <= 10) / n,
    }


def best_similarity(retriever: Retriever, question: str) -> float:
    hits = retriever.search(question, 4)
    return max((h.similarity or 0.0) for h in hits) if hits else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=ROOT / "knowledge")
    args = parser.parse_args(argv)
    labelled = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    embedder = Embedder.load()
    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore(Path(tmp))
        report = ingest([args.corpus], store, embedder)
        index = store.load(mmap=True)
        print(
            f"{len(labelled)} questions over {report.documents} documents, "
            f"{report.chunks} chunks ({embedder.model_name})"
        )
        print()
        print(f"{'mode':<8}{'recall@1':>10}{'recall@5':>10}{'MRR@10':>10}")
        retrievers = {mode: Retriever(index, embedder, mode) for mode in MODES}
        for mode, retriever in retrievers.items():
            scores = evaluate(retriever, labelled)
            print(
                f"{mode:<8}{scores['recall@1']:>10.2f}{scores['recall@5']:>10.2f}"
                f"{scores['mrr@10']:>10.2f}"
            )
        dense = retrievers["dense"]
        on = [best_similarity(dense, item["question"]) for item in labelled]
        off_questions = [q for q in OFF_TOPIC.read_text().splitlines() if q.strip()]
        off = [best_similarity(dense, q) for q in off_questions]
        print()
        print(f"best cosine similarity (threshold for an answer: {MIN_SIMILARITY})")
        for name, values in (("on-topic", on), ("off-topic", off)):
            below = sum(v < MIN_SIMILARITY for v in values)
            print(
                f"  {name:<10} n={len(values):<4} min {min(values):.2f}  "
                f"median {statistics.median(values):.2f}  max {max(values):.2f}  "
                f"below threshold: {below}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
