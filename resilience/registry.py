"""Named breakers built from configuration, each wired to metrics and logs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from resilience.breaker import Breaker, BreakerListener, BreakerStatus, Clock
from resilience.config import BreakerConfig
from resilience.errors import ConfigError
from resilience.log import LogListener
from resilience.metrics import BreakerMetrics

__all__ = ["BreakerRegistry"]


class BreakerRegistry:
    """The process's breakers, by name. Build one at start-up and pass it down."""

    def __init__(
        self,
        configs: Iterable[BreakerConfig],
        *,
        metrics: BreakerMetrics | None = None,
        listeners: tuple[BreakerListener, ...] = (LogListener(),),
        clock: Clock = time.monotonic,
    ) -> None:
        self._breakers: dict[str, Breaker] = {}
        for config in configs:
            if config.name in self._breakers:
                raise ConfigError(f"duplicate breaker name {config.name!r}")
            breaker = Breaker(config, listeners=listeners, clock=clock)
            if metrics is not None:
                metrics.watch(breaker)
            self._breakers[config.name] = breaker
        self.metrics = metrics

    def __getitem__(self, name: str) -> Breaker:
        return self._breakers[name]

    def __iter__(self) -> Iterator[Breaker]:
        return iter(self._breakers.values())

    def __len__(self) -> int:
        return len(self._breakers)

    def statuses(self) -> dict[str, BreakerStatus]:
        """A snapshot of every breaker, by name."""
        return {name: breaker.status() for name, breaker in self._breakers.items()}
