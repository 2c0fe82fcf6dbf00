"""The observability profile's files against real processes.

Debian's real Prometheus, with a config made from ``deploy/prometheus/prometheus.yml``,
scrapes a real health port (breakers driven closed -> open -> half_open -> closed on a
clock the test moves) and a real knowledge service, loads the alert rules, and answers
every query of the Grafana dashboard.

Grafana itself cannot run here: neither Debian nor PyPI ships its server. So the
dashboard is checked as Grafana would read it (unique panel ids, the provisioned
datasource on every panel, every variable defined) and each of its queries is run,
with Grafana's variables filled in, against the real Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from assistant.metrics import ReplyMetrics
from assistant.reply import Reply
from resilience import (
    DEFAULT_BREAKERS,
    BreakerMetrics,
    BreakerRegistry,
    CallerError,
    CircuitOpen,
    HealthServer,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "nova-breakers.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "nova.yml"
#: Where the compose profile mounts deploy/grafana/dashboards/.
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"

#: What Grafana puts in place of the variables: ``$breaker`` set to All, and a rate
#: interval that spans every scrape of this test.
GRAFANA_VALUES = {"breaker": ".*", "__rate_interval": "1m"}
VARIABLE = re.compile(r"\$\{?(\w+)\}?")
#: Panels every query of which must return data once the test has driven its sequence.
KEY_PANELS = {
    "Breaker state",
    "Failures and rejections",
    "Call latency p50 / p95",
    "Degraded replies",
    "State (resilience4j)",
    "Requests by endpoint and status",
    "Answer time p50 / p95",
}
QUESTIONS = ("How many failures open the rag_api breaker?", "What does half-open mean?")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    """Every panel, rows included, with the panels of collapsed rows."""
    return [panel for top in board["panels"] for panel in (top, *top.get("panels", []))]


def query_panels(board: dict) -> list[dict]:
    """The panels that run queries (rows only lay the others out)."""
    return [panel for panel in panels(board) if panel["type"] != "row"]


def grafana_expand(expr: str) -> str:
    return VARIABLE.sub(lambda match: GRAFANA_VALUES[match.group(1)], expr)


def ok() -> str:
    return "ok"


def fail() -> None:
    raise ConnectionError("refused")


def bad_request() -> None:
    raise CallerError("question is empty")


def test_the_prometheus_config_passes_promtool(promtool):
    assert "4 rules found" in promtool("check", "config", "prometheus.yml", cwd=PROMETHEUS_DIR)
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]  # mounted beside it
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["nova-app"]["static_configs"] == [{"targets": ["app:8001"]}]
    assert jobs["nova-rag"]["static_configs"] == [{"targets": ["rag:8002"]}]


def test_the_grafana_files_hold_together():
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS_MOUNT

    board = dashboard()
    assert board["uid"] == "nova-breakers"
    assert board["schemaVersion"] == 39
    assert board["refresh"] == "10s"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), ids
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["breaker"]["definition"] == "label_values(circuit_breaker_state, name)"
    assert variables["breaker"]["datasource"]["uid"] == datasource["uid"]
    for panel in query_panels(board):
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
            used = set(VARIABLE.findall(target["expr"]))
            undefined = {name for name in used if not name.startswith("__")} - set(variables)
            assert not undefined, (panel["title"], undefined)


def prometheus_config(directory: Path, app_port: int, rag_port: int) -> Path:
    """The shipped config, scraping this test's ports every second."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    ports = {"nova-app": app_port, "nova-rag": rag_port}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports.pop(job['job_name'])}"]}]
    assert not ports, f"jobs missing from prometheus.yml: {ports}"
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", directory / "alerts.yml")
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_prometheus_scrapes_both_services_and_answers_every_panel(
    tmp_path, clock, prometheus, rag_service, lite_index
):
    metrics = BreakerMetrics(CollectorRegistry())
    breakers = BreakerRegistry(DEFAULT_BREAKERS, metrics=metrics, clock=clock)
    replies = ReplyMetrics(metrics.registry)
    rag = rag_service(lite_index, NOVA_RAG_RETRIEVAL="bm25").start()
    with HealthServer(breakers, metrics.registry, port=0) as health:
        server = prometheus(prometheus_config(tmp_path, health.port, rag.port))
        server.wait_for_targets({"nova-app", "nova-rag"})

        rag_api = breakers["rag_api"]
        for _ in range(3):
            rag_api.call(ok)
        with pytest.raises(CallerError):
            rag_api.call(bad_request)
        for _ in range(3):
            replies.count(Reply("an answer"))
        replies.count(Reply("sorry", degraded=True, fallback_source="degraded_message"))
        replies.count(Reply("saved", from_fallback=True, fallback_source="answer_cache"))
        for question in QUESTIONS:
            response = httpx.post(rag.url + "/query", json={"question": question}, timeout=30)
            assert response.status_code == 200
        for _ in range(3):
            with pytest.raises(ConnectionError):
                rag_api.call(fail)
        for _ in range(2):
            with pytest.raises(CircuitOpen):
                rag_api.call(ok)
        server.wait_for('circuit_breaker_state{job="nova-app", name="rag_api"} == 1')
        clock.advance(31)  # the next scrape finds the circuit due for a trial
        server.wait_for('circuit_breaker_state{name="rag_api"} == 2')
        rag_api.call(ok)
        server.wait_for('circuit_breaker_recoveries_total{name="rag_api"} == 1')
        server.wait_for('nova_rag_requests_total{endpoint="/query", status="200"} == 2')

        results = {}
        for panel in query_panels(dashboard()):
            for target in panel["targets"]:
                expr = grafana_expand(target["expr"])
                results[(panel["title"], target["refId"])] = result = server.query(expr)
                if panel["title"] in KEY_PANELS:
                    assert result, (panel["title"], expr)
        names = server.api("label/name/values", **{"match[]": "circuit_breaker_state"})
        groups = server.api("rules")["groups"]

    def by(key: tuple[str, str], label: str) -> dict[str, float]:
        return {series["metric"][label]: float(series["value"][1]) for series in results[key]}

    assert by(("Breaker state", "A"), "name") == {"rag_api": 0, "redis": 0, "voice_processing": 0}
    assert by(("Failures and rejections", "A"), "name")["rag_api"] > 0
    assert by(("Failures and rejections", "B"), "name")["rag_api"] > 0
    assert by(("Opens and recoveries", "B"), "name")["rag_api"] > 0
    assert by(("Call latency p50 / p95", "B"), "name")["rag_api"] > 0
    assert set(by(("Degraded replies", "A"), "fallback_source")) == {
        "answer_cache",
        "degraded_message",
        "voice_unavailable",
    }
    assert by(("Degraded replies", "A"), "fallback_source")["degraded_message"] > 0
    assert by(("State (resilience4j)", "A"), "name") == {
        "rag_api": 1,
        "redis": 1,
        "voice_processing": 1,
    }
    current = {series["metric"]["state"] for series in results[("State (resilience4j)", "A")]}
    assert current == {"closed"}
    assert by(("Calls by kind (resilience4j)", "B"), "name")["rag_api"] > 0
    (p95,) = results[("Answer time p50 / p95", "B")]
    assert float(p95["value"][1]) > 0
    assert set(names) == {"rag_api", "redis", "voice_processing"}
    assert [group["name"] for group in groups] == ["nova"]
    alerts = {rule["name"] for rule in groups[0]["rules"]}
    assert alerts == {
        "NovaCircuitOpen",
        "NovaCircuitFlapping",
        "NovaDegradedReplies",
        "NovaHealthDown",
    }
