"""Shared test helpers: a hand-moved clock, an event recorder, free ports, real services."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
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
        log = self.log.open("a") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=log, text=True
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
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
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
