"""Nova in containers: ``make base-image``, ``make images``, ``make up RUNTIME=podman``, then
dependency containers stopped and started under a chat load, then ``make down``.

Everything is real: podman builds the images from the wheelhouse with no network, and
podman-compose runs them on their own project name and free ports. Breakers half-open
after 2 s here (``NOVA_BREAKER_*_RESET_TIMEOUT``) instead of 15 s and 30 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
LOCAL_BASE = "localhost/nova-base:bookworm"


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    """Run podman and return what it printed."""
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def images() -> None:
    """The base image (debootstrap) and Nova's images, built by the Makefile's targets."""
    if shutil.which("podman") is None:
        if os.environ.get("CI"):
            pytest.fail("podman is not installed: .ci/run installs it")
        pytest.skip("podman is not installed (apt-get install podman debootstrap)")
    for target in (
        [] if podman("image", "exists", LOCAL_BASE).returncode == 0 else ["base-image"]
    ) + ["images"]:
        built = subprocess.run(["make", target], cwd=ROOT, capture_output=True, text=True)
        assert built.returncode == 0, f"make {target}:\n{built.stdout}\n{built.stderr}"


@dataclass
class Stack:
    """A running compose project and the ways to talk to it."""

    project: str
    env: dict[str, str]

    def make(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=600
        )

    def url(self, port: str, path: str) -> str:
        return f"http://127.0.0.1:{self.env[port]}{path}"

    def health(self) -> dict:
        return httpx.get(self.url("NOVA_HEALTH_PORT", "/health"), timeout=5).json()

    def states(self) -> dict[str, str]:
        return {name: b["state"] for name, b in self.health()["circuit_breakers"].items()}

    def turn(self, text: str, user: str) -> dict:
        """One chat turn over the OpenAI-compatible API; it must be answered."""
        response = httpx.post(
            self.url("NOVA_UI_PORT", "/v1/chat/completions"),
            json={"messages": [{"role": "user", "content": text}], "user": user},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["choices"][0]["message"]["content"].strip()
        return body

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"


@pytest.fixture(scope="module")
def stack(images, tmp_path_factory, free_port) -> Iterator[Stack]:
    project = f"novatest{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "NOVA_DATA_DIR": str(tmp_path_factory.mktemp("state")),
        "NOVA_UI_PORT": str(free_port()),
        "NOVA_HEALTH_PORT": str(free_port()),
        "NOVA_RAG_PORT": str(free_port()),
        "NOVA_BREAKER_REDIS_RESET_TIMEOUT": "2",
        "NOVA_BREAKER_RAG_API_RESET_TIMEOUT": "2",
        "NOVA_UP_TIMEOUT_S": "180",
    }
    stack = Stack(project, env)
    try:
        yield stack
    finally:
        stack.make("down")
        for kind in ("container", "pod", "volume", "network"):
            listed = podman(
                kind, "ls", "--quiet", "--filter", f"label=io.podman.compose.project={project}"
            )
            ids = listed.stdout.split()
            if ids:
                podman(kind, "rm", "--force", *ids)


def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds, failing with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_up_answers_then_survives_dependency_outages_then_down(stack: Stack) -> None:
    up = stack.make("up", "RUNTIME=podman")
    assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
    assert f"open http://127.0.0.1:{stack.env['NOVA_UI_PORT']}" in up.stdout

    assert stack.health()["status"] == "healthy"
    first = stack.turn("How do I talk to Nova instead of typing?", "alice")
    assert first["nova"]["degraded"] is False
    assert "status: healthy" in stack.make("status").stdout

    # Redis stopped: every turn is still answered, and the redis circuit alone opens.
    assert podman("stop", "--time", "1", stack.container("redis")).returncode == 0
    for i in range(8):
        stack.turn(f"What is degraded mode? ({i})", "bob")
    assert stack.states() == {
        "rag_api": "closed",
        "redis": "open",
        "voice_processing": "closed",
    }
    assert stack.health()["status"] == "degraded"
    assert podman("start", stack.container("redis")).returncode == 0
    until(
        lambda: stack.turn("Is memory back?", "bob") and stack.states()["redis"] == "closed",
        60,
        "the redis circuit to close after Redis came back",
    )

    # The knowledge service stopped: fallback replies, the rag_api circuit opens, then closes.
    assert podman("stop", "--time", "1", stack.container("rag")).returncode == 0
    replies = [stack.turn(f"How do I add documents? ({i})", "carol") for i in range(5)]
    assert all(reply["nova"]["degraded"] for reply in replies)
    assert stack.states()["rag_api"] == "open"
    assert stack.states()["redis"] == "closed"
    assert podman("start", stack.container("rag")).returncode == 0
    until(
        lambda: (
            stack.turn("How do I add documents?", "carol") and stack.states()["rag_api"] == "closed"
        ),
        120,
        "the rag_api circuit to close after the knowledge service came back",
    )
    assert stack.health()["status"] == "healthy"

    # The turns bob took while Redis was down were written back once it returned.
    count = podman("exec", stack.container("redis"), "redis-cli", "zcard", "nova:session:bob:turns")
    assert int(count.stdout) >= 9, count

    # The app starts on its own while Redis and the knowledge service are down (no start
    # order in compose) and answers in degraded mode until they return.
    assert (
        podman("stop", "--time", "1", stack.container("redis"), stack.container("rag")).returncode
        == 0
    )
    assert podman("restart", "--time", "1", stack.container("app")).returncode == 0
    until(
        lambda: podman("healthcheck", "run", stack.container("app")).returncode == 0,
        120,
        "the app to start without its dependencies",
    )
    assert stack.turn("How do I add documents?", "dave")["nova"]["degraded"] is True
    assert podman("start", stack.container("redis"), stack.container("rag")).returncode == 0
    until(
        lambda: (
            stack.turn("How do I add documents?", "dave") and stack.health()["status"] == "healthy"
        ),
        120,
        "every circuit to close once Redis and the knowledge service are back",
    )

    down = stack.make("down")
    assert down.returncode == 0, down.stderr
    running = podman(
        "ps", "--all", "--quiet", "--filter", f"label=io.podman.compose.project={stack.project}"
    )
    assert running.stdout.split() == []
    for port in ("NOVA_UI_PORT", "NOVA_HEALTH_PORT", "NOVA_RAG_PORT"):
        with pytest.raises(httpx.ConnectError):
            httpx.get(stack.url(port, "/"), timeout=2)


def test_images_hold_no_compilers_pip_or_wheels(images) -> None:
    for image in ("localhost/nova-rag:latest", "localhost/nova-app:latest"):
        found = podman(
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            image,
            "-c",
            "command -v gcc cc pip pip3 || true; ls /wheels 2>/dev/null || true",
        )
        assert found.returncode == 0, found.stderr
        assert found.stdout.strip() == "", f"{image} holds {found.stdout}"
