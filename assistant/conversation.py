"""The conversation core: one ``Assistant`` that every UI (chat page, API, voice) calls.

A turn validates the message, reads the last few exchanges, asks the knowledge service
through the ``rag_api`` breaker and stores the exchange. When the knowledge service is
down or its circuit is open, the answer comes from the answer cache, or else it is the
friendly degraded message; when Redis is down the session store carries on in memory.
Either way the turn returns within the breaker's timeout, and never with a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from assistant.answer_cache import AnswerCache
from assistant.commands import Commands
from assistant.reply import Reply
from assistant.sessions import SessionStore
from rag.client import RagClient, RagRejected, Source
from resilience import (
    DEFAULT_DEGRADED_REPLIES,
    BreakerRegistry,
    CircuitOpen,
    DegradedReplies,
    fallback_on_outage,
)

__all__ = ["Assistant"]

logger = logging.getLogger(__name__)

EMPTY_MESSAGE = "I didn't catch a question there. What would you like to know?"
CACHE_NOTICE = (
    "My knowledge base is temporarily unavailable, so this is a saved answer from earlier."
)
DEGRADED_NOTICE = "My knowledge base is temporarily unavailable."
#: A follow-up this short ("and in Redis?") is read together with the previous question.
FOLLOW_UP_WORDS = 4


class Assistant:
    """Answers messages; knows nothing of Chainlit, HTTP or audio."""

    def __init__(
        self,
        *,
        rag: RagClient,
        sessions: SessionStore,
        cache: AnswerCache,
        breakers: BreakerRegistry,
        replies: DegradedReplies = DEFAULT_DEGRADED_REPLIES,
        max_message_chars: int = 2000,
        history_turns: int = 5,
        top_k: int = 4,
    ) -> None:
        self.rag = rag
        self.sessions = sessions
        self.cache = cache
        self.breakers = breakers
        self.replies = replies
        self.max_message_chars = max_message_chars
        self.history_turns = history_turns
        self.top_k = top_k
        self.commands = Commands(breakers, sessions.clear_session)

    async def turn(self, session_id: str, text: str) -> Reply:
        """Answer one message of ``session_id``'s conversation."""
        message = text.strip()
        if not message:
            return self._stamp(Reply(EMPTY_MESSAGE))
        if len(message) > self.max_message_chars:
            return self._stamp(
                Reply(
                    f"That message is {len(message):,} characters long; I can take up to "
                    f"{self.max_message_chars:,}. Could you shorten it or ask one part at a time?"
                )
            )
        if message.startswith("/"):
            return self._stamp(await self.commands.run(session_id, message))
        history = await self.sessions.get_conversation_context(session_id, self.history_turns)
        query = message
        if history and len(message.split()) <= FOLLOW_UP_WORDS:
            query = f"{history[-1].question} {message}"
        reply = await self._answer(message, query)
        await self.sessions.add_interaction(
            session_id,
            message,
            reply.text,
            {"degraded": reply.degraded, "fallback_source": reply.fallback_source},
        )
        return self._stamp(reply)

    async def _answer(self, message: str, query: str) -> Reply:
        """Ask the knowledge service; on an outage fall back to the cache or the apology."""
        try:
            guarded = await fallback_on_outage(
                self.rag.breaker,
                self._ask(message, query),
                lambda exc: self._fallback(message, exc),
            )
        except RagRejected as exc:
            logger.info("knowledge service refused a question: %s", exc.message)
            return Reply(f"I couldn't look that up: {exc.message}.")
        return guarded.value

    async def _ask(self, message: str, query: str) -> Reply:
        answer = await self.rag.query(query, self.top_k)
        if answer.answered_by != "none":
            await self.cache.put(message, answer.answer, [asdict(s) for s in answer.sources])
        return Reply(answer.answer, answer.sources)

    async def _fallback(self, message: str, error: BaseException) -> Reply:
        """A saved answer to the same question, else the friendly degraded message."""
        if not isinstance(error, CircuitOpen):
            logger.warning("knowledge service failed: %s", error)
        cached = await self.cache.get(message)
        if cached is not None:
            return Reply(
                cached.answer,
                tuple(Source(**source) for source in cached.sources),
                degraded=True,
                from_fallback=True,
                fallback_source="answer_cache",
                notice=CACHE_NOTICE,
            )
        breaker = self.rag.breaker
        return Reply(
            self.replies.reply(breaker.name, breaker.status().retry_after_s),
            degraded=True,
            from_fallback=True,
            fallback_source="degraded_message",
            notice=DEGRADED_NOTICE,
        )

    def _stamp(self, reply: Reply) -> Reply:
        """Attach every breaker's state as the turn ends."""
        reply.breakers.update({name: s.state.value for name, s in self.breakers.statuses().items()})
        return reply
