"""How Nova's replies were made, for the health port's ``/metrics``.

Breaker series say what is down; this says what users got meanwhile: the share of
replies that came from a fallback is what the degraded-reply alert watches.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from assistant.reply import Reply

__all__ = ["FALLBACK_SOURCES", "ReplyMetrics"]

#: Every value of the ``fallback_source`` label; "none" is the normal path.
FALLBACK_SOURCES = ("none", "answer_cache", "degraded_message", "voice_unavailable")


class ReplyMetrics:
    """``nova_replies_total{fallback_source}``: every reply, by what produced it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._replies = Counter(
            "nova_replies",
            "Replies by what produced them: none (the normal path) or the fallback used.",
            ["fallback_source"],
            registry=registry,
        )
        self._children = {source: self._replies.labels(source) for source in FALLBACK_SOURCES}

    def count(self, reply: Reply) -> None:
        """Count one reply."""
        self._children[reply.fallback_source or "none"].inc()
