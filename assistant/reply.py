"""What a turn returns to any UI: the text, where it came from, and how healthy Nova was."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from rag.client import Source

__all__ = ["Reply"]

_TOKENS = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer. ``degraded`` means something Nova depends on was unavailable.

    ``from_fallback`` says the text did not come from the knowledge service, and
    ``fallback_source`` names what it came from instead (``answer_cache``,
    ``degraded_message``); ``notice`` is a one-line heads-up a UI shows above the text.
    """

    text: str
    sources: tuple[Source, ...] = ()
    degraded: bool = False
    from_fallback: bool = False
    fallback_source: str | None = None
    notice: str | None = None
    breakers: dict[str, str] = field(default_factory=dict)

    def tokens(self) -> Iterator[str]:
        """The text in word-sized pieces for streaming; joined they give the text back."""
        yield from _TOKENS.findall(self.text)
