"""A breaker listener that writes one log line per state change."""

from __future__ import annotations

import logging

from resilience.breaker import Breaker, Outcome, State

__all__ = ["LogListener"]

logger = logging.getLogger("resilience.breaker")


class LogListener:
    """Logs each transition, and each failure and rejection at debug level.

    A circuit opening is a warning; metrics, not logs, count the calls.
    """

    def on_state_change(self, breaker: Breaker, old: State, new: State) -> None:
        """One line: breaker, old and new state, fail count."""
        level = logging.WARNING if new is State.OPEN else logging.INFO
        logger.log(
            level,
            "circuit breaker=%s state=%s->%s fail_count=%d",
            breaker.name,
            old.value,
            new.value,
            breaker.fail_count,
        )

    def on_call(
        self, breaker: Breaker, outcome: Outcome, duration_s: float, exc: BaseException | None
    ) -> None:
        """Failures and rejections at debug level, for tracing one bad minute."""
        if outcome is Outcome.FAILURE:
            logger.debug("circuit breaker=%s failure=%r", breaker.name, exc)
        elif outcome is Outcome.REJECTED:
            logger.debug("circuit breaker=%s rejected", breaker.name)
