"""``make up`` / ``down`` / ``status`` / ``logs`` for Nova, as local processes or in podman.

Local (the default): ``up`` starts what is not already running (Redis unless one answers,
the RAG service after indexing ``knowledge/`` on the first run, the app), each detached
with its log in ``.nova/logs`` and its pid in ``.nova/run``. ``down`` stops exactly the
processes ``up`` started.

Podman (``--runtime podman``): ``up`` runs ``podman-compose.yml`` and polls each
container's own healthcheck; ``down`` removes the containers and keeps the volumes.

Either way ``up`` waits until everything is healthy and returns, naming whatever did not
come up; ``down``, ``status`` and ``logs`` act on the runtime ``up`` used. Ports and paths
come from the same ``NOVA_*`` variables the services read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("NOVA_DATA_DIR", ROOT / ".nova"))
RUN, LOGS = STATE / "run", STATE / "logs"
RUNTIME_FILE = RUN / "runtime"
WAIT_S = float(os.environ.get("NOVA_UP_TIMEOUT_S", "90"))
PYTHON = sys.executable


def env(name: str, default: str) -> str:
    """A setting from the environment, as the services read it."""
    return os.environ.get(name, default)


UI_PORT = int(env("NOVA_UI_PORT", "8000"))
HEALTH_PORT = int(env("NOVA_HEALTH_PORT", "8001"))
RAG_HOST, RAG_PORT = env("NOVA_RAG_HOST", "127.0.0.1"), int(env("NOVA_RAG_PORT", "8002"))
RAG_DATA = Path(env("NOVA_RAG_DATA_DIR", str(STATE / "rag")))
REDIS_URL = env("NOVA_REDIS_URL", "redis://127.0.0.1:6379/0")
COMPOSE_PROJECT = env("COMPOSE_PROJECT_NAME", "nova")


@dataclass(frozen=True)
class Service:
    """A process ``up`` may start, and how to tell that it is ready."""

    name: str
    command: list[str]
    ready: Callable[[], bool]
    url: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pidfile(self) -> Path:
        """Where ``up`` records the pid of the process it started."""
        return RUN / f"{self.name}.pid"

    def pid(self) -> int | None:
        """The pid ``up`` recorded, if that process is still alive."""
        try:
            pid = int(self.pidfile.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def exited(self) -> bool:
        """``up`` started it and it is gone."""
        return self.pidfile.exists() and self.pid() is None


def answers_http(url: str) -> Callable[[], bool]:
    """A readiness check: ``url`` answers without a server error."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    return check


def answers_redis() -> bool:
    """A readiness check: Redis answers PING."""
    parsed = urlparse(REDIS_URL)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), 1
        ) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def services() -> list[Service]:
    """Redis, the RAG service and the app, in start order."""
    redis_port = urlparse(REDIS_URL).port or 6379
    return [
        Service(
            "redis",
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(STATE),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            answers_redis,
            REDIS_URL,
        ),
        Service(
            "rag",
            [PYTHON, "-m", "rag", "serve"],
            answers_http(f"http://{RAG_HOST}:{RAG_PORT}/health"),
            f"http://{RAG_HOST}:{RAG_PORT}",
        ),
        Service(
            "app",
            [PYTHON, "-m", "assistant"],
            answers_http(f"http://127.0.0.1:{UI_PORT}/v1/models"),
            f"http://127.0.0.1:{UI_PORT}",
            {"NOVA_RAG_URL": env("NOVA_RAG_URL", f"http://{RAG_HOST}:{RAG_PORT}")},
        ),
    ]


def start(service: Service) -> str:
    """Start one service unless it already runs; returns what happened, in words."""
    if service.ready():
        owner = "started by make up" if service.pid() else "already running"
        return f"{service.name}: {owner} ({service.url})"
    if service.name == "redis" and not _can_start_redis():
        return f"redis: none answers at {REDIS_URL}; until one does, sessions stay in memory"
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{service.name}.log").open("ab") as log:
        process = subprocess.Popen(
            service.command,
            cwd=ROOT,
            env={**os.environ, **service.env},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    service.pidfile.write_text(str(process.pid))
    return f"{service.name}: starting ({service.url})"


def wait(ready: Callable[[], bool], deadline: float, exited: Callable[[], bool]) -> bool:
    """Whether ``ready()`` came true before ``deadline`` (False at once once ``exited()``)."""
    while time.monotonic() < deadline:
        if ready():
            return True
        if exited():
            return False  # its log says why
        time.sleep(0.2)
    return ready()


def report(failed: list[str], where: str) -> int:
    """Print where Nova is, or what did not come up and where to look."""
    if failed:
        print(f"did not come up: {', '.join(failed)} (see {where})", file=sys.stderr)
        return 1
    print(f"Nova is up: open http://127.0.0.1:{UI_PORT}")
    print(
        f"health: http://127.0.0.1:{HEALTH_PORT}/health   metrics: http://127.0.0.1:{HEALTH_PORT}/metrics"
    )
    print("stop with: make down")
    return 0


def up_local() -> int:
    """Start what is missing, wait for each, print where everything is."""
    if not (RAG_DATA / "CURRENT").is_file():
        print("indexing knowledge/ (first run)...", flush=True)
        subprocess.run([PYTHON, "-m", "rag", "ingest", "knowledge/"], cwd=ROOT, check=True)
    subprocess.run(
        [PYTHON, "-m", "assistant.offline_ui", str(ROOT / ".nova" / "chainlit-frontend")],
        cwd=ROOT,
        check=True,
    )
    failed = []
    for service in services():
        print(start(service), flush=True)
        if service.name == "redis" and not _can_start_redis() and not service.ready():
            continue
        if not wait(service.ready, time.monotonic() + WAIT_S, service.exited):
            failed.append(service.name)
    return report(failed, ", ".join(str(LOGS / f"{name}.log") for name in failed))


def down_local() -> int:
    """Stop the processes ``up`` started, and nothing else."""
    for service in reversed(services()):
        pid = service.pid()
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while service.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if service.pid() is not None:
                os.killpg(pid, signal.SIGKILL)
            print(f"{service.name}: stopped")
        service.pidfile.unlink(missing_ok=True)
    return 0


def status() -> int:
    """The breaker table from the app's ``/health``."""
    try:
        body = httpx.get(f"http://127.0.0.1:{HEALTH_PORT}/health", timeout=3).json()
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        print(f"Nova's health port does not answer ({exc}); is it up? (make up)", file=sys.stderr)
        return 1
    heartbeat = body["event_loop"]["heartbeat_age_s"]
    print(f"status: {body['status']}   event loop heartbeat: {heartbeat} s")
    print(f"{'breaker':<18}{'state':<11}{'failures':>9}{'retry in':>10}")
    for name, breaker in body["circuit_breakers"].items():
        retry = f"{breaker['retry_after_s']:.0f} s" if breaker["state"] == "open" else "-"
        print(f"{name:<18}{breaker['state']:<11}{breaker['fail_count']:>9}{retry:>10}")
    return 0


def logs_local() -> int:
    """Follow every service's log."""
    files = sorted(LOGS.glob("*.log"))
    if not files:
        print("no logs yet: make up first", file=sys.stderr)
        return 1
    return subprocess.call(["tail", "-n", "20", "-F", *map(str, files)])


def compose(*args: str) -> list[str]:
    """A podman-compose command line for Nova's project (podman-compose is in the venv)."""
    podman_compose = str(Path(PYTHON).parent / "podman-compose")
    return [podman_compose, "--project-name", COMPOSE_PROJECT, "-f", "podman-compose.yml", *args]


def container_healthy(service: str) -> Callable[[], bool]:
    """A readiness check: the container's own healthcheck (from podman-compose.yml) passes."""
    name = f"{COMPOSE_PROJECT}_{service}_1"

    def check() -> bool:
        run = subprocess.run(["podman", "healthcheck", "run", name], capture_output=True)
        return run.returncode == 0

    return check


def up_podman() -> int:
    """``podman-compose up -d``, then wait for each container's healthcheck."""
    if shutil.which("podman") is None:
        print("RUNTIME=podman needs podman: apt-get install podman", file=sys.stderr)
        return 1
    started = subprocess.run(compose("up", "-d"), cwd=ROOT, capture_output=True, text=True)
    if started.returncode != 0:
        print(f"podman-compose up failed:\n{started.stderr}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + WAIT_S
    failed = []
    for service in ("redis", "rag", "app"):
        print(f"{service}: starting ({COMPOSE_PROJECT}_{service}_1)", flush=True)
        if not wait(container_healthy(service), deadline, lambda: False):
            failed.append(service)
    return report(failed, f"podman logs {COMPOSE_PROJECT}_<service>_1")


def down_podman() -> int:
    """Remove the containers; the volumes (sessions, index) stay for the next ``up``."""
    return subprocess.call(compose("down"), cwd=ROOT)


def logs_podman() -> int:
    """Follow the containers' logs."""
    return subprocess.call(compose("logs", "-f", "--tail", "20"), cwd=ROOT)


def _can_start_redis() -> bool:
    """Only a local Redis is ours to start, and only with redis-server installed."""
    local = urlparse(REDIS_URL).hostname in ("127.0.0.1", "localhost")
    path = os.environ.get("PATH", "").split(os.pathsep)
    return local and any(Path(d, "redis-server").is_file() for d in path)


RUNTIMES: dict[str, dict[str, Callable[[], int]]] = {
    "local": {"up": up_local, "down": down_local, "status": status, "logs": logs_local},
    "podman": {"up": up_podman, "down": down_podman, "status": status, "logs": logs_podman},
}


def main(argv: list[str] | None = None) -> int:
    """``up [--runtime local|podman]``, ``down``, ``status`` or ``logs``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["up", "down", "status", "logs"])
    parser.add_argument("--runtime", choices=sorted(RUNTIMES), help="for up (default local)")
    args = parser.parse_args(argv)
    recorded = RUNTIME_FILE.read_text().strip() if RUNTIME_FILE.is_file() else None
    if args.command == "down":
        code = RUNTIMES[recorded or "local"]["down"]()
        RUNTIME_FILE.unlink(missing_ok=True)
        return code
    if args.command != "up":
        return RUNTIMES[recorded or "local"][args.command]()
    runtime = args.runtime or "local"
    if recorded not in (None, runtime):
        print(f"Nova is already up with RUNTIME={recorded}: make down first", file=sys.stderr)
        return 1
    RUN.mkdir(parents=True, exist_ok=True)
    RUNTIME_FILE.write_text(runtime)
    return RUNTIMES[runtime]["up"]()


if __name__ == "__main__":
    sys.exit(main())
