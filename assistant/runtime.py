"""The process's one set of breakers, health port, clients and ``Assistant``.

``chainlit run -w`` reloads the app by dropping from ``sys.modules`` every module whose
file sits under the app file's folder: this one and the whole project with it. So the
running instance is kept on a module that has no file (``_PROCESS``), which a reload
never drops: the reloaded code finds the same breakers and the same bound health port
instead of making new ones. Build it once with ``get_runtime()`` from inside the event
loop that serves users: the heartbeat that ``/health`` reports must beat on that loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import types
from dataclasses import dataclass
from typing import cast

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from assistant.answer_cache import AnswerCache
from assistant.conversation import Assistant
from assistant.metrics import ReplyMetrics
from assistant.sessions import SessionStore, redis_client
from assistant.settings import AssistantSettings
from assistant.voice.engines import RemoteSTT, RemoteTTS
from assistant.voice.prefs import VoicePrefsStore
from assistant.voice.service import VoiceService
from assistant.voice.worker import EngineWorker
from rag.client import RagClient
from resilience import BreakerMetrics, BreakerRegistry, Clock, HealthServer, Heartbeat

__all__ = ["Runtime", "current_runtime", "get_runtime", "shutdown_runtime"]

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything one app process shares between its UIs."""

    settings: AssistantSettings
    breakers: BreakerRegistry
    metrics: BreakerMetrics
    heartbeat: Heartbeat
    health: HealthServer
    redis: Redis
    rag: RagClient
    sessions: SessionStore
    cache: AnswerCache
    assistant: Assistant

    @classmethod
    def build(cls, settings: AssistantSettings, clock: Clock = time.monotonic) -> Runtime:
        """Wire the parts from settings; nothing runs until ``start``."""
        metrics = BreakerMetrics(CollectorRegistry())
        breakers = BreakerRegistry(settings.app_breakers(), metrics=metrics, clock=clock)
        heartbeat = Heartbeat(settings.heartbeat_interval)
        health = HealthServer.from_settings(breakers, metrics.registry, settings, heartbeat)
        redis = redis_client(settings.redis_url, socket_timeout=settings.redis_socket_timeout)
        rag = RagClient(breakers["rag_api"], settings.rag_url)
        sessions = SessionStore(
            redis, breakers["redis"], ttl_s=settings.session_ttl_s, journal_dir=settings.data_dir
        )
        cache = AnswerCache(redis, breakers["redis"], ttl_s=settings.answer_cache_ttl_s)
        voice = voice_service(settings, breakers)
        assistant = Assistant(
            rag=rag,
            sessions=sessions,
            cache=cache,
            breakers=breakers,
            max_message_chars=settings.max_message_chars,
            history_turns=settings.history_turns,
            top_k=settings.top_k,
            voice=voice,
            max_audio_seconds=settings.max_audio_seconds,
            voice_prefs=VoicePrefsStore(wake_word=settings.voice_wake_word),
            metrics=ReplyMetrics(metrics.registry),
        )
        return cls(
            settings, breakers, metrics, heartbeat, health, redis, rag, sessions, cache, assistant
        )

    async def start(self) -> None:
        """Open the health port, start the heartbeat, the journal's replay and the voice."""
        self.health.start()
        self.heartbeat.start()
        await self.sessions.start()
        voice = self.assistant.voice
        if voice is not None:
            try:
                await voice.start()
            except Exception as exc:  # voice is optional: its breaker takes it from here
                logger.error("voice engines did not start, voice is unavailable: %s", exc)

    async def stop(self) -> None:
        """Stop everything ``start`` started and close the connection pools."""
        if self.assistant.voice is not None:
            await self.assistant.voice.stop()
        await self.sessions.stop()
        self.heartbeat.stop()
        self.health.stop()
        await self.rag.aclose()
        await self.redis.aclose()


class _ProcessState(types.ModuleType):
    """Typed view of the state module (its class may come from before a reload)."""

    runtime: Runtime | None
    starting: asyncio.Lock


def _process_state() -> _ProcessState:
    """The file-less module that holds the running instance across app reloads."""
    state = sys.modules.get(_PROCESS)
    if state is None:
        fresh = _ProcessState(_PROCESS, "Nova's running instance, kept across app reloads.")
        fresh.runtime = None
        fresh.starting = asyncio.Lock()
        sys.modules[_PROCESS] = state = fresh
    return cast(_ProcessState, state)


_PROCESS = "nova_process_state"


def voice_service(settings: AssistantSettings, breakers: BreakerRegistry) -> VoiceService | None:
    """Local engines in a worker process, or remote servers where their URLs are set."""
    if not settings.voice_enabled:
        return None
    timeout = breakers["voice_processing"].config.timeout or 20.0
    remote_stt = (
        RemoteSTT(settings.stt_base_url, timeout=timeout) if settings.stt_base_url else None
    )
    remote_tts = (
        RemoteTTS(settings.tts_base_url, timeout=timeout) if settings.tts_base_url else None
    )
    worker = None
    if remote_stt is None or remote_tts is None:
        worker = EngineWorker(
            settings.stt_model_dir,
            settings.tts_voice_path,
            threads=settings.voice_threads,
            beam_size=settings.stt_beam_size,
        )
    return VoiceService(
        breakers["voice_processing"], worker, remote_stt=remote_stt, remote_tts=remote_tts
    )


async def get_runtime(settings: AssistantSettings | None = None) -> Runtime:
    """The process's runtime, built and started on first use."""
    state = _process_state()
    async with state.starting:
        if state.runtime is None:
            runtime = Runtime.build(settings or AssistantSettings.load())
            await runtime.start()
            state.runtime = runtime
        return state.runtime


def current_runtime() -> Runtime:
    """The runtime already started by ``get_runtime``."""
    runtime = _process_state().runtime
    if runtime is None:
        raise RuntimeError("Nova's runtime has not been started")
    return runtime


async def shutdown_runtime() -> None:
    """Stop the runtime (app shutdown, tests)."""
    state = _process_state()
    async with state.starting:
        if state.runtime is not None:
            await state.runtime.stop()
            state.runtime = None
