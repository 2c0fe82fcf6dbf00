"""``python -m resilience``: serve the health port for the configured breakers.

Useful on its own to check settings and to give monitoring something to scrape; the app
runs the same server inside its own process so it reports live state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from prometheus_client import CollectorRegistry

from resilience.errors import ConfigError
from resilience.health import HealthServer, Heartbeat
from resilience.metrics import BreakerMetrics
from resilience.registry import BreakerRegistry
from resilience.settings import ResilienceSettings

logger = logging.getLogger("resilience")


async def serve(settings: ResilienceSettings) -> None:
    """Run the health server until cancelled, with a heartbeat from this loop."""
    registry = BreakerRegistry(
        settings.breaker_configs(), metrics=BreakerMetrics(CollectorRegistry())
    )
    assert registry.metrics is not None
    heartbeat = Heartbeat(settings.heartbeat_interval)
    heartbeat.start()
    server = HealthServer.from_settings(registry, registry.metrics.registry, settings, heartbeat)
    with server:
        await asyncio.Event().wait()


def main() -> int:
    """Console entry point; exit code 2 on invalid configuration."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = ResilienceSettings.load()
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
