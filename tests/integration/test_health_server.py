"""The health port over real HTTP: JSON in every state, Prometheus text, a blocked loop."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from resilience import (
    DEFAULT_BREAKERS,
    BreakerConfig,
    BreakerMetrics,
    BreakerRegistry,
    CallerError,
    CallTimeout,
    CircuitOpen,
    HealthServer,
    Heartbeat,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BREAKER_FIELDS = {
    "state",
    "fail_count",
    "last_failure",
    "opened_at",
    "retry_after_s",
    "fail_max",
    "reset_timeout",
    "timeout",
    "half_open_max_calls",
    "enabled",
}


class Boom(ConnectionError):
    pass


async def ok() -> str:
    return "ok"


async def fail() -> None:
    raise Boom("refused")


async def bad_request() -> None:
    raise CallerError("question is empty")


@pytest.fixture
def breakers(clock) -> BreakerRegistry:
    return BreakerRegistry(
        DEFAULT_BREAKERS, metrics=BreakerMetrics(CollectorRegistry()), clock=clock
    )


@pytest.fixture
def server(breakers) -> Iterator[HealthServer]:
    assert breakers.metrics is not None
    with HealthServer(breakers, breakers.metrics.registry, port=0, version="9.9") as running:
        yield running


def get(server: HealthServer, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=5)


async def trip(breakers: BreakerRegistry, name: str) -> None:
    for _ in range(breakers[name].config.fail_max):
        with pytest.raises(Boom):
            await breakers[name].call_async(fail)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthy_when_every_circuit_is_closed(server):
    response = get(server, "/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "healthy"
    assert body["service"] == "chainlit-ui"
    assert body["version"] == "9.9"
    assert body["timestamp"].endswith("+00:00")
    assert body["services"] == {"rag_api": True, "redis": True, "voice_processing": True}
    assert set(body["circuit_breakers"]) == {"rag_api", "redis", "voice_processing"}
    for snapshot in body["circuit_breakers"].values():
        assert set(snapshot) == BREAKER_FIELDS
        assert snapshot["state"] == "closed"
        assert snapshot["last_failure"] is None
    assert body["circuit_breakers"]["rag_api"]["fail_max"] == 3
    assert body["circuit_breakers"]["redis"]["reset_timeout"] == 15
    assert body["circuit_breakers"]["voice_processing"]["fail_max"] == 2


async def test_degraded_while_one_circuit_is_open_then_half_open(server, breakers, clock):
    await trip(breakers, "rag_api")
    body = get(server, "/health").json()
    assert body["status"] == "degraded"
    assert body["services"]["rag_api"] is False
    assert body["services"]["redis"] is True
    rag = body["circuit_breakers"]["rag_api"]
    assert rag["state"] == "open"
    assert rag["fail_count"] == 3
    assert rag["retry_after_s"] == 30.0
    assert rag["opened_at"] is not None
    assert "refused" in rag["last_failure"]["error"]
    assert rag["last_failure"]["at"]

    clock.advance(12.5)
    assert get(server, "/health").json()["circuit_breakers"]["rag_api"]["retry_after_s"] == 17.5

    clock.advance(20)
    response = get(server, "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["circuit_breakers"]["rag_api"]["state"] == "half_open"
    assert body["services"]["rag_api"] is True

    await breakers["rag_api"].call_async(ok)
    assert get(server, "/health").json()["status"] == "healthy"


async def test_unhealthy_with_503_when_every_circuit_is_open(server, breakers):
    for name in ("rag_api", "redis", "voice_processing"):
        await trip(breakers, name)
    response = get(server, "/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert not any(body["services"].values())


async def test_breakers_endpoint_shows_just_the_breakers(server, breakers):
    await trip(breakers, "voice_processing")
    response = get(server, "/health/circuit-breakers")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"rag_api", "redis", "voice_processing"}
    assert body["voice_processing"]["state"] == "open"
    assert set(body["redis"]) == BREAKER_FIELDS


async def test_metrics_follow_a_known_sequence_of_calls(server, breakers, clock, metric_samples):
    before = metric_samples(get(server, "/metrics").text)
    key = (("name", "rag_api"),)
    assert before[("circuit_breaker_state", key)] == 0
    assert before[("circuit_breaker_calls_total", (*key, ("outcome", "rejected")))] == 0

    rag = breakers["rag_api"]
    await rag.call_async(ok)
    await rag.call_async(ok)
    with pytest.raises(CallerError):
        await rag.call_async(bad_request)
    await trip(breakers, "rag_api")
    with pytest.raises(CircuitOpen):
        await rag.call_async(ok)

    response = get(server, "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = metric_samples(response.text)

    def calls(outcome: str) -> float:
        return after[("circuit_breaker_calls_total", (*key, ("outcome", outcome)))]

    assert (calls("success"), calls("ignored"), calls("failure"), calls("rejected")) == (2, 1, 3, 1)
    assert after[("circuit_breaker_failures_total", key)] == 3
    assert after[("circuit_breaker_opens_total", key)] == 1
    assert after[("circuit_breaker_state", key)] == 1
    timed = "circuit_breaker_call_duration_seconds_count"
    durations = {
        outcome: after.get((timed, (*key, ("outcome", outcome))))
        for outcome in ("success", "ignored", "failure", "cancelled", "rejected")
    }
    assert durations == {"success": 2, "ignored": 1, "failure": 3, "cancelled": 0, "rejected": None}
    assert after[("circuit_breaker_failures_total", (("name", "redis"),))] == 0

    clock.advance(31)  # a scrape alone shows the circuit half-open once it is due
    assert metric_samples(get(server, "/metrics").text)[("circuit_breaker_state", key)] == 2
    await rag.call_async(ok)
    final = metric_samples(get(server, "/metrics").text)
    assert final[("circuit_breaker_state", key)] == 0
    assert final[("circuit_breaker_recoveries_total", key)] == 1


async def test_a_hanging_dependency_is_cut_off_and_reported():
    breakers = BreakerRegistry(
        [BreakerConfig(name="rag_api", fail_max=1, reset_timeout=30, timeout=0.05)],
        metrics=BreakerMetrics(CollectorRegistry()),
    )
    assert breakers.metrics is not None

    async def hang() -> None:
        await asyncio.Event().wait()

    with HealthServer(breakers, breakers.metrics.registry, port=0) as server:
        with pytest.raises(CallTimeout):
            await breakers["rag_api"].call_async(hang)
        response = get(server, "/health")
    assert response.status_code == 503  # its only dependency is out
    rag = response.json()["circuit_breakers"]["rag_api"]
    assert rag["state"] == "open"
    assert "timed out after 0.05 s" in rag["last_failure"]["error"]


async def test_answers_while_the_event_loop_is_blocked(breakers, clock):
    assert breakers.metrics is not None
    heartbeat = Heartbeat(interval=3600, clock=clock)
    heartbeat.start()
    result: dict[str, httpx.Response] = {}
    with HealthServer(
        breakers, breakers.metrics.registry, port=0, heartbeat=heartbeat, stale_after=5
    ) as server:
        assert get(server, "/health").json()["event_loop"] == {
            "heartbeat_age_s": 0.0,
            "responsive": True,
        }
        probe = threading.Thread(target=lambda: result.update(r=get(server, "/health")))
        clock.advance(10)
        probe.start()
        probe.join(timeout=10)  # blocks this event loop while the probe is answered
    heartbeat.stop()
    body = result["r"].json()
    assert body["status"] == "degraded"
    assert body["event_loop"] == {"heartbeat_age_s": 10.0, "responsive": False}


def test_unknown_paths_get_a_json_404_and_head_works(server):
    response = get(server, "/nope")
    assert response.status_code == 404
    assert "/health" in response.json()["paths"]
    head = httpx.head(server.url + "/health", timeout=5)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert get(server, "/health/?verbose=1").json()["status"] == "healthy"


def test_checks_reuse_one_connection(server):
    # A scraper or load balancer polling every few seconds keeps one connection open.
    with httpx.Client(base_url=server.url, timeout=5) as client:
        responses = [client.get(path) for path in ("/health", "/metrics", "/nope", "/health")]
        assert {r.http_version for r in responses} == {"HTTP/1.1"}
        ends = {r.extensions["network_stream"].get_extra_info("client_addr") for r in responses}
    assert len(ends) == 1


def test_a_client_hanging_up_mid_request_prints_no_traceback(server, capfd):
    # Keep-alive clients (wrk, scrapers being stopped) reset their connections routinely.
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /hea")
            sock.recv(65536)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert get(server, "/health").status_code == 200  # and it goes on serving
    assert "Traceback" not in capfd.readouterr().err


def run_module(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "resilience"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_module_serves_the_configured_breakers():
    port = free_port()
    process = run_module({"NOVA_HEALTH_PORT": str(port), "NOVA_BREAKER_REDIS_FAIL_MAX": "7"})
    try:
        body = None
        for _ in range(200):
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                time.sleep(0.05)
        assert body is not None
        assert body["status"] == "healthy"
        assert body["circuit_breakers"]["redis"]["fail_max"] == 7
        assert body["event_loop"]["responsive"] is True
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NOVA_BREAKER_RAG_API_FAIL_MAX", "0"),
        ("NOVA_BREAKER_REDIS_RESET_TIMEOUT", "-1"),
        ("NOVA_BREAKER_VOICE_PROCESSING_TIMEOUT", "soon"),
        ("NOVA_BREAKER_RAG_API_FAIL_MAXX", "3"),
    ],
)
def test_the_module_refuses_bad_configuration_naming_the_variable(variable, value):
    process = run_module({variable: value, "NOVA_HEALTH_PORT": str(free_port())})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert variable in stderr
    assert "Traceback" not in stderr
