"""Nova's one error tree, and the rule that sorts failures into "count" and "don't count".

::

    NovaError
    ├── DependencyError        a dependency failed: counts against its breaker
    │   └── CallTimeout        the call ran past its breaker's timeout
    ├── CallerError            the caller asked for something invalid: never counts
    ├── CircuitOpen            rejected without calling (also a pybreaker.CircuitBreakerError)
    └── ConfigError            a setting is invalid (also a ValueError)

Feature packages add their own ``DependencyError`` subclasses and convert vendor
exceptions into them in one place per client, chained with ``from exc``.
"""

from __future__ import annotations

import pybreaker

__all__ = [
    "CallTimeout",
    "CallerError",
    "CircuitOpen",
    "ConfigError",
    "DependencyError",
    "NovaError",
    "is_caller_error",
]

#: 4xx statuses that still mean the dependency is struggling, not that the request was bad.
TRANSIENT_CLIENT_STATUSES = frozenset({408, 429})


class NovaError(Exception):
    """Root of every error Nova raises on purpose."""


class DependencyError(NovaError):
    """A dependency (service, store, engine) failed; the breaker counts it."""


class CallTimeout(DependencyError, TimeoutError):
    """A guarded call took longer than its breaker's timeout and was cancelled."""

    def __init__(self, breaker: str, timeout: float) -> None:
        super().__init__(f"call through breaker {breaker!r} timed out after {timeout:g} s")
        self.breaker = breaker
        self.timeout = timeout


class CallerError(NovaError):
    """The request itself was invalid (validation, HTTP 4xx); the dependency is fine."""


class CircuitOpen(NovaError, pybreaker.CircuitBreakerError):
    """A call was rejected because the circuit is open (or its half-open trials are taken).

    A fresh instance is raised for every rejection: re-raising one cached object would
    grow its traceback with each raise.
    """

    def __init__(self, breaker: str, retry_after_s: float) -> None:
        super().__init__(f"circuit {breaker!r} is open; retry in {retry_after_s:.1f} s")
        self.breaker = breaker
        self.retry_after_s = retry_after_s


class ConfigError(NovaError, ValueError):
    """A setting is invalid; raised at start-up so a bad value fails fast."""


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, if any (httpx and most clients expose one)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def is_caller_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the caller's fault, so it must not open a circuit.

    ``CallerError`` and HTTP 4xx responses are the caller's fault, except 408 and 429,
    which say the dependency is overloaded.
    """
    if isinstance(exc, CallerError):
        return True
    status = _http_status(exc)
    return status is not None and 400 <= status < 500 and status not in TRANSIENT_CLIENT_STATUSES
