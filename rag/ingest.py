"""Building and refreshing the index from files, re-embedding only what changed.

``ingest(paths)`` adds or updates the given files and folders and re-checks every file
indexed before: unchanged files keep their chunks and vectors, changed ones are read
again, deleted ones are dropped. With ``replace=True`` the index holds exactly ``paths``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.chunking import Chunk, chunk_document
from rag.documents import DocumentError, display_source, file_digest, find_files, read_document
from rag.embedding import Embedder
from rag.store import FileRecord, IndexStore, LoadedIndex, Vectors

__all__ = ["IngestReport", "ingest"]

logger = logging.getLogger(__name__)

#: Chunks embedded per progress step.
EMBED_STEP = 256

#: ``progress(done, total)`` after each step of embedding.
Progress = Callable[[int, int], None]


@dataclass
class IngestReport:
    """What an ingest did, for the command line and for tests."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    documents: int = 0
    chunks: int = 0
    embedded: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the terminal."""
        return (
            f"{self.documents} documents, {self.chunks} chunks "
            f"({len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.removed)} removed, "
            f"{len(self.failed)} failed; {self.embedded} chunks embedded) "
            f"in {self.seconds:.1f} s"
        )


@dataclass
class _Entry:
    record: FileRecord
    chunks: list[Chunk]
    vectors: Vectors | None


def ingest(
    paths: Iterable[Path],
    store: IndexStore,
    embedder: Embedder | None,
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Index ``paths`` into ``store``; without an embedder the index is BM25-only."""
    started = time.perf_counter()
    report = IngestReport()
    with store.writing():
        previous = store.load() if store.exists() else None
        reusable = previous if previous is not None and _same_model(previous, embedder) else None
        old_files = previous.files if previous is not None else {}
        wanted = {str(path): path for path in find_files(paths)}
        if replace:
            report.removed += [r.source for key, r in old_files.items() if key not in wanted]
        else:
            for key in old_files:
                wanted.setdefault(key, Path(key))
        entries: list[_Entry] = []
        for key, path in sorted(wanted.items(), key=lambda item: display_source(item[1])):
            entry = _read(path, old_files.get(key), reusable, report)
            if entry is not None:
                entries.append(entry)

        vectors = _embed_missing(entries, embedder, progress, report)
        chunks: list[Chunk] = []
        records: list[FileRecord] = []
        for entry in entries:
            records.append(_renumber(entry.record, first=len(chunks)))
            chunks.extend(entry.chunks)
        embedding = None if embedder is None else {"name": embedder.model_name, "dim": embedder.dim}
        store.write(chunks, records, vectors, embedding)
    report.documents, report.chunks = len(records), len(chunks)
    report.seconds = time.perf_counter() - started
    return report


def _same_model(previous: LoadedIndex, embedder: Embedder | None) -> bool:
    """Stored vectors are reusable only if they came from the same model."""
    stored = previous.manifest.get("embedding")
    if embedder is None or stored is None:
        return embedder is None
    return bool(stored["name"] == embedder.model_name and stored["dim"] == embedder.dim)


def _read(
    path: Path, old: FileRecord | None, previous: LoadedIndex | None, report: IngestReport
) -> _Entry | None:
    """One file's entry: reused when unchanged, read again when new or changed."""
    source = display_source(path)
    if not path.is_file():
        if old is not None:
            report.removed.append(old.source)
        return None
    try:
        digest = file_digest(path)
        if old is not None and old.digest == digest and previous is not None:
            first = old.first
            chunks = previous.chunks[first : first + old.count]
            vectors = previous.vectors_of(old) if previous.faiss_index is not None else None
            report.unchanged.append(source)
            return _Entry(old, chunks, vectors)
        document = read_document(path, source)
    except (OSError, DocumentError) as exc:
        report.failed[source] = str(exc)
        logger.warning("skipped %s", exc)
        return None
    chunks = chunk_document(document)
    (report.updated if old is not None else report.added).append(source)
    record = FileRecord(str(path), source, digest, document.title, 0, len(chunks))
    return _Entry(record, chunks, None)


def _embed_missing(
    entries: list[_Entry],
    embedder: Embedder | None,
    progress: Progress | None,
    report: IngestReport,
) -> Vectors | None:
    """All vectors in chunk order, embedding the chunks that have none yet."""
    if embedder is None:
        return None
    missing = [
        (entry, chunk) for entry in entries if entry.vectors is None for chunk in entry.chunks
    ]
    total = len(missing)
    fresh: list[Vectors] = []
    for start in range(0, total, EMBED_STEP):
        batch = [chunk.indexed_text() for _, chunk in missing[start : start + EMBED_STEP]]
        fresh.append(embedder.embed(batch))
        if progress is not None:
            progress(min(start + EMBED_STEP, total), total)
    report.embedded = total
    new = np.concatenate(fresh) if fresh else np.empty((0, embedder.dim), np.float32)
    offset = 0
    for entry in entries:
        if entry.vectors is None:
            entry.vectors = new[offset : offset + len(entry.chunks)]
            offset += len(entry.chunks)
    parts = [entry.vectors for entry in entries if entry.vectors is not None]
    return np.concatenate(parts) if parts else np.empty((0, embedder.dim), np.float32)


def _renumber(record: FileRecord, first: int) -> FileRecord:
    return FileRecord(record.path, record.source, record.digest, record.title, first, record.count)
