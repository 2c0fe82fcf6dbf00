"""The RAG service's settings, read from ``NOVA_RAG_*`` and ``NOVA_LLM_*`` at start-up.

They extend the resilience settings so the optional language model's ``llm`` breaker is
configured the same way as the app's (``NOVA_BREAKER_LLM_TIMEOUT=20``...).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr
from pydantic_settings import SettingsConfigDict

from resilience import DEFAULT_BREAKERS, BreakerConfig, ResilienceSettings

__all__ = ["LLM_BREAKER", "RagSettings", "Retrieval"]

#: How chunks are found: both halves fused (default), embeddings only, or words only.
Retrieval = Literal["hybrid", "dense", "bm25"]

#: Guards the optional OpenAI-compatible model; when open, answers are extractive.
LLM_BREAKER = BreakerConfig(name="llm", fail_max=3, reset_timeout=30.0, timeout=20.0)


class RagSettings(ResilienceSettings):
    """Where the index lives, how to serve it and how to answer."""

    model_config = SettingsConfigDict(env_prefix="NOVA_", frozen=True, extra="ignore")

    # The app's breaker names are known too, so one shared environment serves both.
    default_breakers: ClassVar[tuple[BreakerConfig, ...]] = (*DEFAULT_BREAKERS, LLM_BREAKER)

    service_name: str = "rag"
    rag_data_dir: Path = Path(".nova/rag")
    rag_host: str = "127.0.0.1"
    rag_port: int = Field(default=8002, ge=0, le=65535)
    rag_retrieval: Retrieval = "hybrid"
    rag_max_question_chars: PositiveInt = 2000
    rag_max_top_k: PositiveInt = 20
    rag_threads: PositiveInt | None = None
    rag_reload_check_s: PositiveFloat = 2.0
    llm_base_url: str | None = None
    llm_model: str = "llama3.2"
    llm_api_key: SecretStr | None = None

    def llm_breaker(self) -> BreakerConfig:
        """The ``llm`` breaker with the environment's overrides applied."""
        return next(c for c in self.breaker_configs() if c.name == LLM_BREAKER.name)
