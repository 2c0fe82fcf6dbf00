"""Circuit breakers for asyncio and threads over pybreaker, with fallbacks, metrics and health.

Nothing in this package knows what the breakers guard; an app builds a
``BreakerRegistry`` from ``ResilienceSettings`` at start-up and passes it down.
"""

from resilience.breaker import Breaker, BreakerListener, BreakerStatus, Clock, Outcome, State
from resilience.config import DEFAULT_BREAKERS, BreakerConfig
from resilience.errors import (
    CallerError,
    CallTimeout,
    CircuitOpen,
    ConfigError,
    DependencyError,
    NovaError,
    is_caller_error,
)
from resilience.fallbacks import (
    DEFAULT_DEGRADED_REPLIES,
    DegradedReplies,
    Guarded,
    call_with_fallback,
    fallback_on_outage,
)
from resilience.health import HealthServer, Heartbeat, health_report
from resilience.metrics import BreakerMetrics
from resilience.registry import BreakerRegistry
from resilience.settings import ResilienceSettings

__all__ = [
    "DEFAULT_BREAKERS",
    "DEFAULT_DEGRADED_REPLIES",
    "Breaker",
    "BreakerConfig",
    "BreakerListener",
    "BreakerMetrics",
    "BreakerRegistry",
    "BreakerStatus",
    "CallTimeout",
    "CallerError",
    "CircuitOpen",
    "Clock",
    "ConfigError",
    "DegradedReplies",
    "DependencyError",
    "Guarded",
    "HealthServer",
    "Heartbeat",
    "NovaError",
    "Outcome",
    "ResilienceSettings",
    "State",
    "call_with_fallback",
    "fallback_on_outage",
    "health_report",
    "is_caller_error",
]
