"""Frozen, validated breaker configuration and the defaults Nova ships with."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from resilience.errors import ConfigError, is_caller_error

__all__ = [
    "DEFAULT_BREAKERS",
    "DEFAULT_HALF_OPEN_MAX_CALLS",
    "DEFAULT_SUCCESS_THRESHOLD",
    "BreakerConfig",
    "Exclusion",
]

DEFAULT_HALF_OPEN_MAX_CALLS = 1
DEFAULT_SUCCESS_THRESHOLD = 1

#: An exception type, or a predicate, naming errors that must not count as failures.
Exclusion = type[BaseException] | Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How one breaker behaves. Checked when built, so a bad value fails at start-up.

    ``timeout`` bounds each guarded coroutine; ``half_open_max_calls`` is how many trial
    calls may run at once once ``reset_timeout`` has passed; ``exclude`` lists caller
    errors that pass through without counting.
    """

    name: str
    fail_max: int
    reset_timeout: float
    timeout: float | None
    half_open_max_calls: int = DEFAULT_HALF_OPEN_MAX_CALLS
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD
    enabled: bool = True
    exclude: tuple[Exclusion, ...] = field(default=(is_caller_error,))

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ConfigError(f"breaker name must be letters, digits and '_', got {self.name!r}")
        for key in ("fail_max", "half_open_max_calls", "success_threshold"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a whole number >= 1, got {value!r}")
        for key in ("reset_timeout", "timeout"):
            value = getattr(self, key)
            if value is None and key == "timeout":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(f"{key} must be a number of seconds > 0, got {value!r}")


DEFAULT_BREAKERS: tuple[BreakerConfig, ...] = (
    BreakerConfig(name="rag_api", fail_max=3, reset_timeout=30.0, timeout=8.0),
    BreakerConfig(name="redis", fail_max=5, reset_timeout=15.0, timeout=1.0),
    BreakerConfig(name="voice_processing", fail_max=2, reset_timeout=45.0, timeout=20.0),
)
