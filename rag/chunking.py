"""Splitting documents into overlapping chunks on heading and sentence boundaries.

A chunk is a run of whole sentences from one section, about ``target_words`` long, that
repeats the last sentences of the chunk before it (``overlap_words``) so a fact on a
boundary is whole in at least one chunk. MiniLM reads at most 256 tokens (~180 words),
so chunks stay under that.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from rag.documents import Document

__all__ = ["Chunk", "chunk_document", "split_sentences"]

TARGET_WORDS = 110
OVERLAP_WORDS = 30
MAX_SENTENCE_WORDS = 80

# A sentence ends at . ! ? (and closing quotes or brackets) before whitespace and an
# uppercase letter, digit or opening quote; or at a paragraph break.
_SENTENCE_END = re.compile(r"(?<=[.!?])([\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n")
_ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|etc|vs|Dr|Mr|Mrs|Ms|Fig|No)\.$")


@dataclass(frozen=True, slots=True)
class Chunk:
    """A passage of one document, with where it came from."""

    source: str
    title: str
    heading: str
    text: str
    position: int

    def indexed_text(self) -> str:
        """What retrieval sees: the title and heading give a passage its topic."""
        context = " - ".join(part for part in (self.title, self.heading) if part)
        return f"{context}: {self.text}" if context else self.text


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences, keeping abbreviations such as "e.g." inside them."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        closers = match.group(1) or ""  # closing quotes/brackets belong to the sentence
        piece = text[start : match.start() + len(closers)].strip()
        if piece and _ABBREVIATIONS.search(piece.rstrip("\"')]")) and "\n" not in match.group():
            continue
        if piece:
            sentences.append(" ".join(piece.split()))
        start = match.end()
    tail = " ".join(text[start:].split())
    if tail:
        sentences.append(tail)
    return [part for sentence in sentences for part in _split_long(sentence)]


def _split_long(sentence: str) -> Iterator[str]:
    """Cut a run-on "sentence" (a table row, a list without stops) into pieces."""
    words = sentence.split()
    for i in range(0, len(words), MAX_SENTENCE_WORDS):
        yield " ".join(words[i : i + MAX_SENTENCE_WORDS])


def chunk_document(
    document: Document, target_words: int = TARGET_WORDS, overlap_words: int = OVERLAP_WORDS
) -> list[Chunk]:
    """Chunks of every section of ``document``, numbered in reading order."""
    chunks: list[Chunk] = []
    for section in document.sections:
        for text in _pack(split_sentences(section.text), target_words, overlap_words):
            chunks.append(
                Chunk(document.source, document.title, section.heading, text, len(chunks))
            )
    return chunks


def _pack(sentences: list[str], target_words: int, overlap_words: int) -> Iterator[str]:
    """Group sentences into chunks of about ``target_words``, overlapping at the seams."""
    current: list[str] = []
    words = 0
    fresh = 0  # sentences in ``current`` not yet emitted in a previous chunk
    for sentence in sentences:
        length = len(sentence.split())
        if current and fresh and words + length > target_words:
            yield " ".join(current)
            current, words = _tail(current, overlap_words)
            fresh = 0
        current.append(sentence)
        words += length
        fresh += 1
    if fresh:
        yield " ".join(current)


def _tail(sentences: list[str], overlap_words: int) -> tuple[list[str], int]:
    """The last sentences of a chunk, up to ``overlap_words``, to start the next one."""
    kept: list[str] = []
    words = 0
    for sentence in reversed(sentences):
        length = len(sentence.split())
        if words + length > overlap_words:
            break
        kept.insert(0, sentence)
        words += length
    return kept, words
