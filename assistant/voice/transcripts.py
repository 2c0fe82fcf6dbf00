"""How far a transcript is from what was said: the word error rate.

The voice tests and ``bench/voice.py`` judge the speech engines by this one measure.
"""

from __future__ import annotations

import re

__all__ = ["transcript_words", "word_error_rate"]


def transcript_words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped, apostrophes kept ("don't" stays one word)."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference's length."""
    ref, hyp = transcript_words(reference), transcript_words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, heard in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard))
            )
        previous = current
    return previous[-1] / max(1, len(ref))
