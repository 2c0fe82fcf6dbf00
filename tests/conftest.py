"""Shared test helpers: a hand-moved clock, an event recorder, free ports, real services,
Prometheus text parsing, and Debian's promtool and prometheus."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from child_process import RedisServer, stop
from child_process import free_port as _free_port
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from resilience import Breaker, BreakerConfig, Outcome, State


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Recorder:
    """A breaker listener that keeps every event, thread-safely."""

    transitions: list[tuple[State, State]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_state_change(self, breaker: Breaker, old: State, new: State) -> None:
        with self.lock:
            self.transitions.append((old, new))

    def on_call(self, breaker, outcome, duration_s, exc) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def count(self, outcome: Outcome) -> int:
        return self.outcomes.count(outcome)

    def opens(self) -> int:
        return sum(1 for _, new in self.transitions if new is State.OPEN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_breaker(clock, recorder):
    """Build a breaker on the fake clock with the recorder attached."""

    def make(**overrides) -> Breaker:
        values = {"name": "dep", "fail_max": 3, "reset_timeout": 30.0, "timeout": None}
        values.update(overrides)
        return Breaker(BreakerConfig(**values), listeners=(recorder,), clock=clock)

    return make


ROOT = Path(__file__).resolve().parents[1]
RAG = [sys.executable, "-m", "rag"]


@pytest.fixture(scope="session")
def free_port():
    """A function that returns a TCP port nobody listens on right now."""
    return _free_port


@dataclass
class ServiceProcess:
    """A child process serving HTTP on ``port``; ``stop`` kills it, ``start`` runs it again."""

    args: list[str]
    env: dict[str, str]
    port: int
    process: subprocess.Popen[str] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_path: str = "/health", timeout: float = 60.0) -> ServiceProcess:
        with self.log.open("a") if self.log else open(os.devnull, "w") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=log,
                text=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.log.read_text() if self.log else ""
                raise RuntimeError(f"{self.args} exited {self.process.returncode}:\n{output}")
            try:
                httpx.get(self.url + wait_path, timeout=1.0)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.args} did not answer on port {self.port} within {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop(self.process, sig)
        self.process = None


def _rag_ingest(data_dir: Path, *paths: Path, extra: tuple[str, ...] = ()) -> str:
    result = subprocess.run(
        [*RAG, "--data-dir", str(data_dir), "ingest", *map(str, paths), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def rag_ingest():
    """A function that runs ``python -m rag ingest`` and returns what it printed."""
    return _rag_ingest


@pytest.fixture(scope="module")
def rag_service(tmp_path_factory):
    """A factory for real ``python -m rag serve`` processes on free ports; all stopped after."""
    logs = tmp_path_factory.mktemp("logs")
    started: list[ServiceProcess] = []

    def make(data_dir: Path, **env: str) -> ServiceProcess:
        port = _free_port()
        service = ServiceProcess(
            [*RAG, "--data-dir", str(data_dir), "serve", "--port", str(port)],
            {"NOVA_RAG_RELOAD_CHECK_S": "0.1", **env},
            port,
            log=logs / f"rag-{port}.log",
        )
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


class StubServer:
    """A real HTTP server on a free port that replies as the test says.

    It stands in for services that cannot run here (an OpenAI-compatible model server)
    and for failure modes a healthy service never shows (a 500, a hang, a non-JSON body).
    """

    def __init__(self) -> None:
        self.status = 200
        self.body: object = {}
        self.delay = 0.0
        self.requests: list[dict[str, object]] = []
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                Starlette(routes=[Route("/{path:path}", self._reply, methods=["GET", "POST"])]),
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def reply(self, status: int = 200, body: object = None, delay: float = 0.0) -> None:
        self.status, self.body, self.delay = status, {} if body is None else body, delay

    async def _reply(self, request: Request) -> Response:
        raw = await request.body()
        self.requests.append(
            {"path": request.url.path, "json": json.loads(raw) if raw.strip() else None}
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(self.body, str):
            return PlainTextResponse(self.body, status_code=self.status)
        return JSONResponse(self.body, status_code=self.status)

    def start(self) -> StubServer:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture
def stub_server():
    server = StubServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_redis_server(tmp_path_factory):
    """A redis-server shared by one test module, for suites that run an app around it."""
    server = RedisServer(_free_port(), tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


@pytest.fixture
def redis_server(tmp_path_factory, free_port):
    """A running redis-server on a free port (never the machine's 6379); killed after."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


#: One sample of a Prometheus exposition: its name and its sorted labels.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def _metric_samples(text: str) -> dict[SampleKey, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def metric_samples():
    """A function that parses Prometheus text into ``{(name, sorted labels): value}``."""
    return _metric_samples


PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


@pytest.fixture
def promtool():
    """``promtool(*args, cwd=..., stdin=...)``: Debian's promtool; fails the test unless it
    exits 0, and returns what it printed."""
    assert PROMTOOL, "promtool is needed (apt-get install prometheus)"

    def run(*args: str, cwd: Path | None = None, stdin: str | None = None) -> str:
        result = subprocess.run(
            [PROMTOOL, *args],
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    return run


@pytest.fixture
def check_metrics(promtool):
    """A function that fails the test unless ``promtool check metrics`` accepts the text."""

    def check(text: str) -> None:
        promtool("check", "metrics", stdin=text)

    return check


@dataclass
class PrometheusServer:
    """Debian's real ``prometheus`` as a child process, with the HTTP API calls tests need."""

    service: ServiceProcess

    @property
    def url(self) -> str:
        return self.service.url

    def api(self, path: str, **params: str) -> dict:
        """The ``data`` of a successful ``/api/v1`` answer; anything else fails the test."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """The result of an instant query."""
        return self.api("query", query=expr)["result"]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict]:
        """Poll an instant query until it returns something (the deadline fails the test)."""
        deadline = time.monotonic() + timeout
        while not (result := self.query(expr)):
            assert time.monotonic() < deadline, f"{expr} stayed empty for {timeout} s"
            time.sleep(0.2)
        return result

    def wait_for_targets(self, jobs: set[str], timeout: float = 30.0) -> None:
        """Poll ``/api/v1/targets`` until every target of ``jobs`` has been scraped and is up."""
        deadline = time.monotonic() + timeout
        while True:
            targets = self.api("targets", state="active")["activeTargets"]
            health = {target["labels"]["job"]: target["health"] for target in targets}
            if all(health.get(job) == "up" for job in jobs):
                return
            assert time.monotonic() < deadline, f"targets not up after {timeout} s: {targets}"
            time.sleep(0.2)


@pytest.fixture
def prometheus(tmp_path):
    """A factory: ``prometheus(config_file)`` runs Prometheus on a free port; stopped after."""
    assert PROMETHEUS, "prometheus is needed (apt-get install prometheus)"
    started: list[ServiceProcess] = []

    def start(config_file: Path) -> PrometheusServer:
        port = _free_port()
        service = ServiceProcess(
            [
                PROMETHEUS,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / f'prometheus-{port}'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            {},
            port,
            log=tmp_path / f"prometheus-{port}.log",
        )
        started.append(service)
        return PrometheusServer(service.start(wait_path="/-/ready"))

    yield start
    for service in started:
        service.stop()
