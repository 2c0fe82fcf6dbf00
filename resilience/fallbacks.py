"""What the user gets when a dependency is down: one guarded-call helper and the replies.

``call_with_fallback`` is the single place where "try the dependency, else fall back"
lives, so no caller writes its own copy of that block.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

from resilience.breaker import Breaker
from resilience.errors import CircuitOpen

__all__ = [
    "DEFAULT_DEGRADED_REPLIES",
    "DegradedReplies",
    "Guarded",
    "call_with_fallback",
    "fallback_on_outage",
    "retry_phrase",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Guarded(Generic[T]):
    """A value, and whether it came from the fallback (and why)."""

    value: T
    from_fallback: bool = False
    error: BaseException | None = None

    @property
    def circuit_open(self) -> bool:
        """True when the breaker rejected the call without trying the dependency."""
        return isinstance(self.error, CircuitOpen)


async def call_with_fallback(
    breaker: Breaker,
    primary: Callable[[], Awaitable[T]],
    fallback: Callable[[BaseException], T | Awaitable[T]],
) -> Guarded[T]:
    """Run ``primary`` through ``breaker``; use ``fallback`` on an open circuit or an outage.

    Caller errors (invalid input, HTTP 4xx) are not outages and propagate unchanged.
    """
    return await fallback_on_outage(breaker, breaker.call_async(primary), fallback)


async def fallback_on_outage(
    breaker: Breaker,
    guarded: Awaitable[T],
    fallback: Callable[[BaseException], T | Awaitable[T]],
) -> Guarded[T]:
    """Await a call that already goes through ``breaker`` (a client that guards itself).

    An open circuit or a failure by ``breaker``'s rules turns into ``fallback(exc)``;
    caller errors propagate unchanged.
    """
    try:
        return Guarded(await guarded)
    except Exception as exc:
        if not (isinstance(exc, CircuitOpen) or breaker.counts_as_failure(exc)):
            raise
        value = fallback(exc)
        if inspect.isawaitable(value):
            value = await value
        return Guarded(value, from_fallback=True, error=exc)


def retry_phrase(retry_after_s: float) -> str:
    """Roughly when to try again, as a person would say it."""
    if retry_after_s <= 5:
        return "in a few seconds"
    if retry_after_s < 55:
        return f"in about {10 * math.ceil(retry_after_s / 10)} seconds"
    minutes = max(1, round(retry_after_s / 60))
    return "in about a minute" if minutes == 1 else f"in about {minutes} minutes"


_DEFAULT_MESSAGES = {
    "rag_api": (
        "I'm temporarily unable to access my knowledge base, so I can't look that up "
        "right now. I'm automatically recovering; please ask again {when}."
    ),
    "redis": (
        "I can't reach my conversation memory at the moment, so I may not recall what we "
        "said earlier. Nothing is lost: I'm automatically recovering and will catch up "
        "{when}."
    ),
    "voice_processing": (
        "Voice is unavailable right now, so please type your message instead. I'm "
        "automatically recovering; try speaking again {when}."
    ),
}

_GENERIC_MESSAGE = (
    "Part of me is temporarily unavailable. I'm automatically recovering; please try again {when}."
)


@dataclass(frozen=True, slots=True)
class DegradedReplies:
    """One friendly message per breaker; ``{when}`` becomes a retry phrase.

    Messages never show an error class or a stack trace: the user needs to know what is
    unavailable and when to retry, not why.
    """

    messages: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType(dict(_DEFAULT_MESSAGES))
    )
    generic: str = _GENERIC_MESSAGE

    def reply(self, breaker: str, retry_after_s: float) -> str:
        """The message for ``breaker``, telling the user roughly when to retry."""
        template = self.messages.get(breaker, self.generic)
        return template.format(when=retry_phrase(retry_after_s))


DEFAULT_DEGRADED_REPLIES = DegradedReplies()
