"""The alert rules, unit-tested by promtool, and /metrics as promtool's linter reads it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from assistant.metrics import ReplyMetrics
from assistant.reply import Reply
from resilience import DEFAULT_BREAKERS, BreakerMetrics, BreakerRegistry, HealthServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"


def test_the_alert_rules_pass_their_unit_tests(promtool):
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml", cwd=RULES)


def test_metrics_pass_promtool_check_metrics(check_metrics, clock):
    metrics = BreakerMetrics(CollectorRegistry())
    breakers = BreakerRegistry(DEFAULT_BREAKERS, metrics=metrics, clock=clock)
    replies = ReplyMetrics(metrics.registry)
    replies.count(Reply("an answer"))
    replies.count(Reply("sorry", degraded=True, fallback_source="degraded_message"))

    def fail() -> None:
        raise ConnectionError("refused")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            breakers["rag_api"].call(fail)
    with HealthServer(breakers, metrics.registry, port=0) as server:
        text = httpx.get(server.url + "/metrics", timeout=5).text
    check_metrics(text)
    assert 'nova_replies_total{fallback_source="degraded_message"} 1.0' in text
    assert 'circuit_breaker_state{name="rag_api"} 1.0' in text
    assert 'resilience4j_circuitbreaker_state{name="rag_api",state="open"} 1.0' in text
