"""Chunking: sentence splitting and packing sentences into overlapping chunks per section."""

from __future__ import annotations

import itertools

import pytest

from rag.chunking import (
    MAX_SENTENCE_WORDS,
    OVERLAP_WORDS,
    TARGET_WORDS,
    Chunk,
    chunk_document,
    split_sentences,
)
from rag.documents import Document, Section

pytestmark = pytest.mark.unit

# Sentence lengths that exercise every packing case: tails of several sentences, of one,
# and none (a last sentence longer than the overlap).
LENGTHS = [7, 12, 5, 9, 14, 6, 3, 11, 18, 4, 8, 16, 2, 10, 13, 5, 20, 7, 6, 9]


def sentence(tag: str, number: int, length: int) -> str:
    """A unique sentence of exactly ``length`` words that starts uppercase and ends in '.'."""
    words = [f"{tag.capitalize()}{number}"] + [f"{tag}{number}w{i}" for i in range(1, length)]
    return " ".join(words) + "."


def sentences_for(tag: str, lengths: list[int] = LENGTHS) -> list[str]:
    return [sentence(tag, n, length) for n, length in enumerate(lengths)]


def word_count(text: str) -> int:
    return len(text.split())


def make_document(*sections: tuple[str, list[str]], title: str = "Handbook") -> Document:
    return Document(
        source="kb/handbook.md",
        title=title,
        sections=tuple(Section(heading, " ".join(body)) for heading, body in sections),
    )


def pieces(chunk: Chunk) -> list[str]:
    return split_sentences(chunk.text)


# --- split_sentences ------------------------------------------------------------------


def test_split_sentences_basic_punctuation():
    text = "The cat sat. It purred! Was it happy? 42 is the answer. It costs 3.5 euros."
    assert split_sentences(text) == [
        "The cat sat.",
        "It purred!",
        "Was it happy?",
        "42 is the answer.",
        "It costs 3.5 euros.",
    ]


def test_split_sentences_collapses_whitespace_and_handles_empty_text():
    assert split_sentences("One   two\nthree.  Four\tfive.") == ["One two three.", "Four five."]
    assert split_sentences("") == []
    assert split_sentences("   \n\n  ") == []


def test_split_sentences_does_not_split_before_lowercase():
    assert split_sentences("See section 2. then continue reading.") == [
        "See section 2. then continue reading."
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Use a tool, e.g. Python or Rust, for this. Then stop.",
            ["Use a tool, e.g. Python or Rust, for this.", "Then stop."],
        ),
        (
            "Pick one, i.e. The best one. Done.",
            ["Pick one, i.e. The best one.", "Done."],
        ),
        (
            "Dr. Smith met Mr. Jones. They talked.",
            ["Dr. Smith met Mr. Jones.", "They talked."],
        ),
        (
            "As shown in Fig. 3 the curve rises. Next.",
            ["As shown in Fig. 3 the curve rises.", "Next."],
        ),
    ],
)
def test_split_sentences_keeps_abbreviations_inside_a_sentence(text, expected):
    assert split_sentences(text) == expected


def test_split_sentences_splits_at_paragraph_breaks():
    text = "A heading without a stop\n\nfirst paragraph continues here\n \n Last one."
    assert split_sentences(text) == [
        "A heading without a stop",
        "first paragraph continues here",
        "Last one.",
    ]


def test_split_sentences_paragraph_break_wins_over_an_abbreviation():
    assert split_sentences("Tools, e.g.\n\nNext part.") == ["Tools, e.g.", "Next part."]


def test_split_sentences_cuts_run_on_text_into_bounded_pieces():
    words = [f"w{i}" for i in range(2 * MAX_SENTENCE_WORDS + 40)]
    run_on = " ".join(words)
    parts = split_sentences(run_on + ". Short one.")
    assert [word_count(p) for p in parts] == [MAX_SENTENCE_WORDS, MAX_SENTENCE_WORDS, 40, 2]
    assert " ".join(parts[:3]) == run_on + "."
    assert parts[3] == "Short one."


def test_split_sentences_keeps_closing_quotes_and_brackets():
    text = 'He said "Stop." Then he left. (See Fig. 3.) Next one.'
    assert split_sentences(text) == [
        'He said "Stop."',
        "Then he left.",
        "(See Fig. 3.)",
        "Next one.",
    ]


# --- chunk_document -------------------------------------------------------------------


def test_short_section_gives_one_chunk_with_all_its_text():
    document = make_document(("Intro", ["Short first sentence.", "Short second one."]))
    chunks = chunk_document(document)
    assert chunks == [
        Chunk(
            source="kb/handbook.md",
            title="Handbook",
            heading="Intro",
            text="Short first sentence. Short second one.",
            position=0,
        )
    ]


def test_empty_section_gives_no_chunks():
    document = make_document(("Empty", []), ("Full", ["Only sentence."]))
    chunks = chunk_document(document)
    assert [(c.heading, c.text, c.position) for c in chunks] == [("Full", "Only sentence.", 0)]


def test_chunks_never_cross_sections_and_carry_their_heading():
    alpha, beta, gamma = sentences_for("alpha"), sentences_for("beta"), ["Tiny gamma."]
    document = make_document(("Alpha", alpha), ("Beta", beta), ("", gamma))
    chunks = chunk_document(document, target_words=40, overlap_words=15)
    by_heading = {"Alpha": set(alpha), "Beta": set(beta), "": set(gamma)}
    assert [c.heading for c in chunks] == sorted(
        (c.heading for c in chunks), key=["Alpha", "Beta", ""].index
    )
    assert {c.heading for c in chunks} == set(by_heading)
    for chunk in chunks:
        assert set(pieces(chunk)) <= by_heading[chunk.heading], chunk
        assert (chunk.source, chunk.title) == ("kb/handbook.md", "Handbook")
    assert sum(c.heading == "Alpha" for c in chunks) > 1  # the seam was really exercised


@pytest.mark.parametrize(("target", "overlap"), [(40, 15), (25, 10), (60, 0), (30, 30)])
def test_chunk_size_is_at_most_target_plus_one_sentence(target, overlap):
    body = sentences_for("s")
    chunks = chunk_document(make_document(("S", body)), target_words=target, overlap_words=overlap)
    longest = max(word_count(s) for s in body)
    assert len(chunks) > 1
    for chunk in chunks:
        assert word_count(chunk.text) <= target + longest, chunk
        assert word_count(chunk.text) <= max(target, overlap + longest), chunk


def test_default_chunks_stay_within_the_target_even_with_run_on_text():
    run_on = " ".join(f"r{i}" for i in range(500))  # no stops: cut into 80-word pieces
    body = [*sentences_for("d"), run_on, *sentences_for("e")]
    chunks = chunk_document(make_document(("D", body)))
    assert len(chunks) > 3
    assert max(word_count(c.text) for c in chunks) <= TARGET_WORDS
    assert OVERLAP_WORDS + MAX_SENTENCE_WORDS <= TARGET_WORDS  # what makes that hold


def expected_overlap(previous: list[str], overlap_words: int) -> list[str]:
    """The longest run of trailing sentences of ``previous`` that fits in the overlap."""
    kept: list[str] = []
    for text in reversed(previous):
        if word_count(" ".join([text, *kept])) > overlap_words:
            break
        kept.insert(0, text)
    return kept


@pytest.mark.parametrize(
    ("target", "overlap", "longest_tail"), [(40, 15, 2), (25, 10, 1), (50, 25, 3)]
)
def test_consecutive_chunks_overlap_by_the_trailing_sentences_that_fit(
    target, overlap, longest_tail
):
    body = sentences_for("o")
    chunks = chunk_document(make_document(("O", body)), target_words=target, overlap_words=overlap)
    assert len(chunks) > 2
    sizes = []
    for previous, following in itertools.pairwise(chunks):
        before, after = pieces(previous), pieces(following)
        shared = expected_overlap(before, overlap)
        assert after[: len(shared)] == shared, (previous.text, following.text)
        # right after the repeated tail comes a sentence the previous chunk did not have
        assert after[len(shared)] not in before
        assert body.index(after[len(shared)]) == body.index(before[-1]) + 1
        sizes.append(len(shared))
    assert max(sizes) == longest_tail  # the cases exercised are the ones intended
    assert any(word_count(pieces(c)[-1]) > overlap for c in chunks[:-1]) == (0 in sizes)


@pytest.mark.parametrize(("target", "overlap"), [(40, 15), (30, 30), (15, 12), (10, 10)])
def test_every_chunk_brings_a_sentence_the_previous_one_lacked(target, overlap):
    body = sentences_for("n")
    chunks = chunk_document(make_document(("N", body)), target_words=target, overlap_words=overlap)
    assert len(chunks) > 3
    for previous, following in itertools.pairwise(chunks):
        assert set(pieces(following)) - set(pieces(previous)), (previous.text, following.text)


def test_zero_overlap_repeats_nothing():
    body = sentences_for("z")
    chunks = chunk_document(make_document(("Z", body)), target_words=30, overlap_words=0)
    flat = [s for chunk in chunks for s in pieces(chunk)]
    assert flat == body


@pytest.mark.parametrize(("target", "overlap"), [(40, 15), (25, 10), (15, 5), (200, 30)])
def test_every_sentence_appears_in_order_and_nothing_is_lost(target, overlap):
    alpha, beta = sentences_for("alpha"), sentences_for("beta", LENGTHS[::-1])
    document = make_document(("Alpha", alpha), ("Beta", beta))
    chunks = chunk_document(document, target_words=target, overlap_words=overlap)
    for heading, body in (("Alpha", alpha), ("Beta", beta)):
        seen = [s for c in chunks if c.heading == heading for s in pieces(c)]
        assert list(dict.fromkeys(seen)) == body


def test_positions_count_up_from_zero_across_sections():
    document = make_document(
        ("A", sentences_for("a")), ("B", ["Lonely."]), ("C", sentences_for("c"))
    )
    chunks = chunk_document(document, target_words=30, overlap_words=10)
    assert len(chunks) > 5
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert [c.heading for c in chunks].count("B") == 1


def test_indexed_text_includes_title_and_heading():
    chunk = Chunk("kb/a.md", "Handbook", "Install", "Run the installer.", 0)
    assert chunk.indexed_text() == "Handbook - Install: Run the installer."
    assert Chunk("s", "Handbook", "", "Body.", 0).indexed_text() == "Handbook: Body."
    assert Chunk("s", "", "Install", "Body.", 0).indexed_text() == "Install: Body."
    assert Chunk("s", "", "", "Body.", 0).indexed_text() == "Body."


def test_chunk_document_indexed_text_of_real_chunks():
    document = make_document(("Setup", ["Install it first."]), title="Guide")
    (chunk,) = chunk_document(document)
    assert chunk.indexed_text() == "Guide - Setup: Install it first."
