"""``chainlit run -w`` reloads keep one runtime: one health port, one set of breakers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Chainlit's watcher reloads with load_module(force_refresh=True), which drops from
# sys.modules every module under the app file's folder: the whole project.
SCRIPT = """
import asyncio, json, os, sys
import httpx
from chainlit.config import load_module

APP = sys.argv[1]

async def main():
    load_module(APP)
    import assistant.runtime as before
    first = await before.get_runtime()
    reply = await first.assistant.turn("s", "What is degraded mode?")
    load_module(APP, force_refresh=True)
    import assistant.runtime as after
    second = await after.get_runtime()
    port = os.environ["NOVA_HEALTH_PORT"]
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
    print(json.dumps({
        "reloaded": before is not after,
        "same_runtime": first is second,
        "degraded": reply.degraded,
        "rag_failures": health["circuit_breakers"]["rag_api"]["fail_count"],
    }))
    await after.shutdown_runtime()

asyncio.run(main())
"""


def test_a_reload_keeps_the_runtime_and_the_health_port(tmp_path, free_port):
    app_root = tmp_path / "app"
    app_root.mkdir()
    shutil.copytree(
        ROOT / ".chainlit", app_root / ".chainlit", ignore=shutil.ignore_patterns("translations")
    )
    env = {
        **os.environ,
        "CHAINLIT_APP_ROOT": str(app_root),
        "NOVA_HEALTH_PORT": str(free_port()),
        "NOVA_RAG_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: a failure
        "NOVA_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "NOVA_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "chainlit_app_voice.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {
        "reloaded": True,
        "same_runtime": True,
        "degraded": True,
        "rag_failures": 1,
    }
