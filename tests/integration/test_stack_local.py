"""``make up`` / ``status`` / ``down`` in local mode: real processes on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(tmp_path, free_port, rag_ingest):
    """Run ``deploy/stack.py`` with every port and path of its own."""
    rag_ingest(tmp_path / "rag", ROOT / "knowledge" / "nova-voice.md")
    env = {
        **os.environ,
        "NOVA_DATA_DIR": str(tmp_path / "state"),
        "NOVA_RAG_DATA_DIR": str(tmp_path / "rag"),
        "NOVA_UI_PORT": str(free_port()),
        "NOVA_HEALTH_PORT": str(free_port()),
        "NOVA_RAG_PORT": str(free_port()),
        "NOVA_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "NOVA_VOICE_ENABLED": "false",
        "NOVA_UP_TIMEOUT_S": "60",
    }

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "deploy/stack.py", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    run.env = env
    yield run
    run("down")


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_up_status_up_again_and_down(stack):
    env = stack.env
    started = stack("up")
    assert started.returncode == 0, started.stderr
    assert "redis: starting" in started.stdout  # nothing answered on its port: its own Redis
    assert f"open http://127.0.0.1:{env['NOVA_UI_PORT']}" in started.stdout

    reply = httpx.post(
        f"http://127.0.0.1:{env['NOVA_UI_PORT']}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Can I talk to Nova?"}]},
        timeout=30,
    ).json()
    assert reply["choices"][0]["message"]["content"]
    assert reply["nova"]["degraded"] is False

    status = stack("status")
    assert status.returncode == 0
    assert "status: healthy" in status.stdout
    assert "rag_api" in status.stdout

    again = stack("up")
    assert again.returncode == 0
    assert again.stdout.count("started by make up") == 3

    stopped = stack("down")
    assert stopped.returncode == 0
    ports = [env["NOVA_UI_PORT"], env["NOVA_HEALTH_PORT"], env["NOVA_RAG_PORT"]]
    ports.append(env["NOVA_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    assert all(refuses(int(port)) for port in ports)
    assert stack("status").returncode == 1


def test_up_names_what_did_not_come_up(stack):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(stack.env["NOVA_UI_PORT"])))
        taken.listen()
        result = stack("up")
    assert result.returncode == 1
    assert "did not come up: app" in result.stderr
    assert "app.log" in result.stderr
