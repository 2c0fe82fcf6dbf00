"""The index on disk: chunks, per-file records and the FAISS index, swapped in atomically.

Layout of the data directory::

    CURRENT               name of the generation in use (replaced atomically)
    gen-<time>-<id>/      one complete index: manifest.json, files.json,
                          chunks.jsonl and, unless built without a model, index.faiss

An ingest writes a whole new generation beside the old one and only then points
``CURRENT`` at it, so a crash mid-ingest leaves the previous index in use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from rag.chunking import Chunk

__all__ = [
    "FileRecord",
    "IndexStore",
    "IndexUnavailable",
    "LoadedIndex",
    "Vectors",
    "build_faiss_index",
]

FORMAT_VERSION = 1
#: Above this many chunks a flat scan passes ~8 ms a query and HNSW answers ~6x faster
#: (bench/rag_latency.py); below it, flat is exact and builds at once.
HNSW_ABOVE = 100_000
HNSW_M = 32
HNSW_EF_SEARCH = 128
HNSW_EF_CONSTRUCTION = 80

Vectors = npt.NDArray[np.float32]


class IndexUnavailable(RuntimeError):
    """The index is missing, corrupt or busy; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What was indexed from one file, to tell on re-ingest whether it changed."""

    path: str
    source: str
    digest: str
    title: str
    first: int
    count: int


@dataclass(slots=True)
class LoadedIndex:
    """A generation read back from disk."""

    directory: Path
    manifest: dict[str, Any]
    files: dict[str, FileRecord]
    chunks: list[Chunk]
    faiss_index: faiss.Index | None = field(default=None)

    @property
    def built_at(self) -> float:
        """Unix time the generation was written."""
        return float(self.manifest["built_at"])

    def vectors_of(self, record: FileRecord) -> Vectors:
        """The stored embeddings of one file's chunks (reused when it did not change)."""
        assert self.faiss_index is not None
        return np.asarray(
            self.faiss_index.reconstruct_n(record.first, record.count), dtype=np.float32
        )


def build_faiss_index(vectors: Vectors) -> faiss.Index:
    """Inner product over normalised vectors (= cosine): flat, or HNSW for big corpora."""
    dim = vectors.shape[1]
    index: faiss.Index
    if len(vectors) > HNSW_ABOVE:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(vectors)
    return index


class IndexStore:
    """Reads and writes index generations under one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.pointer = data_dir / "CURRENT"

    def rebuild_hint(self) -> str:
        """The command that (re)builds this index."""
        return f"NOVA_RAG_DATA_DIR={self.data_dir} python -m rag ingest knowledge/"

    def current_generation(self) -> str | None:
        """The name of the generation in use, or None before the first ingest."""
        try:
            return self.pointer.read_text().strip() or None
        except FileNotFoundError:
            return None

    def exists(self) -> bool:
        """Whether an index has been written here."""
        return self.pointer.is_file()

    def load(self, *, mmap: bool = False) -> LoadedIndex:
        """Read the current generation; ``mmap`` maps the FAISS file read-only (serving)."""
        if not self.pointer.is_file():
            raise IndexUnavailable(
                f"no index in {self.data_dir} ({self.pointer} is missing); "
                f"build one with: {self.rebuild_hint()}"
            )
        directory = self.data_dir / self.pointer.read_text().strip()
        try:
            manifest = json.loads((directory / "manifest.json").read_text())
            if manifest.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT_VERSION}")
            files = {
                record["path"]: FileRecord(**record)
                for record in json.loads((directory / "files.json").read_text())
            }
            with (directory / "chunks.jsonl").open(encoding="utf-8") as handle:
                chunks = [Chunk(**json.loads(line)) for line in handle]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise IndexUnavailable(
                f"index in {directory} is unreadable ({exc}); rebuild it with: "
                f"{self.rebuild_hint()}"
            ) from exc
        index = None
        if manifest.get("embedding") is not None:
            index = self._read_faiss(directory / "index.faiss", mmap=mmap)
            if index.ntotal != len(chunks):
                raise IndexUnavailable(
                    f"{directory / 'index.faiss'} holds {index.ntotal} vectors for "
                    f"{len(chunks)} chunks; rebuild it with: {self.rebuild_hint()}"
                )
        return LoadedIndex(directory, manifest, files, chunks, index)

    def _read_faiss(self, path: Path, *, mmap: bool) -> faiss.Index:
        flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
        try:
            return faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
            raise IndexUnavailable(
                f"{path} is missing or corrupt ({reason}); rebuild it with: {self.rebuild_hint()}"
            ) from exc

    def write(
        self,
        chunks: Sequence[Chunk],
        files: Sequence[FileRecord],
        vectors: Vectors | None,
        embedding: dict[str, Any] | None,
    ) -> Path:
        """Write a new generation and make it current; returns its directory."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        staging = self.data_dir / f".staging-{name}"
        staging.mkdir()
        try:
            index_type = None
            if vectors is not None:
                index = build_faiss_index(vectors)
                index_type = type(index).__name__
                faiss.write_index(index, str(staging / "index.faiss"))
            with (staging / "chunks.jsonl").open("w", encoding="utf-8") as handle:
                for chunk in chunks:
                    handle.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
            _write_json(staging / "files.json", [asdict(record) for record in files])
            _write_json(
                staging / "manifest.json",
                {
                    "format": FORMAT_VERSION,
                    "built_at": time.time(),
                    "documents": len(files),
                    "chunks": len(chunks),
                    "embedding": embedding,
                    "index_type": index_type,
                },
            )
            for path in staging.iterdir():
                _fsync(path)
            directory = self.data_dir / name
            staging.rename(directory)
            pointer_tmp = self.data_dir / f".CURRENT-{name}"
            pointer_tmp.write_text(name + "\n")
            _fsync(pointer_tmp)
            os.replace(pointer_tmp, self.pointer)
            _fsync(self.data_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._drop_old(keep=name)
        return directory

    def _drop_old(self, keep: str) -> None:
        """Remove older generations and leftovers of crashed ingests."""
        for path in self.data_dir.iterdir():
            if path.name == keep or not path.name.startswith(("gen-", ".staging-", ".CURRENT-")):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the data directory's ingest lock; a second ingest fails fast."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / ".ingest.lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise IndexUnavailable(f"another ingest is writing {self.data_dir}") from exc
            yield


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
