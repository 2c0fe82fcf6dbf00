"""Ingest on disk: incremental updates, atomic generations, the writer lock."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.embedding import Embedder
from rag.ingest import ingest
from rag.store import IndexStore, IndexUnavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("redis-basics.md", "faiss-basics.md", "nova-voice.md")


class CrashingEmbedder(Embedder):
    """The real model, made to crash after it has embedded some chunks (a killed ingest)."""

    def embed(self, texts, batch_size=32):
        super().embed(texts[:4], batch_size)
        raise RuntimeError("power cut")


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in DOCS:
        shutil.copy(ROOT / "knowledge" / name, folder / name)
    return folder


@pytest.fixture
def store(tmp_path) -> IndexStore:
    return IndexStore(tmp_path / "index")


def test_unchanged_files_keep_their_vectors_and_nothing_is_embedded_twice(corpus, store, embedder):
    steps = []
    first = ingest([corpus], store, embedder, progress=lambda done, total: steps.append(done))
    assert first.embedded == first.chunks
    assert steps[-1] == first.chunks
    before = store.load()
    vectors = {r.source: before.vectors_of(r) for r in before.files.values()}

    (corpus / "nova-voice.md").write_text("# Voice\n\nSpeak after the tone. Then wait.\n")
    second = ingest([corpus], store, embedder)
    assert len(second.updated) == 1
    assert len(second.unchanged) == 2
    assert second.embedded == 1
    after = store.load()
    for record in after.files.values():
        if not record.source.endswith("nova-voice.md"):
            assert np.array_equal(after.vectors_of(record), vectors[record.source])
    texts = [c.text for c in after.chunks if c.source.endswith("nova-voice.md")]
    assert texts == ["Speak after the tone. Then wait."]


def test_deleted_files_are_dropped_and_replace_keeps_only_the_given_paths(
    corpus, store, embedder, tmp_path
):
    ingest([corpus], store, embedder)
    (corpus / "faiss-basics.md").unlink()
    report = ingest([corpus], store, embedder)
    assert [Path(s).name for s in report.removed] == ["faiss-basics.md"]
    assert len(store.load().files) == 2

    extra = tmp_path / "extra.md"
    extra.write_text("# Extra\n\nAn extra page about kites.\n")
    assert len(ingest([extra], store, embedder).unchanged) == 2  # the others are kept
    replaced = ingest([extra], store, embedder, replace=True)
    assert len(replaced.removed) == 2
    assert [r.source for r in store.load().files.values()] == [replaced.unchanged[0]]


def test_a_crash_mid_ingest_leaves_the_previous_index_in_use(corpus, store, embedder):
    ingest([corpus], store, embedder)
    before = store.load()
    for name in DOCS:
        (corpus / name).write_text((corpus / name).read_text() + "\n\nA new closing line.\n")
    crashing = CrashingEmbedder(embedder._session, embedder._tokenizer)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest([corpus], store, crashing)
    after = store.load()
    assert after.directory == before.directory
    assert [c.text for c in after.chunks] == [c.text for c in before.chunks]


def test_a_crash_while_swapping_keeps_the_old_generation_and_cleans_up_later(
    corpus, store, embedder, monkeypatch
):
    ingest([corpus], store, embedder)
    current = store.current_generation()
    real_replace = os.replace

    def crash(src, dst):
        if Path(dst) == store.pointer:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        ingest([corpus], store, embedder)
    monkeypatch.setattr(os, "replace", real_replace)
    assert store.current_generation() == current
    assert store.load().chunks

    ingest([corpus], store, embedder)
    leftovers = [p.name for p in store.data_dir.iterdir() if p.name.startswith(("gen-", "."))]
    assert sorted(leftovers) == sorted([store.current_generation(), ".ingest.lock"])


def test_a_second_ingest_at_the_same_time_is_refused(corpus, store, embedder):
    with store.writing(), pytest.raises(IndexUnavailable, match="another ingest"):
        ingest([corpus], store, embedder)


def test_an_index_from_another_model_is_re_embedded(corpus, store, embedder):
    ingest([corpus], store, embedder)
    other = Embedder(embedder._session, embedder._tokenizer, model_name="another-model")
    report = ingest([corpus], store, other)
    assert report.embedded == report.chunks
    assert store.load().manifest["embedding"]["name"] == "another-model"


def test_unreadable_files_are_skipped_and_reported(corpus, store, embedder):
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7 nothing here")
    (corpus / "empty.txt").write_text("   \n")
    report = ingest([corpus], store, embedder)
    assert set(map(lambda s: Path(s).name, report.failed)) == {"broken.pdf", "empty.txt"}
    assert report.documents == 3
