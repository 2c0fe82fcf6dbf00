"""Recent answers by question, so Nova can still answer when the knowledge service is down.

Answers live in Redis (shared by every app process, expiring after ``ttl_s``) behind the
``redis`` breaker, with a bounded local copy that keeps working when Redis does not. The
cache is an optimisation: a Redis failure makes a lookup a miss and a store local-only,
and nothing here ever raises because Redis is down.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from assistant.sessions import is_wrong_type
from resilience import Breaker, Clock, ConfigError

__all__ = [
    "DEFAULT_ANSWER_TTL_S",
    "AnswerCache",
    "CachedAnswer",
    "normalize_question",
    "question_key",
]

logger = logging.getLogger(__name__)

DEFAULT_ANSWER_TTL_S = 3600
DEFAULT_LOCAL_ENTRIES = 1000
KEY_PREFIX = "nova:answer:"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer as it was given: its text and the passages it came from."""

    question: str
    answer: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    cached_at: float = 0.0

    def encode(self) -> str:
        """JSON for Redis."""
        return json.dumps(
            {"q": self.question, "a": self.answer, "s": self.sources, "at": self.cached_at},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> CachedAnswer:
        """Parse what ``encode`` wrote; ``ValueError`` if it is something else."""
        try:
            body = json.loads(raw)
            return cls(
                question=str(body["q"]),
                answer=str(body["a"]),
                sources=[dict(source) for source in body.get("s", [])],
                cached_at=float(body.get("at", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a cached answer: {exc!r}") from exc


def normalize_question(question: str) -> str:
    """The form two askings of one question share: case, spacing and end punctuation go.

    "  What is Nova?? " and "what is nova" are the same question; "what is nova v2" is not.
    """
    text = " ".join(unicodedata.normalize("NFKC", question).casefold().split())
    start, end = 0, len(text)
    while start < end and _is_edge_noise(text[start]):
        start += 1
    while end > start and _is_edge_noise(text[end - 1]):
        end -= 1
    return text[start:end]


def question_key(question: str) -> str | None:
    """The Redis key for a question, or ``None`` when nothing is left after normalising."""
    normal = normalize_question(question)
    if not normal:
        return None
    return KEY_PREFIX + hashlib.sha1(normal.encode(), usedforsecurity=False).hexdigest()


def _is_edge_noise(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


class AnswerCache:
    """Question → answer, in Redis and in a local LRU, both expiring after ``ttl_s``.

    ``clock`` times local expiry (Redis expires its own copies). A ``clear()`` that cannot
    reach Redis is repeated before the next Redis lookup, and until it succeeds answers
    come from the (already cleared) local copy only, so an answer from before a knowledge
    base change is never served again by this process.
    """

    def __init__(
        self,
        redis: Redis,
        breaker: Breaker,
        *,
        ttl_s: int = DEFAULT_ANSWER_TTL_S,
        max_local: int = DEFAULT_LOCAL_ENTRIES,
        clock: Clock = time.monotonic,
    ) -> None:
        for name, value in (("ttl_s", ttl_s), ("max_local", max_local)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        self._redis = redis
        self._breaker = breaker
        self._ttl_s = ttl_s
        self._max_local = max_local
        self._clock = clock
        self._local: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()
        self._clear_pending = False
        self._generation = 0  # bumped by clear(), so a lookup begun before it is not kept

    def __len__(self) -> int:
        return len(self._local)

    async def get(self, question: str) -> CachedAnswer | None:
        """The cached answer to ``question``, from here or from Redis; never raises."""
        key = question_key(question)
        if key is None:
            return None
        hit = self._local_get(key)
        if hit is not None or not await self._remote_usable():
            return hit
        generation = self._generation
        try:
            raw, ttl_ms = await self._breaker.call_async(self._fetch, key)
            if raw is None:
                return None
            answer = CachedAnswer.decode(raw)
        except Exception as exc:  # a cache lookup must never fail a turn
            logger.debug("answer cache: lookup without Redis: %r", exc)
            return None
        if generation == self._generation:
            self._local_put(key, answer, ttl_ms / 1000 if ttl_ms > 0 else self._ttl_s)
        return answer

    async def put(
        self, question: str, answer: str, sources: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Remember an answer here and, when Redis can take it, for every process.

        A store Redis misses is not retried: the answer is one query away, unlike a turn.
        """
        key = question_key(question)
        if key is None:
            return
        cached = CachedAnswer(question, answer, [dict(s) for s in sources], time.time())
        encoded = cached.encode()  # fails here, not in Redis, if a source is not JSON
        self._local_put(key, cached, self._ttl_s)
        if not await self._remote_usable():
            return
        try:
            await self._breaker.call_async(self._redis.set, key, encoded, ex=self._ttl_s)
        except Exception as exc:
            logger.debug("answer cache: stored locally only: %r", exc)

    async def clear(self) -> bool:
        """Forget every cached answer (the knowledge base changed); true if Redis's went too."""
        self._local.clear()
        self._generation += 1
        self._clear_pending = True
        return await self._remote_usable()

    # -- internals -----------------------------------------------------------------------

    async def _remote_usable(self) -> bool:
        """Whether Redis may be used: false while a ``clear()`` has not reached it."""
        if not self._clear_pending:
            return True
        try:
            deleted = await self._breaker.call_async(self._delete_all)
        except Exception as exc:
            logger.debug("answer cache: clearing Redis failed: %r", exc)
            return False
        self._clear_pending = False
        logger.info("answer cache: cleared %d answers from Redis", deleted)
        return True

    async def _fetch(self, key: str) -> tuple[str | bytes | None, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            raw, ttl_ms = await pipe.execute(raise_on_error=False)
        if isinstance(raw, ResponseError):
            if not is_wrong_type(raw):
                raise raw
            logger.error("answer cache: %s is not an answer: %s", key, raw)
            return None, -2
        return raw, int(ttl_ms)

    async def _delete_all(self) -> int:
        deleted = 0
        batch: list[str | bytes] = []
        async for key in self._redis.scan_iter(match=f"{KEY_PREFIX}*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await self._redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self._redis.unlink(*batch)
        return deleted

    def _local_get(self, key: str) -> CachedAnswer | None:
        entry = self._local.get(key)
        if entry is None:
            return None
        expires, answer = entry
        if self._clock() >= expires:
            del self._local[key]
            return None
        self._local.move_to_end(key)
        return answer

    def _local_put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        self._local[key] = (self._clock() + ttl_s, answer)
        self._local.move_to_end(key)
        while len(self._local) > self._max_local:
            self._local.popitem(last=False)
