"""The conversation core: one ``Assistant`` that every UI (chat page, API, voice) calls.

A turn validates the message, reads the last few exchanges, asks the knowledge service
through the ``rag_api`` breaker and stores the exchange. When the knowledge service is
down or its circuit is open, the answer comes from the answer cache, or else it is the
friendly degraded message; when Redis is down the session store carries on in memory.
Either way the turn returns within the breaker's timeout, and never with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from assistant.answer_cache import AnswerCache
from assistant.commands import Commands
from assistant.metrics import ReplyMetrics
from assistant.reply import Reply
from assistant.sessions import SessionStore
from assistant.voice.audio import MAX_SECONDS, AudioRejected, decode, from_pcm16, prepare
from assistant.voice.prefs import VoicePrefsStore, strip_wake_word
from assistant.voice.service import VoiceService
from rag.client import RagClient, RagRejected, Source
from resilience import (
    DEFAULT_DEGRADED_REPLIES,
    BreakerRegistry,
    CircuitOpen,
    DegradedReplies,
    fallback_on_outage,
)

__all__ = ["Assistant", "VoiceTurn"]

logger = logging.getLogger(__name__)

EMPTY_MESSAGE = "I didn't catch a question there. What would you like to know?"
CACHE_NOTICE = (
    "My knowledge base is temporarily unavailable, so this is a saved answer from earlier."
)
DEGRADED_NOTICE = "My knowledge base is temporarily unavailable."
VOICE_NOTICE = "Voice is temporarily unavailable; typing works as usual."
VOICE_OFF = "Voice is switched off on this server; please type your message."
NOT_HEARD = "I couldn't make out any words there. Could you say that again, or type it?"
#: A follow-up this short ("and in Redis?") is read together with the previous question.
FOLLOW_UP_WORDS = 4


@dataclass(frozen=True, slots=True)
class VoiceTurn:
    """A spoken message: what was heard, and the reply (None when it was not for Nova)."""

    transcript: str | None
    reply: Reply | None


class Assistant:
    """Answers typed and spoken messages; knows nothing of Chainlit or HTTP."""

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
        voice: VoiceService | None = None,
        max_audio_seconds: float = MAX_SECONDS,
        voice_prefs: VoicePrefsStore | None = None,
        metrics: ReplyMetrics | None = None,
    ) -> None:
        self.rag = rag
        self.sessions = sessions
        self.cache = cache
        self.breakers = breakers
        self.replies = replies
        self.max_message_chars = max_message_chars
        self.history_turns = history_turns
        self.top_k = top_k
        self.voice = voice
        self.voice_prefs = voice_prefs or VoicePrefsStore()
        self.metrics = metrics
        self._pending_notice: set[str] = set()
        self.max_audio_seconds = max_audio_seconds
        self.commands = Commands(
            breakers, sessions.clear_session, self.voice_prefs if voice else None
        )

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

    async def voice_turn(
        self,
        session_id: str,
        audio: bytes,
        *,
        mime: str | None = None,
        pcm16_rate: int | None = None,
    ) -> VoiceTurn:
        """Answer a spoken message: raw PCM16 at ``pcm16_rate``, or a file PyAV can read.

        Bad audio (empty, silent, too long, undecodable) gets a friendly reply and never
        reaches the engines; engine trouble gets the voice-unavailable message.
        """
        if self.voice is None:
            return VoiceTurn(None, self._stamp(Reply(VOICE_OFF)))
        try:
            heard = await fallback_on_outage(
                self.voice.breaker, self._heard(audio, mime, pcm16_rate), lambda exc: None
            )
        except AudioRejected as exc:
            return VoiceTurn(None, self._stamp(Reply(str(exc))))
        transcript = heard.value
        if transcript is None:
            return VoiceTurn(None, self._stamp(self._voice_unavailable()))
        if not transcript.strip():
            return VoiceTurn("", self._stamp(Reply(NOT_HEARD)))
        if self.voice_prefs.get(session_id).wake_word:
            request = strip_wake_word(transcript)
            if request is None:
                return VoiceTurn(transcript, None)
            transcript = request
        return VoiceTurn(transcript, await self.turn(session_id, transcript))

    async def _heard(self, audio: bytes, mime: str | None, pcm16_rate: int | None) -> str | None:
        return await self.transcribe(audio, mime=mime, pcm16_rate=pcm16_rate)

    async def transcribe(
        self, audio: bytes, *, mime: str | None = None, pcm16_rate: int | None = None
    ) -> str:
        """What was said: ``AudioRejected`` for bad audio, or the breaker's errors."""
        if self.voice is None:
            raise AudioRejected(VOICE_OFF)
        samples = await asyncio.to_thread(self._decode, audio, mime, pcm16_rate)
        return await self.voice.transcribe(samples)

    async def speak(self, session_id: str, text: str) -> AsyncIterator[tuple[bytes, int]]:
        """The reply's audio sentence by sentence, if this session wants spoken replies.

        When voice fails it stops quietly; ``voice_notice`` then says so, once.
        """
        prefs = self.voice_prefs.get(session_id)
        if self.voice is None or not prefs.spoken_replies:
            return
        try:
            async for chunk in self.voice.speak(text):
                prefs.told_unavailable = False
                yield chunk
        except Exception as exc:
            if not (isinstance(exc, CircuitOpen) or self.voice.breaker.counts_as_failure(exc)):
                raise
            logger.warning("speech synthesis unavailable: %s", exc)
            if not prefs.told_unavailable:
                prefs.told_unavailable = True
                self._pending_notice.add(session_id)

    def voice_notice(self, session_id: str) -> str | None:
        """The one-time "voice is unavailable, please type" message owed to this session."""
        if session_id not in self._pending_notice:
            return None
        self._pending_notice.discard(session_id)
        return self._voice_unavailable().text

    def _decode(
        self, audio: bytes, mime: str | None, pcm16_rate: int | None
    ) -> npt.NDArray[np.float32]:
        samples = (
            from_pcm16(audio, pcm16_rate)
            if pcm16_rate
            else decode(audio, mime, max_seconds=self.max_audio_seconds)
        )
        return prepare(samples, max_seconds=self.max_audio_seconds)

    def _voice_unavailable(self) -> Reply:
        breaker = self.breakers["voice_processing"]
        return Reply(
            self.replies.reply(breaker.name, breaker.status().retry_after_s),
            degraded=True,
            from_fallback=True,
            fallback_source="voice_unavailable",
            notice=VOICE_NOTICE,
        )

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
        """Attach every breaker's state as the turn ends, and count the reply."""
        if self.metrics is not None:
            self.metrics.count(reply)
        reply.breakers.update({name: s.state.value for name, s in self.breakers.statuses().items()})
        return reply
