"""Redis fixtures for the session store and answer cache: the breaker and a fail-fast client."""

from __future__ import annotations

import pytest

from assistant.sessions import redis_client
from resilience import Breaker, BreakerConfig


@pytest.fixture
def redis_breaker(clock, recorder) -> Breaker:
    """The ``redis`` breaker as Nova ships it, on the fake clock: 5 failures, 15 s."""
    config = BreakerConfig(name="redis", fail_max=5, reset_timeout=15.0, timeout=1.0)
    return Breaker(config, listeners=(recorder,), clock=clock)


@pytest.fixture
async def redis(redis_server):
    """A fail-fast client (0.5 s socket timeouts, no retries) for the server under test."""
    client = redis_client(redis_server.url, socket_timeout=0.5, connect_timeout=0.5)
    yield client
    await client.aclose()
