"""How fast the knowledge service answers, and how its indexes scale to a large corpus.

Three parts, printed as tables (information only: nothing here fails):

1. Index build: ``python -m rag ingest knowledge`` into a temporary data directory, timed
   as a whole (model load included), with the chunk count and the generation's size on disk.
2. Service latency: the real ``python -m rag serve`` on a free port, queried over HTTP with
   ``httpx.AsyncClient`` at 1, 10 and 50 requests in flight, cycling through the questions
   in ``tests/data/rag_questions.jsonl``: client-side p50/p95/max, requests/s and the
   server's own median ``took_ms``. Once in the default hybrid mode, once in the BM25-only
   lite mode (``NOVA_RAG_RETRIEVAL=bm25``, same index). The client runs on the same machine.
3. Scale: a synthetic corpus of random unit vectors (dim 384, ``default_rng(0)``) with
   queries that are noisy copies of corpus vectors, searched with ``IndexFlatIP`` and
   ``IndexHNSWFlat`` (rag.store's M, efConstruction, efSearch): build time, serialized size,
   single-query latency on one thread (as the service searches) and HNSW recall@10 against
   the exact flat results. Both at the size of ``knowledge/`` and at 100,000 chunks. Then
   BM25 (``rag.retrieval.bm25_tokens`` + ``bm25s``) over synthetic texts of about 60 words
   drawn from the words of ``knowledge/``, queried with the labelled questions.

The service and ingest run with no ``NOVA_*`` variables from the environment (defaults, no
language model), so the figures are retrieval plus the extractive answer.

Run from the repository root::

    .venv/bin/python bench/rag_latency.py          # about 5 min on 2 cores
    .venv/bin/python bench/rag_latency.py --quick  # about 1 min, smaller and noisy (for tests)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import faiss
import httpx
import numpy as np
import numpy.typing as npt
from processes import ROOT, clean_env, ingest, rag_service
from report import closing, section

from rag.retrieval import bm25_tokens
from rag.store import HNSW_ABOVE, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M

QUESTIONS = ROOT / "tests" / "data" / "rag_questions.jsonl"

#: Requests in flight at once, per level.
CONCURRENCY = (1, 10, 50)
#: Retrieval modes served, default first.
MODES = ("hybrid", "bm25")
WARMUP_REQUESTS = 10
REQUEST_TIMEOUT_S = 60.0

DIM = 384
K = 10
#: Gaussian noise added to a corpus vector to make a query (norm about NOISE before
#: renormalising: cosine to its source about 0.9, far above any other random vector).
NOISE = 0.5
#: Searches run untimed before the timed ones, per index.
WARMUP_SEARCHES = 5
#: Words per synthetic BM25 text: uniform in this range (mean 60).
TEXT_WORDS = (45, 76)

FLAT = "IndexFlatIP"
HNSW = "IndexHNSWFlat"

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Settings:
    """How big a run: requests per concurrency level, synthetic corpus and query counts."""

    requests: int
    synthetic: int
    queries: int


FULL = Settings(requests=300, synthetic=100_000, queries=200)
QUICK = Settings(requests=40, synthetic=20_000, queries=50)


@dataclass(frozen=True)
class Built:
    """The ingested ``knowledge/`` index."""

    seconds: float
    documents: int
    chunks: int
    index_type: str
    files: dict[str, int]
    generation: Path


@dataclass(frozen=True)
class Level:
    """One concurrency level against the service."""

    concurrency: int
    requests: int
    latencies_ms: list[float]
    server_ms: list[float]
    wall_s: float


@dataclass(frozen=True)
class IndexRun:
    """One FAISS index over one synthetic corpus size."""

    size: int
    kind: str
    build_s: float
    nbytes: int
    latencies_ms: list[float]
    recall: float | None


@dataclass(frozen=True)
class Bm25Run:
    """BM25 over one synthetic corpus size."""

    size: int
    tokenize_s: float
    index_s: float
    latencies_ms: list[float]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def load_questions() -> list[str]:
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


# -- 1. index build ---------------------------------------------------------------------


def ingest_knowledge(data_dir: Path) -> Built:
    seconds = ingest(data_dir, env=clean_env())
    generation = data_dir / (data_dir / "CURRENT").read_text().strip()
    manifest = json.loads((generation / "manifest.json").read_text())
    files = {path.name: path.stat().st_size for path in sorted(generation.iterdir())}
    return Built(
        seconds,
        int(manifest["documents"]),
        int(manifest["chunks"]),
        str(manifest["index_type"]),
        files,
        generation,
    )


# -- 2. service latency -----------------------------------------------------------------


async def ask(client: httpx.AsyncClient, url: str, question: str) -> tuple[float, float]:
    """One query: client-side ms and the server's ``took_ms``."""
    started = time.perf_counter()
    reply = await client.post(url + "/query", json={"question": question})
    elapsed = (time.perf_counter() - started) * 1000
    if reply.status_code != 200:
        raise RuntimeError(f"/query answered {reply.status_code}: {reply.text[:300]}")
    return elapsed, float(reply.json()["took_ms"])


async def run_level(
    client: httpx.AsyncClient, url: str, questions: list[str], concurrency: int, total: int
) -> Level:
    """``total`` requests, ``concurrency`` at a time, cycling through ``questions``."""
    counter = itertools.count()
    latencies: list[float] = []
    server: list[float] = []

    async def worker() -> None:
        while (i := next(counter)) < total:
            elapsed, took = await ask(client, url, questions[i % len(questions)])
            latencies.append(elapsed)
            server.append(took)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return Level(concurrency, total, latencies, server, wall)


async def load_test(url: str, questions: list[str], settings: Settings) -> list[Level]:
    most = max(CONCURRENCY)
    limits = httpx.Limits(max_connections=most, max_keepalive_connections=most)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        for question in questions[-WARMUP_REQUESTS:]:
            await ask(client, url, question)
        return [
            await run_level(client, url, questions, concurrency, settings.requests)
            for concurrency in CONCURRENCY
        ]


def measure_service(
    data_dir: Path, questions: list[str], settings: Settings
) -> dict[str, tuple[dict[str, Any], list[Level]]]:
    results = {}
    for mode in MODES:
        env = {**clean_env(), "NOVA_RAG_RETRIEVAL": mode}
        log = data_dir.parent / f"serve-{mode}.log"
        with rag_service(data_dir, log, env=env) as service:
            url, health = service.url, service.health
            if health.get("retrieval") != mode:
                raise RuntimeError(f"asked for {mode} retrieval, /health says {health}")
            results[mode] = (health, asyncio.run(load_test(url, questions, settings)))
    return results


# -- 3. scale: synthetic vectors and texts ----------------------------------------------


def normalise(rows: Vectors) -> Vectors:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def synthetic_vectors(size: int, queries: int) -> tuple[Vectors, Vectors]:
    """``size`` random unit vectors and ``queries`` noisy copies of some of them."""
    rng = np.random.default_rng(0)
    corpus = normalise(rng.standard_normal((size, DIM), dtype=np.float32))
    picks = rng.choice(size, size=min(queries, size), replace=False)
    noise = rng.standard_normal((len(picks), DIM), dtype=np.float32) * (NOISE / np.sqrt(DIM))
    return corpus, normalise(corpus[picks] + noise)


def make_index(kind: str) -> faiss.Index:
    if kind == FLAT:
        return faiss.IndexFlatIP(DIM)
    index = faiss.IndexHNSWFlat(DIM, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def search_latencies(search: Callable[[int], object], n: int) -> list[float]:
    """Milliseconds per call of ``search(i)`` for i in range(n), after a short warm-up."""
    for i in range(min(WARMUP_SEARCHES, n)):
        search(i)
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        search(i)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def one_by_one(index: faiss.Index, queries: Vectors) -> Callable[[int], object]:
    """Search query ``i`` alone, as the service searches one question at a time."""
    return lambda i: index.search(queries[i : i + 1], K)


def measure_faiss(size: int, queries_n: int, build_threads: int) -> list[IndexRun]:
    corpus, queries = synthetic_vectors(size, queries_n)
    runs = []
    exact: npt.NDArray[np.int64] | None = None
    for kind in (FLAT, HNSW):
        faiss.omp_set_num_threads(build_threads)  # as ingest builds it
        index = make_index(kind)
        started = time.perf_counter()
        index.add(corpus)
        build = time.perf_counter() - started
        nbytes = int(faiss.serialize_index(index).nbytes)
        faiss.omp_set_num_threads(1)  # as the service searches
        latencies = search_latencies(one_by_one(index, queries), len(queries))
        _, ids = index.search(queries, K)
        recall = None
        if exact is None:
            exact = ids
        else:
            hits = sum(len(set(a) & set(b)) for a, b in zip(exact, ids, strict=True))
            recall = hits / exact.size
        runs.append(IndexRun(size, kind, build, nbytes, latencies, recall))
        del index
    return runs


def knowledge_words(generation: Path) -> list[str]:
    """Every word of the indexed chunks, repeats kept (so sampling keeps their frequencies)."""
    words: list[str] = []
    with (generation / "chunks.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            words += re.findall(r"[A-Za-z][A-Za-z'-]*", json.loads(line)["text"])
    return words


def synthetic_texts(words: list[str], size: int) -> list[str]:
    rng = np.random.default_rng(0)
    vocabulary = np.asarray(words, dtype=object)
    lengths = rng.integers(*TEXT_WORDS, size=size)
    picks = rng.integers(0, len(vocabulary), size=int(lengths.sum()))
    texts = []
    start = 0
    for length in lengths:
        texts.append(" ".join(vocabulary[picks[start : start + length]]))
        start += length
    return texts


def measure_bm25(words: list[str], size: int, questions: list[str]) -> Bm25Run:
    texts = synthetic_texts(words, size)
    started = time.perf_counter()
    tokens = bm25_tokens(texts)
    tokenized = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    indexed = time.perf_counter()
    del texts, tokens

    def search(i: int) -> None:
        # as the service's lexical half: tokenize the question, then retrieve on one thread
        query = bm25_tokens([questions[i % len(questions)]])
        retriever.retrieve(query, k=K, show_progress=False, n_threads=1)

    latencies = search_latencies(search, len(questions))
    return Bm25Run(size, tokenized - started, indexed - tokenized, latencies)


# -- report -----------------------------------------------------------------------------


def mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f}"


def report_build(built: Built) -> None:
    print(
        f"Index build: python -m rag ingest knowledge -> {built.documents} documents, "
        f"{built.chunks:,} chunks, {built.index_type}"
    )
    print(f"  {built.seconds:.1f} s wall, whole process (model load + embedding + write)")
    print()
    print(f"{'generation file':<20}{'bytes':>14}{'MB':>10}")
    print("-" * 44)
    for name, size in built.files.items():
        print(f"{name:<20}{size:>14,}{mb(size):>10}")
    total = sum(built.files.values())
    print(f"{'total':<20}{total:>14,}{mb(total):>10}")


def report_service(
    results: dict[str, tuple[dict[str, Any], list[Level]]], settings: Settings
) -> None:
    print(
        f"Service latency: python -m rag serve, POST /query (top_k 4, extractive answer); "
        f"{settings.requests} requests per level after {WARMUP_REQUESTS} warm-up"
    )
    print("ms = client side (httpx.AsyncClient on the same machine); server = median took_ms")
    print()
    header = (
        f"{'mode':<8}{'concurrency':>12}{'requests':>10}{'p50 ms':>10}{'p95 ms':>10}"
        f"{'max ms':>10}{'req/s':>10}{'server ms':>11}"
    )
    print(header)
    print("-" * len(header))
    for mode, (_, levels) in results.items():
        for level in levels:
            print(
                f"{mode:<8}{level.concurrency:>12}{level.requests:>10}"
                f"{percentile(level.latencies_ms, 50):>10.1f}"
                f"{percentile(level.latencies_ms, 95):>10.1f}"
                f"{max(level.latencies_ms):>10.1f}"
                f"{level.requests / level.wall_s:>10.1f}"
                f"{percentile(level.server_ms, 50):>11.1f}"
            )


def report_faiss(runs: list[IndexRun], build_threads: int, queries: int) -> None:
    print(f"FAISS at scale: random unit vectors, dim {DIM}, {queries} noisy-copy queries, k={K}")
    print(
        f"HNSW: M={HNSW_M}, efConstruction={HNSW_EF_CONSTRUCTION}, efSearch={HNSW_EF_SEARCH} "
        f"(rag.store); build on {build_threads} OpenMP thread(s) as ingest, search on 1 "
        f"as the service"
    )
    print("recall@10 = share of the exact (flat) top 10 that HNSW returns")
    print()
    header = (
        f"{'chunks':>9}  {'index':<15}{'build s':>10}{'size MB':>10}{'p50 ms':>10}"
        f"{'p95 ms':>10}{'recall@10':>11}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        recall = "exact" if run.recall is None else f"{run.recall:.3f}"
        print(
            f"{run.size:>9,}  {run.kind:<15}{run.build_s:>10.2f}{mb(run.nbytes):>10}"
            f"{percentile(run.latencies_ms, 50):>10.3f}{percentile(run.latencies_ms, 95):>10.3f}"
            f"{recall:>11}"
        )
    print("(uniform random vectors have no clusters, the hardest case for a graph index)")


def report_bm25(runs: list[Bm25Run], words: int, queries: int) -> None:
    print(
        f"BM25 at scale: synthetic texts of {TEXT_WORDS[0]}-{TEXT_WORDS[1] - 1} words drawn "
        f"from the {words:,} words of knowledge/; {queries} labelled questions, k={K}, 1 thread"
    )
    print("build = bm25_tokens (stem, stop words) + bm25s.BM25().index; query includes tokenizing")
    print()
    header = (
        f"{'chunks':>9}  {'BM25 build s':>13}{'tokenize s':>12}{'index s':>10}"
        f"{'p50 ms':>10}{'p95 ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        print(
            f"{run.size:>9,}  {run.tokenize_s + run.index_s:>13.2f}{run.tokenize_s:>12.2f}"
            f"{run.index_s:>10.2f}{percentile(run.latencies_ms, 50):>10.3f}"
            f"{percentile(run.latencies_ms, 95):>10.3f}"
        )


def favoured(flat: IndexRun, hnsw: IndexRun) -> str:
    flat_ms = percentile(flat.latencies_ms, 50)
    hnsw_ms = percentile(hnsw.latencies_ms, 50)
    recall = hnsw.recall or 0.0
    if flat_ms <= hnsw_ms:
        return (
            f"{FLAT} (exact, and no slower: p50 {flat_ms:.3f} vs {hnsw_ms:.3f} ms; "
            f"builds in {flat.build_s:.2f} vs {hnsw.build_s:.2f} s)"
        )
    return (
        f"{HNSW} for speed ({flat_ms / hnsw_ms:.1f}x faster: p50 {hnsw_ms:.3f} vs "
        f"{flat_ms:.3f} ms) at recall@10 {recall:.3f} and a {hnsw.build_s:.1f} s build "
        f"(flat: {flat.build_s:.2f} s); {FLAT} if exact results matter more than "
        f"{flat_ms - hnsw_ms:.1f} ms a query"
    )


def report_summary(
    built: Built,
    service: dict[str, tuple[dict[str, Any], list[Level]]],
    runs: list[IndexRun],
    load_before: tuple[float, float, float],
    elapsed: float,
) -> None:
    print("Summary")
    by_size: dict[int, dict[str, IndexRun]] = {}
    for run in runs:
        by_size.setdefault(run.size, {})[run.kind] = run
    for size, kinds in by_size.items():
        print(f"  at {size:,} chunks the numbers favour {favoured(kinds[FLAT], kinds[HNSW])}")
    print(
        f"  rag.store builds {FLAT} up to HNSW_ABOVE={HNSW_ABOVE:,} chunks, {HNSW} above; "
        f"knowledge/ ({built.chunks:,} chunks) is served from "
        f"{service[MODES[0]][0].get('index', {}).get('type')}"
    )
    single = {mode: levels[0] for mode, (_, levels) in service.items()}
    print(
        "  one request at a time, p50: "
        + ", ".join(f"{mode} {percentile(v.latencies_ms, 50):.1f} ms" for mode, v in single.items())
    )
    print()
    closing(load_before, elapsed, f"faiss {faiss.__version__}, bm25s {bm25s.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short, noisy run (for tests)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()
    build_threads = faiss.omp_get_max_threads()
    questions = load_questions()
    with tempfile.TemporaryDirectory(prefix="rag-latency-") as tmp:
        data_dir = Path(tmp) / "data"
        built = ingest_knowledge(data_dir)
        report_build(built)
        section()
        service = measure_service(data_dir, questions, settings)
        report_service(service, settings)
        section()
        sizes = (built.chunks, settings.synthetic)
        runs = [
            run for size in sizes for run in measure_faiss(size, settings.queries, build_threads)
        ]
        report_faiss(runs, build_threads, settings.queries)
        section()
        words = knowledge_words(built.generation)
        bm25_runs = [measure_bm25(words, size, questions) for size in sizes]
        report_bm25(bm25_runs, len(words), len(questions))
        section()
        report_summary(built, service, runs, load_before, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
