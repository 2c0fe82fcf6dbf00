"""Child processes the benchmarks start and stop, each on a free port of 127.0.0.1.

- ``redis_server``: a redis-server that never persists;
- ``ingest`` and ``rag_service``: ``python -m rag ingest`` and ``python -m rag serve``;
- ``lite_services``: both of them, over a BM25-only index of ``knowledge/``;
- ``nova_app``: ``python -m assistant``, the app as ``make up`` starts it (UI and API port,
  health port), in a temporary app root so Chainlit writes nothing into the checkout.

Each context manager waits until its process answers (with a deadline, and the log in
the error if it exits first) and stops it afterwards: SIGTERM, then SIGKILL after 15 s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "KNOWLEDGE",
    "ROOT",
    "Running",
    "clean_env",
    "free_port",
    "ingest",
    "lite_services",
    "nova_app",
    "rag_service",
    "redis_server",
    "stop",
]

ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE = ROOT / "knowledge"
RAG = [sys.executable, "-m", "rag"]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT_S = 180.0


@dataclass
class Running:
    """A started child process: where it answers, and its first health reply if it has one."""

    url: str
    process: subprocess.Popen[bytes]
    health: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def clean_env() -> dict[str, str]:
    """The environment without ``NOVA_*``: every service's defaults, no language model."""
    return {key: value for key, value in os.environ.items() if not key.startswith("NOVA_")}


def wait_until(
    ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll ``ready`` until it is true; fail with the log if ``process`` exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if process.poll() is not None:
            output = log.read_text(errors="replace") if log.is_file() else ""
            raise RuntimeError(f"{what} exited {process.returncode}:\n{output}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def redis_ping(port: int) -> bool:
    """Whether a Redis answers PING on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[Running]:
    """A redis-server on a free port that never persists."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "redis.log"
    args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: redis_ping(port), "redis-server", process, log)
        yield Running(f"redis://127.0.0.1:{port}/0", process)
    finally:
        stop(process)


def ingest(
    data_dir: Path,
    *paths: Path,
    extra: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> float:
    """``python -m rag ingest`` (``knowledge/`` by default); returns its wall seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        [*RAG, "--data-dir", str(data_dir), "ingest", *map(str, paths or (KNOWLEDGE,)), *extra],
        cwd=ROOT,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ingest exited {result.returncode}:\n{result.stderr}")
    return time.perf_counter() - started


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness check: ``url`` answers 200."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    return check


@contextlib.contextmanager
def rag_service(
    data_dir: Path, log_path: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[Running]:
    """``python -m rag serve`` on a free port, with its first ``/health`` reply."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*RAG, "--data-dir", str(data_dir), "serve", "--port", str(port)],
            cwd=ROOT,
            env=dict(env) if env is not None else None,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(http_ok(url + "/health"), "rag serve", process, log_path)
        yield Running(url, process, dict(httpx.get(url + "/health", timeout=5.0).json()))
    finally:
        stop(process)


@contextlib.contextmanager
def lite_services(workdir: Path) -> Iterator[tuple[Running, Running]]:
    """Redis and a BM25-only knowledge service over ``knowledge/``: the load lands on Nova.

    No model to load and a few milliseconds a question, so the load benchmarks measure the
    assistant and its breakers rather than the embedding model.
    """
    ingest(workdir / "index", extra=("--no-embeddings",), env=clean_env())
    rag_env = {**clean_env(), "NOVA_RAG_RETRIEVAL": "bm25"}
    with (
        redis_server(workdir / "redis") as redis,
        rag_service(workdir / "index", workdir / "rag.log", env=rag_env) as rag,
    ):
        yield redis, rag


def app_root(workdir: Path) -> Path:
    """A Chainlit app root with Nova's configuration and the offline frontend."""
    from assistant.offline_ui import build_offline_frontend

    root = workdir / "app-root"
    (root / ".chainlit").mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / ".chainlit" / "config.toml", root / ".chainlit" / "config.toml")
    shutil.copy2(ROOT / "chainlit.md", root / "chainlit.md")
    build_offline_frontend(root / ".nova" / "chainlit-frontend")
    return root


@contextlib.contextmanager
def nova_app(
    workdir: Path, *, redis_url: str, rag_url: str, env: Mapping[str, str] | None = None
) -> Iterator[Running]:
    """``python -m assistant`` on free ports; ``extra["health_url"]`` is its health port.

    ``env`` adds ``NOVA_*`` settings to the defaults (voice off unless it says otherwise).
    """
    ui_port, health_port = free_port(), free_port()
    url, health_url = f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{health_port}"
    log_path = workdir / "app.log"
    settings = {
        "CHAINLIT_APP_ROOT": str(app_root(workdir)),
        "NOVA_UI_PORT": str(ui_port),
        "NOVA_HEALTH_PORT": str(health_port),
        "NOVA_REDIS_URL": redis_url,
        "NOVA_RAG_URL": rag_url,
        "NOVA_DATA_DIR": str(workdir / "data"),
        "NOVA_VOICE_ENABLED": "false",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "assistant"],
            cwd=ROOT,
            env={**clean_env(), **settings},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(http_ok(url + "/v1/models"), "python -m assistant", process, log_path)
        wait_until(lambda: _answers(health_url + "/health"), "the health port", process, log_path)
        yield Running(url, process, extra={"health_url": health_url, "log": str(log_path)})
    finally:
        stop(process)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code in (200, 503)
    except httpx.TransportError:
        return False
