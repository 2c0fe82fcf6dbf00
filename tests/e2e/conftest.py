"""The whole app as a user runs it: ``python -m assistant`` with a real Redis and RAG service.

``nova_app`` (one per test module) starts, on free ports:

- a redis-server (never persisted),
- ``python -m rag serve`` on a small index of three documents from ``knowledge/``,
- ``python -m assistant`` from the repository root with ``CHAINLIT_APP_ROOT`` pointing at
  a temporary app root that holds a copy of ``.chainlit/config.toml``, ``chainlit.md`` and
  the offline frontend, so Chainlit writes its files there and not into the checkout.

The ``rag_api`` circuit stays open for 60 s once it opens, longer than any test, and a
call to the knowledge service times out after 3 s. A test that stops the knowledge
service does it through ``rag_outage``, which afterwards starts the service again and
restarts the app, so the next test meets closed circuits whatever order tests run in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from child_process import free_port, stop, wait_until
from openai import AsyncOpenAI
from playwright.async_api import BrowserContext, async_playwright

from assistant.offline_ui import build_offline_frontend
from assistant.voice.transcripts import word_error_rate

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("nova-voice.md", "ops-circuit-breakers.md", "nova-getting-started.md")

CHROMIUM = "/usr/bin/chromium"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
#: Default timeout of every browser action and expectation.
BROWSER_WAIT_MS = 30_000

#: Screenshots saved by the browser tests, listed at the end of the run.
SCREENSHOTS: list[Path] = []


@dataclass
class NovaApp:
    """``python -m assistant`` on free ports, with the knowledge service it talks to.

    ``redis`` is the ``RedisServer`` and ``rag`` the ``ServiceProcess`` from
    ``tests/conftest.py``'s ``module_redis_server`` and ``rag_service``.
    """

    root: Path
    data_dir: Path
    log: Path
    redis: Any
    rag: Any
    ui_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CHAINLIT_APP_ROOT": str(self.root),
            "NOVA_UI_PORT": str(self.ui_port),
            "NOVA_HEALTH_PORT": str(self.health_port),
            "NOVA_REDIS_URL": self.redis.url,
            "NOVA_RAG_URL": self.rag.url,
            "NOVA_DATA_DIR": str(self.data_dir),
            "NOVA_BREAKER_RAG_API_RESET_TIMEOUT": "60",
            "NOVA_BREAKER_RAG_API_TIMEOUT": "3",
        }

    def _answers(self) -> bool:
        try:
            models = httpx.get(f"{self.url}/v1/models", timeout=1.0)
            health = httpx.get(f"{self.health_url}/health", timeout=1.0)
        except httpx.TransportError:
            return False
        return models.status_code == 200 and health.status_code in (200, 503)

    def start(self) -> NovaApp:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "assistant"],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, "python -m assistant", self.process, self.log)
        return self

    def stop(self) -> None:
        stop(self.process)
        self.process = None

    def restart(self) -> NovaApp:
        """A new app process: every breaker closed again; sessions and cache stay in Redis."""
        self.stop()
        return self.start()

    def stop_rag(self) -> None:
        """Kill the knowledge service: connections to it are refused from now on."""
        self.rag.stop(signal.SIGKILL)

    def start_rag(self) -> None:
        self.rag.start()

    @property
    def rag_running(self) -> bool:
        return self.rag.process is not None

    def rag_answer(self, question: str) -> str:
        """What the knowledge service itself answers, asked directly."""
        response = httpx.post(f"{self.rag.url}/query", json={"question": question}, timeout=10)
        response.raise_for_status()
        return str(response.json()["answer"])

    def stored_questions(self, session_id: str) -> list[str]:
        """The questions Redis holds for a conversation, oldest first."""
        client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            members = client.zrange(f"nova:session:{session_id}:turns", 0, -1)
        finally:
            client.close()
        return [json.loads(member)["q"] for member in members]

    def health(self) -> dict[str, object]:
        return httpx.get(f"{self.health_url}/health", timeout=5.0).json()

    def breaker_state(self, name: str) -> str:
        breakers = self.health()["circuit_breakers"]
        assert isinstance(breakers, dict)
        return str(breakers[name]["state"])


@pytest.fixture(scope="session")
def offline_frontend(tmp_path_factory) -> Path:
    """The offline Chainlit frontend, built once per run and copied into each app root."""
    return build_offline_frontend(tmp_path_factory.mktemp("ui") / "chainlit-frontend")


@pytest.fixture(scope="session")
def e2e_index(tmp_path_factory, rag_ingest) -> Path:
    data = tmp_path_factory.mktemp("e2e-index")
    rag_ingest(data, *(ROOT / "knowledge" / name for name in DOCS))
    return data


@pytest.fixture(scope="module")
def nova_app(
    tmp_path_factory, offline_frontend, e2e_index, rag_service, module_redis_server
) -> Iterator[NovaApp]:
    """The running app, its Redis and its knowledge service, for one test module."""
    base = tmp_path_factory.mktemp("nova-app")
    root = base / "app-root"
    (root / ".chainlit").mkdir(parents=True)
    shutil.copy2(ROOT / ".chainlit" / "config.toml", root / ".chainlit" / "config.toml")
    shutil.copy2(ROOT / "chainlit.md", root / "chainlit.md")
    shutil.copytree(offline_frontend, root / ".nova" / "chainlit-frontend")

    rag = rag_service(e2e_index).start()  # rag_service stops it at the latest
    app = NovaApp(
        root=root,
        data_dir=base / "data",
        log=base / "app.log",
        redis=module_redis_server,
        rag=rag,
    )
    try:
        app.start()
        yield app
    finally:
        app.stop()
        rag.stop()


@contextlib.asynccontextmanager
async def _offline_browser(*args: str) -> AsyncIterator[tuple[BrowserContext, list[str]]]:
    never = asyncio.Event()  # never set: requests to other hosts hang, they are not refused
    outside: list[str] = []

    async def only_this_machine(route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            outside.append(route.request.url)
            await never.wait()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(args)
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(BROWSER_WAIT_MS)
            await context.route("**/*", only_this_machine)
            yield context, outside
        finally:
            never.set()
            await browser.close()


@pytest.fixture
def offline_browser():
    """``async with offline_browser(*chromium_args) as (context, outside)``: Debian's
    Chromium where every request to another host hangs, as with no internet, and is
    recorded in ``outside``."""
    return _offline_browser


def _client_timeout(request: pytest.FixtureRequest) -> float:
    """A module's ``CLIENT_TIMEOUT_S``, else 30 s."""
    return float(getattr(request.module, "CLIENT_TIMEOUT_S", 30))


@pytest.fixture
async def client(request, nova_app):
    """The OpenAI SDK pointed at the app, without its own retries."""
    async with AsyncOpenAI(
        base_url=f"{nova_app.url}/v1",
        api_key="unused",
        max_retries=0,
        timeout=_client_timeout(request),
    ) as client:
        yield client


@pytest.fixture
async def http(request, nova_app):
    """A plain HTTP client for the app's routes."""
    async with httpx.AsyncClient(base_url=nova_app.url, timeout=_client_timeout(request)) as http:
        yield http


@pytest.fixture
def rag_outage(nova_app) -> Iterator[Callable[[], None]]:
    """A function that stops the knowledge service for the rest of the test.

    Afterwards the service runs again and the app is restarted, so its ``rag_api``
    circuit (open for 60 s once opened) is closed for the next test.
    """
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        nova_app.stop_rag()

    yield stop
    if stopped or not nova_app.rag_running:
        nova_app.start_rag()
        nova_app.restart()


@pytest.fixture
def screenshot(tmp_path) -> Callable[[Any, str], Awaitable[Path]]:
    """``await screenshot(page, name)`` saves ``name.png`` in the test's tmp dir, and says where."""

    async def save(page: Any, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True, animations="disabled")
        SCREENSHOTS.append(path)
        print(f"screenshot: {path}")  # noqa: T201
        return path

    return save


def pytest_terminal_summary(terminalreporter) -> None:
    if SCREENSHOTS:
        terminalreporter.write_sep("-", "e2e screenshots")
        for path in SCREENSHOTS:
            terminalreporter.write_line(str(path))


# --- Voice: questions spoken by espeak-ng, and word error rate ------------------------------
# (Used by test_voice_socket.py, test_voice_api.py and test_voice_browser.py.)

ESPEAK = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"


@pytest.fixture(scope="session")
def wer() -> Callable[[str, str], float]:
    """``wer(reference, hypothesis)``: the word error rate of a transcript."""
    return word_error_rate


@pytest.fixture(scope="session")
def espeak(tmp_path_factory) -> Callable[[str], bytes]:
    """``espeak(text)``: ``text`` spoken by espeak-ng (en-us, 150 wpm) as a WAV file's bytes.

    espeak-ng writes mono PCM16 at 22,050 Hz. It is a different synthesiser from Nova's
    Piper voice, so recognition is not graded on audio of the kind it speaks itself.
    """
    if not Path(ESPEAK).is_file():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("espeak")
    spoken: dict[str, bytes] = {}

    def speak(text: str) -> bytes:
        if text not in spoken:
            path = folder / f"speech-{len(spoken)}.wav"
            subprocess.run(
                [ESPEAK, "-v", "en-us", "-s", "150", "-w", str(path), text],
                check=True,
                timeout=30,
                stdout=subprocess.DEVNULL,
            )
            spoken[text] = path.read_bytes()
        return spoken[text]

    return speak
