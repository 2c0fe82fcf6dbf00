"""``python -m rag`` (or ``nova-rag``): ``ingest PATH...`` builds the index, ``serve`` serves it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import faiss
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from rag.answer import Answerer
from rag.embedding import Embedder, EmbeddingModelError
from rag.ingest import ingest
from rag.live import LiveIndex
from rag.llm import LlmWriter
from rag.metrics import RagMetrics
from rag.retrieval import Retriever
from rag.service import QueryLimits, create_app
from rag.settings import RagSettings
from rag.store import IndexStore, IndexUnavailable, LoadedIndex
from resilience import Breaker, BreakerMetrics, ConfigError

logger = logging.getLogger("rag")


def build_app(settings: RagSettings) -> FastAPI:
    """Load the index (memory-mapped) and the model, and wire the service."""
    store = IndexStore(settings.rag_data_dir)
    embedder = None
    if settings.rag_retrieval != "bm25":
        embedder = Embedder.load(threads=settings.rag_threads)
    faiss.omp_set_num_threads(1)  # one query at a time per thread; requests run in parallel
    registry = CollectorRegistry()
    llm = None
    if settings.llm_base_url:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        breaker = Breaker(settings.llm_breaker())
        BreakerMetrics(registry).watch(breaker)
        llm = LlmWriter(settings.llm_base_url, settings.llm_model, breaker, api_key=key)

    def answerer(index: LoadedIndex) -> Answerer:
        check_model(index, embedder, store)
        return Answerer(Retriever(index, embedder, settings.rag_retrieval), llm)

    live = LiveIndex(store, answerer, check_every=settings.rag_reload_check_s)
    limits = QueryLimits(settings.rag_max_question_chars, settings.rag_max_top_k)
    model = None if embedder is None else {"name": embedder.model_name, "dim": embedder.dim}
    return create_app(live, limits, RagMetrics(registry, live), {"embedding_model": model})


def check_model(index: LoadedIndex, embedder: Embedder | None, store: IndexStore) -> None:
    """Refuse an index whose vectors came from another model, or from none."""
    if embedder is None:
        return
    embedding = index.manifest.get("embedding")
    if embedding is None:
        raise IndexUnavailable(
            f"the index in {index.directory} was built without embeddings; serve it with "
            f"NOVA_RAG_RETRIEVAL=bm25, or rebuild it with: {store.rebuild_hint()}"
        )
    if embedding != {"name": embedder.model_name, "dim": embedder.dim}:
        raise IndexUnavailable(
            f"the index in {index.directory} was built with {embedding['name']!r}, not "
            f"{embedder.model_name!r}; rebuild it with: {store.rebuild_hint()}"
        )


def _progress(done: int, total: int) -> None:
    print(
        f"\rembedding chunks: {done}/{total} ({100 * done // max(total, 1)}%)",
        end="",
        file=sys.stderr,
        flush=True,
    )
    if done >= total:
        print(file=sys.stderr)


def cmd_ingest(args: argparse.Namespace, settings: RagSettings) -> int:
    """Build or refresh the index from files and folders."""
    embedder = None if args.no_embeddings else Embedder.load(threads=settings.rag_threads)
    store = IndexStore(settings.rag_data_dir)
    report = ingest(args.paths, store, embedder, replace=args.replace, progress=_progress)
    for source, reason in report.failed.items():
        print(f"skipped {source}: {reason}", file=sys.stderr)
    print(f"indexed into {settings.rag_data_dir}: {report.summary()}")
    return 0


def cmd_serve(args: argparse.Namespace, settings: RagSettings) -> int:
    """Serve ``/query``, ``/health`` and ``/metrics`` until interrupted."""
    app = build_app(settings)
    host = args.host or settings.rag_host
    port = args.port if args.port is not None else settings.rag_port
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="python -m rag", description="Nova's knowledge service.")
    top.add_argument("--data-dir", type=Path, help="index directory (NOVA_RAG_DATA_DIR)")
    commands = top.add_subparsers(dest="command", required=True)
    ing = commands.add_parser("ingest", help="index Markdown, text, HTML and PDF files")
    ing.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    ing.add_argument(
        "--replace", action="store_true", help="index exactly PATHs; drop everything else"
    )
    ing.add_argument(
        "--no-embeddings", action="store_true", help="BM25 only: no model needed (lite mode)"
    )
    ing.set_defaults(run=cmd_ingest)
    srv = commands.add_parser("serve", help="serve the HTTP API")
    srv.add_argument("--host", help="bind address (NOVA_RAG_HOST, default 127.0.0.1)")
    srv.add_argument("--port", type=int, help="port (NOVA_RAG_PORT, default 8002)")
    srv.add_argument("--retrieval", choices=["hybrid", "dense", "bm25"], help="NOVA_RAG_RETRIEVAL")
    srv.set_defaults(run=cmd_serve)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit code 2 for bad settings, a missing index or a broken model."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parser().parse_args(argv)
    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["rag_data_dir"] = args.data_dir
    if getattr(args, "retrieval", None):
        overrides["rag_retrieval"] = args.retrieval
    try:
        settings = RagSettings.load(**overrides)
        return int(args.run(args, settings))
    except (ConfigError, IndexUnavailable, EmbeddingModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
