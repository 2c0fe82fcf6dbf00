"""The app's settings, read once from ``NOVA_*`` variables at start-up.

They extend the resilience settings (health port, ``NOVA_BREAKER_*``) with where Redis
and the knowledge service are, the chat port and the conversation limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, PositiveFloat, PositiveInt

from rag.settings import LLM_BREAKER
from resilience import DEFAULT_BREAKERS, BreakerConfig, ResilienceSettings

__all__ = ["AssistantSettings"]


class AssistantSettings(ResilienceSettings):
    """Everything the chat app needs to start."""

    # The knowledge service's ``llm`` breaker is known too, so one environment serves both.
    default_breakers: ClassVar[tuple[BreakerConfig, ...]] = (*DEFAULT_BREAKERS, LLM_BREAKER)

    ui_host: str = "127.0.0.1"
    ui_port: int = Field(default=8000, ge=0, le=65535)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_socket_timeout: PositiveFloat = 0.5
    rag_url: str = "http://127.0.0.1:8002"
    data_dir: Path = Path(".nova")
    max_message_chars: PositiveInt = 2000
    history_turns: PositiveInt = 5
    session_ttl_s: PositiveInt = 30 * 24 * 3600
    answer_cache_ttl_s: PositiveInt = 3600
    top_k: PositiveInt = 4
    voice_enabled: bool = True
    voice_threads: PositiveInt | None = None
    stt_beam_size: PositiveInt = 5
    voice_wake_word: bool = False
    max_audio_seconds: PositiveFloat = 60.0
    stt_model_dir: Path | None = None
    tts_voice_path: Path | None = None
    stt_base_url: str | None = None
    tts_base_url: str | None = None

    def app_breakers(self) -> tuple[BreakerConfig, ...]:
        """The breakers the app itself uses (not the knowledge service's ``llm``)."""
        names = {config.name for config in DEFAULT_BREAKERS}
        return tuple(config for config in self.breaker_configs() if config.name in names)
