"""Settings read once from the environment at start-up; a bad value stops the process.

Every breaker knob is ``NOVA_BREAKER_<NAME>_<FIELD>``, e.g. ``NOVA_BREAKER_RAG_API_FAIL_MAX=3``,
``NOVA_BREAKER_REDIS_RESET_TIMEOUT=15``, ``NOVA_BREAKER_VOICE_PROCESSING_TIMEOUT=20``,
``NOVA_BREAKER_RAG_API_ENABLED=false``. A variable that names no known breaker or
field is an error too, so a typo cannot silently keep the default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from resilience.config import DEFAULT_BREAKERS, BreakerConfig
from resilience.errors import ConfigError

__all__ = ["BreakerOverrides", "ResilienceSettings"]

ENV_PREFIX = "NOVA_"
BREAKER_PREFIX = f"{ENV_PREFIX}BREAKER_"


class BreakerOverrides(BaseModel):
    """The knobs of one breaker that the environment may change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fail_max: PositiveInt | None = None
    reset_timeout: PositiveFloat | None = None
    timeout: PositiveFloat | None = None
    half_open_max_calls: PositiveInt | None = None
    success_threshold: PositiveInt | None = None
    enabled: bool | None = None


def _breaker_env_name(breaker: str, field: str) -> str:
    return f"{BREAKER_PREFIX}{breaker.upper()}_{field.upper()}"


class _BreakerEnvSource(PydanticBaseSettingsSource):
    """Collects ``NOVA_BREAKER_<NAME>_<FIELD>`` variables into ``breakers``."""

    def __init__(self, settings_cls: type[ResilienceSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._known = {b.name for b in settings_cls.default_breakers}
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        wanted = {
            _breaker_env_name(name, field): (name, field)
            for name in self._known
            for field in BreakerOverrides.model_fields
        }
        found: dict[str, dict[str, str]] = {}
        for key, value in self._environ.items():
            if not key.upper().startswith(BREAKER_PREFIX):
                continue
            if key.upper() not in wanted:
                raise ConfigError(
                    f"unknown setting {key}: expected {BREAKER_PREFIX}<NAME>_<FIELD> with NAME "
                    f"one of {', '.join(sorted(n.upper() for n in self._known))} and FIELD "
                    f"one of {', '.join(f.upper() for f in BreakerOverrides.model_fields)}"
                )
            name, field = wanted[key.upper()]
            found.setdefault(name, {})[field] = value
        return {"breakers": found} if found else {}


class ResilienceSettings(BaseSettings):
    """Health server and breaker settings; apps extend this with their own fields."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    #: The breakers this process has; subclasses may add their own.
    default_breakers: ClassVar[tuple[BreakerConfig, ...]] = DEFAULT_BREAKERS

    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8001, ge=0, le=65535)
    service_name: str = "chainlit-ui"
    heartbeat_interval: PositiveFloat = 0.5
    heartbeat_stale_after: PositiveFloat = 5.0
    breakers: dict[str, BreakerOverrides] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read breaker variables with their own naming scheme, then the usual sources."""
        assert issubclass(settings_cls, ResilienceSettings)
        return (init_settings, _BreakerEnvSource(settings_cls, os.environ), env_settings)

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Build the settings, turning any invalid value into a ``ConfigError`` that names it."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_env_name(error['loc'])}={error.get('input')!r}: {error['msg']}"
                for error in exc.errors()
            )
            raise ConfigError(f"invalid configuration: {problems}") from exc

    def breaker_configs(self) -> tuple[BreakerConfig, ...]:
        """The default breakers with the environment's overrides applied."""
        configs = []
        for default in self.default_breakers:
            override = self.breakers.get(default.name)
            changes = override.model_dump(exclude_none=True) if override else {}
            configs.append(dataclasses.replace(default, **changes))
        return tuple(configs)


def _env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error location came from."""
    if len(loc) == 3 and loc[0] == "breakers":
        return _breaker_env_name(str(loc[1]), str(loc[2]))
    return ENV_PREFIX + "_".join(str(part) for part in loc).upper()
