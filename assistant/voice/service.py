"""Speech in and out, through the ``voice_processing`` breaker.

Local engines run in a separate worker process (``EngineWorker``), so an engine crash
costs one failed call, not the app; a call that outlives the breaker's timeout has its
worker killed and replaced, since a cancelled await does not stop a busy process. With
``NOVA_STT_BASE_URL`` / ``NOVA_TTS_BASE_URL`` set, an OpenAI-compatible server does the
work instead, through the same breaker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from assistant.voice.audio import STT_RATE, to_wav
from assistant.voice.engines import RemoteSTT, RemoteTTS, split_sentences
from assistant.voice.worker import EngineWorker
from resilience import Breaker, CallTimeout

__all__ = ["VoiceService"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class VoiceService:
    """Transcribes and speaks; every engine call goes through ``breaker``."""

    def __init__(
        self,
        breaker: Breaker,
        worker: EngineWorker | None,
        *,
        remote_stt: RemoteSTT | None = None,
        remote_tts: RemoteTTS | None = None,
    ) -> None:
        if worker is None and (remote_stt is None or remote_tts is None):
            raise ValueError("voice needs the local worker or both remote providers")
        self.breaker = breaker
        self.worker = worker
        self.remote_stt = remote_stt
        self.remote_tts = remote_tts

    async def start(self) -> None:
        """Start the local engine worker (it loads the models once)."""
        if self.worker is not None:
            await self.worker.start()

    async def stop(self) -> None:
        """Stop the worker and close remote connections."""
        if self.worker is not None:
            await self.worker.stop()
        for remote in (self.remote_stt, self.remote_tts):
            if remote is not None:
                await remote.aclose()

    async def transcribe(self, audio: npt.NDArray[np.float32]) -> str:
        """Text of prepared 16 kHz mono audio (see ``audio.prepare``)."""
        return await self._guarded(lambda: self._transcribe(audio), self.remote_stt is None)

    async def synthesize(self, text: str) -> tuple[bytes, int]:
        """PCM16 mono audio of ``text`` and its sample rate."""
        return await self._guarded(lambda: self._synthesize(text), self.remote_tts is None)

    async def speak(self, text: str) -> AsyncIterator[tuple[bytes, int]]:
        """Audio sentence by sentence, so the first words play before the rest is made."""
        for sentence in split_sentences(text):
            yield await self.synthesize(sentence)

    async def wav(self, text: str) -> bytes:
        """The whole of ``text`` as one WAV file (the speech API)."""
        parts = [await self.synthesize(sentence) for sentence in split_sentences(text)]
        if not parts:
            return to_wav(np.zeros(0, dtype=np.int16), 22050)
        rate = parts[0][1]
        samples = np.concatenate([np.frombuffer(pcm, dtype=np.int16) for pcm, _ in parts])
        return to_wav(samples, rate)

    async def _transcribe(self, audio: npt.NDArray[np.float32]) -> str:
        if self.remote_stt is not None:
            return await self.remote_stt.transcribe_async(to_wav(audio, STT_RATE))
        assert self.worker is not None
        return await self.worker.transcribe(audio)

    async def _synthesize(self, text: str) -> tuple[bytes, int]:
        if self.remote_tts is not None:
            return await self.remote_tts.synthesize_async(text)
        assert self.worker is not None
        return await self.worker.synthesize(text)

    async def _guarded(self, call: Callable[[], Awaitable[T]], local: bool) -> T:
        """Through the breaker; a local engine that timed out has its worker replaced."""
        try:
            return await self.breaker.call_async(call)
        except CallTimeout:
            if local and self.worker is not None:
                logger.warning("voice engine hung past its timeout; replacing its worker")
                self.worker.kill()
            raise
