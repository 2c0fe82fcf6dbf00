"""Nova started the way ``make up`` starts it, the faults to inject, a load and the checks.

One stack serves the whole chaos run (the ``chaos_stack`` fixture): ``deploy/stack.py up`` with a
temporary ``NOVA_DATA_DIR``, free ports and breakers that recover in about a second.
In front of each dependency sits something the tests control:

- Redis: a redis-server the tests own (append-only, restarted on the same port with the
  same data directory), reached only through a ``TcpProxy`` that can add latency. Since
  the proxy answers PING at ``NOVA_REDIS_URL``, ``stack.py up`` starts no Redis of its own.
- The knowledge service: started by ``stack.py up``; the app reaches it through a second
  ``TcpProxy`` that can add latency or send every new connection to a stub answering 500.
- Speech: ``NOVA_STT_BASE_URL`` / ``NOVA_TTS_BASE_URL`` point at ``SpeechStub``, which
  checks the WAV it is sent, answers with speech espeak-ng made, or fails or hangs.

``LoadGenerator`` keeps 50 conversations going through ``/v1/chat/completions``, each a
session sending turns back to back; ``Monitor`` polls ``/health`` and ``/metrics`` from
its own thread; ``run_fault`` injects a fault under that load, holds it, heals it and
returns a ``FaultRun`` for the test to check. Each run adds a row to ``results_table``,
which ``conftest.py`` prints at the end of the test session.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from child_process import RedisServer
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[2]
ESPEAK = "espeak-ng"
DOCS = ("nova-voice.md", "ops-circuit-breakers.md", "nova-getting-started.md")
BREAKERS = ("rag_api", "redis", "voice_processing")

#: Breaker settings for the stack: the defaults' thresholds, recovery in about a second,
#: and short call timeouts. Under 50 back-to-back conversations on two shared cores a
#: healthy knowledge query can queue for two seconds, hence 3 s for ``rag_api``.
RESET_TIMEOUT_S = {"rag_api": 1.5, "redis": 1.0, "voice_processing": 1.5}
CALL_TIMEOUT_S = {"rag_api": 3.0, "redis": 1.0, "voice_processing": 1.0}
FAIL_MAX = {"rag_api": 3, "redis": 5, "voice_processing": 2}

#: How many conversations the load keeps going, and how long one turn may wait at most.
CONVERSATIONS = 50
CLIENT_TIMEOUT_S = 15.0
#: A turn may take its breakers' timeouts plus this: queueing behind 50 busy conversations
#: on two cores shared with other work, where a healthy turn can stall for a few seconds.
LATENCY_MARGIN_S = 4.0
#: Redis calls a turn makes one after another: read the context, cache the answer, write
#: the turn (a write that finds older writes pending replays them first, and stops there
#: if that fails). Each is bounded by the ``redis`` timeout.
REDIS_CALLS_PER_TURN = 3
#: How long a fault is held once its circuit has opened, and the deadlines for the rest.
HOLD_S = 2.5
#: After the circuits close, /health is checked from this long on (replies in flight drain).
SETTLED_S = 0.5
OPEN_DEADLINE_S = 15.0
CLOSE_DEADLINE_S = 15.0

#: Questions the knowledge base answers: asked as they are, they are in the answer
#: cache by the time a fault hits; a turn marked unique adds words no cache has seen.
QUESTIONS = (
    "How do I talk to Nova instead of typing?",
    "What happens when a circuit breaker opens?",
    "How do I get started with Nova?",
    "What does the half-open state of a breaker do?",
    "Can Nova read its answers aloud to me?",
)
SPOKEN_QUESTION = QUESTIONS[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(interval)


# -- a TCP proxy the tests steer ---------------------------------------------------------


class TcpProxy:
    """``tcp_proxy.py`` in its own process, in front of ``upstream_port``; see its docstring."""

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.control_port = free_port()
        self.upstream_port = upstream_port
        self._latency = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def start(self) -> TcpProxy:
        script = Path(__file__).with_name("tcp_proxy.py")
        ports = (self.port, self.upstream_port, self.control_port)
        self._process = subprocess.Popen([sys.executable, str(script), *map(str, ports)])
        self._control = wait_for(self._connect, "tcp proxy started", 15)
        return self

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
        if self._process is not None:
            self._process.kill()
            self._process.wait()

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._command(f"latency {seconds}")
        self._latency = seconds

    def route_to(self, port: int) -> None:
        self._command(f"route {port}")
        self.upstream_port = port

    def _connect(self) -> socket.socket | None:
        try:
            return socket.create_connection(("127.0.0.1", self.control_port), timeout=5)
        except OSError:
            return None

    def _command(self, line: str) -> None:
        assert self._control is not None
        self._control.sendall(line.encode() + b"\n")
        assert self._control.recv(16) == b"ok\n"


# -- stand-ins for what a healthy dependency never does ----------------------------------


def espeak_wav(text: str, path: Path) -> bytes:
    """``text`` spoken by espeak-ng, as a WAV file."""
    subprocess.run([ESPEAK, "-w", str(path), text], check=True, timeout=60)
    return path.read_bytes()


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


class SpeechStub:
    """An OpenAI-compatible speech server (and a failing knowledge service) on a free port.

    ``/v1/audio/transcriptions`` checks that it was sent a WAV holding real speech and
    answers with what the test's recording says; ``/v1/audio/speech`` answers with a WAV
    espeak-ng made. ``mode`` is ``ok``, ``error`` (500) or ``hang`` (no answer until the
    mode changes). ``/query`` always answers 500: the knowledge service failing.
    """

    def __init__(self, transcript: str, speech: bytes) -> None:
        self.transcript = transcript
        self.speech = speech
        self._mode = "ok"
        self._released: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.heard_seconds: list[float] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        routes = [
            Route("/v1/audio/transcriptions", self._transcribe, methods=["POST"]),
            Route("/v1/audio/speech", self._speak, methods=["POST"]),
            Route("/query", self._fail, methods=["POST"]),
            Route("/health", self._fail, methods=["GET"]),
        ]
        self._server = uvicorn.Server(
            uvicorn.Config(
                Starlette(routes=routes),
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> SpeechStub:
        self._thread.start()
        wait_for(lambda: self._server.started, "speech stub started", 10)
        return self

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        if mode != "hang" and self._loop is not None and self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    def stop(self) -> None:
        self.mode = "ok"
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _fault(self) -> Response | None:
        if self._mode == "hang":  # until the mode changes, or for 30 s at most
            if self._released is None or self._released.is_set():
                self._loop, self._released = asyncio.get_running_loop(), asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), 30)
        if self._mode == "error":
            return JSONResponse({"error": {"message": "engine crashed"}}, status_code=500)
        return None

    async def _transcribe(self, request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        data = await upload.read() if upload is not None and hasattr(upload, "read") else b""
        if (failed := await self._fault()) is not None:
            return failed
        if not data.startswith(b"RIFF"):
            return JSONResponse({"error": {"message": "not a WAV file"}}, status_code=400)
        self.heard_seconds.append(wav_seconds(data))
        return JSONResponse({"text": self.transcript})

    async def _speak(self, request: Request) -> Response:
        body = await request.json()
        if (failed := await self._fault()) is not None:
            return failed
        if not str(body.get("input", "")).strip():
            return JSONResponse({"error": {"message": "empty input"}}, status_code=400)
        return Response(self.speech, media_type="audio/wav")

    async def _fail(self, request: Request) -> Response:
        return JSONResponse({"error": "knowledge service failed"}, status_code=500)


# -- the stack, as make up runs it -------------------------------------------------------


@dataclass
class ChaosStack:
    """Nova run by ``deploy/stack.py`` with the test's ports, data directory and proxies."""

    env: dict[str, str]
    data_dir: Path
    redis: RedisServer
    redis_proxy: TcpProxy
    rag_proxy: TcpProxy
    speech: SpeechStub
    rag_port: int
    ui_port: int
    health_port: int
    _rag_paused: bool = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def stack(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "deploy/stack.py", command],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def up(self) -> str:
        result = self.stack("up")
        logs = "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted((self.data_dir / "logs").glob("*.log"))
        )
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{logs}"
        return result.stdout

    def pid(self, service: str) -> int:
        return int((self.data_dir / "run" / f"{service}.pid").read_text())

    def kill_rag(self) -> None:
        os.killpg(self.pid("rag"), signal.SIGKILL)
        wait_for(lambda: not _answers(f"http://127.0.0.1:{self.rag_port}/health"), "rag gone", 10)

    def pause_rag(self) -> None:
        os.kill(self.pid("rag"), signal.SIGSTOP)
        self._rag_paused = True

    def resume_rag(self) -> None:
        os.kill(self.pid("rag"), signal.SIGCONT)
        self._rag_paused = False

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.health_url}/health", timeout=5).json()

    def states(self) -> dict[str, str]:
        return {name: b["state"] for name, b in self.health()["circuit_breakers"].items()}

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.health_url}/metrics", timeout=5).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def wait_calm(self) -> None:
        """Every dependency answering and every circuit closed (a fault left nothing behind)."""
        wait_for(self.redis.ping, "redis answering", 15)
        wait_for(lambda: _answers(f"http://127.0.0.1:{self.rag_port}/health"), "rag answering", 30)

        def closed() -> bool:
            # A trial call closes a half-open circuit; a turn and a voice call make them.
            if set(self.states().values()) == {"closed"}:
                return True
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(
                    f"{self.api_url}/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": QUESTIONS[1]}]},
                    timeout=CLIENT_TIMEOUT_S,
                )
                httpx.post(
                    f"{self.api_url}/v1/audio/speech",
                    json={"input": "Hello there.", "voice": "nova"},
                    timeout=CLIENT_TIMEOUT_S,
                )
            return False

        wait_for(closed, "every circuit closed", 30, interval=0.2)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


# -- watching /health and /metrics -------------------------------------------------------


@dataclass
class Sample:
    at: float
    health: dict[str, str]
    fail_count: dict[str, int]
    status: str
    services: dict[str, bool]
    heartbeat_age_s: float
    gauge: dict[str, str]


GAUGE_STATES = {0.0: "closed", 1.0: "open", 2.0: "half_open"}
GAUGE_LINE = re.compile(r'^circuit_breaker_state\{name="(?P<name>\w+)"\} (?P<value>\S+)$')


class Monitor:
    """Polls ``/health`` and ``/metrics`` every 100 ms on its own thread."""

    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.stack.health_url, timeout=5) as client:
            while not self._stop.is_set():
                health = client.get("/health").json()
                lines = client.get("/metrics").text.splitlines()
                gauge = {
                    match["name"]: GAUGE_STATES[float(match["value"])]
                    for line in lines
                    if (match := GAUGE_LINE.match(line))
                }
                self.samples.append(
                    Sample(
                        time.monotonic(),
                        {n: b["state"] for n, b in health["circuit_breakers"].items()},
                        {n: b["fail_count"] for n, b in health["circuit_breakers"].items()},
                        health["status"],
                        health["services"],
                        health["event_loop"]["heartbeat_age_s"] or 0.0,
                        gauge,
                    )
                )
                self._stop.wait(0.1)

    def seen(self, breaker: str, since: float = 0.0, until: float = float("inf")) -> set[str]:
        """Every state ``/health`` or ``/metrics`` showed for ``breaker`` in a time window."""
        window = [s for s in self.samples if since <= s.at <= until]
        return {s.health[breaker] for s in window} | {s.gauge[breaker] for s in window}

    def first(self, predicate: Callable[[Sample], bool], since: float = 0.0) -> Sample | None:
        return next((s for s in self.samples if s.at >= since and predicate(s)), None)


# -- the load ------------------------------------------------------------------------------


@dataclass
class Turn:
    """One request the load generator made, and what came back."""

    kind: str  # "chat", "stt" or "tts"
    session: str
    question: str
    unique: bool
    started: float
    latency: float
    status: int | None
    text: str
    nova: dict[str, Any] | None
    error: str | None

    @property
    def answered(self) -> bool:
        """A 200 with text; for voice also the friendly 503 of a voice outage."""
        if self.error is not None or not self.text.strip():
            return False
        if self.kind == "chat":
            return self.status == 200 and self.nova is not None
        return self.status == 200 or (self.status == 503 and "temporarily" in self.text)


class LoadGenerator:
    """``conversations`` sessions sending chat turns back to back, plus optional voice ones.

    A voice conversation sends the espeak-ng recording to ``/v1/audio/transcriptions``,
    asks what was heard (or types the question when voice is out), and has the start of
    the answer spoken by ``/v1/audio/speech``. Runs until ``stop()`` or ``max_s``.
    """

    def __init__(
        self,
        stack: ChaosStack,
        *,
        conversations: int = CONVERSATIONS,
        voice_conversations: int = 0,
        recording: bytes = b"",
        max_s: float = 90.0,
    ) -> None:
        self.stack = stack
        self.conversations = conversations
        self.voice_conversations = voice_conversations
        self.recording = recording
        self.max_s = max_s
        self.turns: list[Turn] = []
        self.run_id = uuid.uuid4().hex[:8]
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def sessions(self) -> list[str]:
        return [f"chaos-{self.run_id}-{n}" for n in range(self.conversations)]

    def stored_turns(self, session: str) -> int:
        """Chat turns of ``session`` that were answered (and so must be in Redis)."""
        return sum(1 for t in self.turns if t.session == session and t.kind == "chat")

    async def __aenter__(self) -> LoadGenerator:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def wait_turns(self, count: int, since: float, within: float = 30.0) -> None:
        """Until ``count`` turns have started since ``since``; fails after ``within`` s."""
        deadline = time.monotonic() + within
        while sum(1 for t in self.turns if t.started >= since) < count:
            assert time.monotonic() < deadline, f"fewer than {count} turns in {within} s"
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        # Idle connections are dropped before uvicorn's 5 s keep-alive timeout can close
        # them under a request just being sent (httpx's default expiry is also 5 s).
        limits = httpx.Limits(
            max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0
        )
        async with httpx.AsyncClient(
            base_url=self.stack.api_url, timeout=CLIENT_TIMEOUT_S, limits=limits
        ) as client:
            tasks = [
                asyncio.create_task(self._conversation(client, session, n))
                for n, session in enumerate(self.sessions())
            ]
            tasks += [
                asyncio.create_task(self._voice(client, f"voice-{self.run_id}-{n}"))
                for n in range(self.voice_conversations)
            ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.max_s)
            self._stopping.set()
            await asyncio.gather(*tasks)

    async def _conversation(self, client: httpx.AsyncClient, session: str, n: int) -> None:
        turn = 0
        while not self._stopping.is_set():
            unique = turn % 2 == 1
            question = QUESTIONS[(n + turn) % len(QUESTIONS)]
            if unique:
                question = f"{question} Asked in conversation {session} as turn {turn}."
            await self._chat(client, session, question, unique)
            turn += 1

    async def _chat(self, client: httpx.AsyncClient, session: str, question: str, unique: bool):
        body = {"model": "nova", "messages": [{"role": "user", "content": question}]}
        started = time.monotonic()
        status, text, nova, error = None, "", None, None
        try:
            response = await client.post(
                "/v1/chat/completions", json=body, headers={"X-Session-Id": session}
            )
            status = response.status_code
            payload = response.json()
            text = payload["choices"][0]["message"]["content"]
            nova = payload["nova"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            error = repr(exc)
        self.turns.append(
            Turn(
                "chat",
                session,
                question,
                unique,
                started,
                time.monotonic() - started,
                status,
                text,
                nova,
                error,
            )
        )
        return text

    async def _voice(self, client: httpx.AsyncClient, session: str) -> None:
        while not self._stopping.is_set():
            heard = await self._request(
                client,
                "stt",
                session,
                "/v1/audio/transcriptions",
                files={"file": ("question.wav", self.recording, "audio/wav")},
                data={"model": "whisper-1"},
            )
            question = heard if heard is not None else SPOKEN_QUESTION  # typed instead
            answer = await self._chat(client, session + "-chat", question, False)
            sentence = (answer.split(". ")[0] or "Hello")[:200]
            await self._request(
                client,
                "tts",
                session,
                "/v1/audio/speech",
                json={"input": sentence, "voice": "nova", "response_format": "wav"},
            )

    async def _request(
        self, client: httpx.AsyncClient, kind: str, session: str, path: str, **kwargs: Any
    ) -> str | None:
        """One voice request; the transcript for a 200 transcription, else None."""
        started = time.monotonic()
        status, text, error, heard = None, "", None, None
        try:
            response = await client.post(path, **kwargs)
            status = response.status_code
            if status == 200 and kind == "stt":
                text = heard = response.json()["text"]
            elif status == 200:
                seconds = wav_seconds(response.content)
                text = f"{seconds:.2f} s of speech" if seconds > 0 else ""
            else:
                text = response.json()["error"]["message"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError, wave.Error) as exc:
            error = repr(exc)
        self.turns.append(
            Turn(
                kind,
                session,
                "",
                False,
                started,
                time.monotonic() - started,
                status,
                text,
                None,
                error,
            )
        )
        return heard


# -- one fault, from injection to recovery -------------------------------------------------


@dataclass
class FaultRun:
    """What happened around one fault; times are ``time.monotonic()``."""

    name: str
    breakers: tuple[str, ...]
    turns: list[Turn]
    samples: list[Sample]
    metrics_before: dict[Any, float]
    metrics_after: dict[Any, float]
    injected: float
    opened: dict[str, float]
    healed: float
    closed: dict[str, float]
    load: LoadGenerator
    extra: dict[str, Any] = field(default_factory=dict)

    def chat(self) -> list[Turn]:
        return [t for t in self.turns if t.kind == "chat"]

    def during(self, kind: str = "chat") -> list[Turn]:
        """Turns that started once every faulty circuit was open and ended before the heal."""
        opened = max(self.opened.values())
        return [
            t
            for t in self.turns
            if t.kind == kind and t.started >= opened and t.started + t.latency <= self.healed
        ]

    def seen(self, breaker: str, since: float = 0.0, until: float = float("inf")) -> set[str]:
        window = [s for s in self.samples if since <= s.at <= until]
        return {s.health[breaker] for s in window} | {s.gauge[breaker] for s in window}

    def counter(self, name: str, breaker: str, after: bool = True) -> float:
        metrics = self.metrics_after if after else self.metrics_before
        return metrics.get((name, (("name", breaker),)), 0.0)

    def opens(self, breaker: str) -> float:
        return self.counter("circuit_breaker_opens_total", breaker) - self.counter(
            "circuit_breaker_opens_total", breaker, after=False
        )


RESULTS: list[FaultRun] = []


async def run_fault(
    stack: ChaosStack,
    name: str,
    breakers: tuple[str, ...],
    inject: Callable[[], None],
    heal: Callable[[], None],
    *,
    voice_conversations: int = 0,
    recording: bytes = b"",
) -> FaultRun:
    """Under load: inject the fault, hold it once ``breakers`` are open, heal, await closing.

    Blocking steps (signals, restarts, polling ``/health``) run in threads, so the load
    keeps going on this event loop all the while.
    """
    metrics_before = stack.metrics()
    load = LoadGenerator(stack, voice_conversations=voice_conversations, recording=recording)
    opened: dict[str, float] = {}
    closed: dict[str, float] = {}

    def wait_states(wanted: str, into: dict[str, float], timeout: float) -> None:
        def check() -> bool:
            states = stack.states()
            for breaker in breakers:
                if breaker not in into and states[breaker] == wanted:
                    into[breaker] = time.monotonic()
            return len(into) == len(breakers)

        wait_for(check, f"{name}: {breakers} {wanted}", timeout, interval=0.02)

    with Monitor(stack) as monitor:
        async with load:
            await load.wait_turns(2 * CONVERSATIONS, since=0.0)  # a steady load first
            injected = time.monotonic()
            await asyncio.to_thread(inject)
            await asyncio.to_thread(wait_states, "open", opened, OPEN_DEADLINE_S)
            await asyncio.sleep(HOLD_S)  # the fault goes on with its circuits open
            healed = time.monotonic()
            await asyncio.to_thread(heal)
            await asyncio.to_thread(wait_states, "closed", closed, CLOSE_DEADLINE_S)
            await load.wait_turns(CONVERSATIONS, since=max(closed.values()))
            settled = max(closed.values()) + SETTLED_S
            await asyncio.to_thread(
                wait_for, lambda: monitor.samples[-1].at >= settled, f"{name}: a settled sample", 10
            )
    run = FaultRun(
        name,
        breakers,
        sorted(load.turns, key=lambda t: t.started),
        monitor.samples,
        metrics_before,
        stack.metrics(),
        injected,
        opened,
        healed,
        closed,
        load,
    )
    RESULTS.append(run)
    return run


# -- checks every fault shares ----------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


#: What bounds any typed turn whatever fails: each breaker's timeout, plus the margin.
CHAT_BUDGET_S = (
    REDIS_CALLS_PER_TURN * CALL_TIMEOUT_S["redis"] + CALL_TIMEOUT_S["rag_api"] + LATENCY_MARGIN_S
)


def check_answered(run: FaultRun, budget_s: float, kinds: tuple[str, ...] = ("chat",)) -> None:
    """Every turn answered; the ``kinds`` the fault touches within ``budget_s``, the rest
    within ``CHAT_BUDGET_S``."""
    chat = run.chat()
    assert len({t.session for t in chat}) >= CONVERSATIONS
    failed = [t for t in run.turns if not t.answered]
    assert not failed, f"{len(failed)} of {len(run.turns)} unanswered, e.g. {failed[:3]}"
    slow = [t for t in run.turns if t.latency > (budget_s if t.kind in kinds else CHAT_BUDGET_S)]
    assert not slow, (
        f"{len(slow)} of {len(run.turns)} turns over {budget_s} s: "
        + ", ".join(
            f"{t.kind} {t.latency:.2f} s at {t.started - run.injected:+.2f} s"
            f"{' (degraded)' if t.nova and t.nova['degraded'] else ''}"
            for t in slow[:10]
        )
        + f"; opened at {max(run.opened.values()) - run.injected:+.2f} s, "
        f"healed at {run.healed - run.injected:+.2f} s, "
        f"closed at {max(run.closed.values()) - run.injected:+.2f} s"
    )


def check_circuits(run: FaultRun) -> None:
    """The faulty circuits opened at their thresholds and closed again; no other opened."""
    for breaker in BREAKERS:
        if breaker in run.breakers:
            assert run.opens(breaker) >= 1, breaker
            failures = run.counter("circuit_breaker_failures_total", breaker) - run.counter(
                "circuit_breaker_failures_total", breaker, after=False
            )
            assert failures >= FAIL_MAX[breaker], (breaker, failures)
            open_counts = {
                s.fail_count[breaker] for s in run.samples if s.health[breaker] == "open"
            }
            assert open_counts == {FAIL_MAX[breaker]}, (breaker, open_counts)
            assert run.counter("circuit_breaker_recoveries_total", breaker) > run.counter(
                "circuit_breaker_recoveries_total", breaker, after=False
            ), breaker
        else:
            assert run.opens(breaker) == 0, f"{breaker} opened during {run.name}"
            assert run.seen(breaker) == {"closed"}, (breaker, run.seen(breaker))
    for sample in run.samples:  # /health and /metrics agree (sampled within milliseconds)
        for breaker in run.breakers:
            if sample.health[breaker] == "open" and sample.gauge[breaker] == "closed":
                pytest.fail(f"{breaker}: /health says open while /metrics says closed")


def check_truth_during_fault(run: FaultRun) -> None:
    """From the first open until the heal, no faulty circuit is ever reported closed."""
    for breaker in run.breakers:
        window = run.seen(breaker, run.opened[breaker] + 0.1, run.healed)
        assert "open" in window, (breaker, window)
        assert "closed" not in window, (breaker, window)
        during = [s for s in run.samples if run.opened[breaker] + 0.1 <= s.at <= run.healed]
        assert during
        assert all(s.status in ("degraded", "unhealthy") for s in during)
        assert any(not s.services[breaker] for s in during)
        assert all(s.gauge[breaker] in ("open", "half_open") for s in during)
    after = [s for s in run.samples if s.at >= max(run.closed.values()) + SETTLED_S]
    assert after, "no /health samples after the circuits closed"
    assert after[-1].status == "healthy", after[-1]


def check_sessions_in_redis(run: FaultRun, stack: ChaosStack) -> None:
    """Every answered chat turn is a member of its session's sorted set, once."""

    def all_written() -> bool:
        journal = stack.data_dir / "sessions-journal.jsonl"
        pending = journal.read_text().strip() if journal.exists() else ""
        if pending:
            return False
        with contextlib.closing(stack.redis.client()) as client:
            return all(
                client.zcard(f"nova:session:{session}:turns") == run.load.stored_turns(session)
                for session in run.load.sessions()
            )

    wait_for(all_written, f"{run.name}: every turn written back to Redis", 20, interval=0.2)
    with contextlib.closing(stack.redis.client()) as client:
        session = run.load.sessions()[0]
        members = client.zrange(f"nova:session:{session}:turns", 0, -1)
    questions = [json.loads(member)["q"] for member in members]
    sent = [t.question for t in run.chat() if t.session == session]
    assert questions == sent  # in order, each once
    run.extra["sessions_checked"] = len(run.load.sessions())


# -- the table at the end ------------------------------------------------------------------


def _row(run: FaultRun) -> list[str]:
    chat = run.chat()
    voice = [t for t in run.turns if t.kind != "chat"]
    degraded = [t for t in chat if t.nova and t.nova["degraded"]]
    latencies = [t.latency for t in run.turns]
    states = ", ".join(
        f"{b}:{'/'.join(sorted(run.seen(b)))}" for b in BREAKERS if run.seen(b) != {"closed"}
    )
    to_close = max(run.closed.values()) - run.healed
    answered = sum(t.answered for t in run.turns) / max(1, len(run.turns))
    return [
        run.name,
        str(len(chat)) + (f"+{len(voice)}v" if voice else ""),
        f"{100 * answered:.0f}%",
        f"{100 * len(degraded) / max(1, len(chat)):.0f}%",
        f"{1000 * percentile(latencies, 0.5):.0f}",
        f"{1000 * percentile(latencies, 0.95):.0f}",
        states or "all closed",
        f"{to_close:.2f} s",
    ]


HEADER = (
    "fault",
    "turns",
    "answered",
    "degraded",
    "p50 ms",
    "p95 ms",
    "circuit states seen",
    "closed after heal",
)


def results_table() -> list[str]:
    """One line per fault run so far, in columns."""
    rows = [list(HEADER), *(_row(run) for run in RESULTS)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]


# -- what the user gets during each kind of fault ------------------------------------------


def check_knowledge_answers(run: FaultRun) -> None:
    """Redis or voice down: the knowledge service still answers every turn, not degraded."""
    during = run.during()
    assert len(during) >= CONVERSATIONS, len(during)
    degraded = [t for t in during if t.nova["degraded"] or t.nova["from_fallback"]]
    assert not degraded, degraded[:3]
    assert all(t.nova["fallback_source"] is None for t in during)


def check_knowledge_fallbacks(run: FaultRun) -> None:
    """Knowledge service down: saved answers for asked questions, the apology for new ones."""
    during = run.during()
    assert len(during) >= CONVERSATIONS, len(during)
    answers = {
        t.question: t.text
        for t in run.chat()
        if t.started < run.injected and not t.nova["degraded"]
    }
    for turn in during:
        assert turn.nova["degraded"], turn
        assert turn.nova["from_fallback"], turn
        assert turn.nova["breakers"]["rag_api"] in ("open", "half_open"), turn
        if turn.unique:
            assert turn.nova["fallback_source"] == "degraded_message", turn
            assert "temporarily unable to access my knowledge base" in turn.text, turn
            assert turn.nova["notice"] == "My knowledge base is temporarily unavailable."
        else:
            assert turn.nova["fallback_source"] == "answer_cache", turn
            assert turn.text == answers.get(turn.question, turn.text), turn
            assert "saved answer" in turn.nova["notice"], turn
    assert {t.unique for t in during} == {True, False}
    after = [t for t in run.chat() if t.started > max(run.closed.values())]
    assert after
    assert not any(t.nova["degraded"] for t in after[len(after) // 2 :])


def check_breakers_in_replies(run: FaultRun) -> None:
    """Each reply during the fault names the faulty circuits as not closed, the rest closed."""
    for turn in run.during():
        for breaker in BREAKERS:
            state = turn.nova["breakers"][breaker]
            if breaker in run.breakers:
                assert state in ("open", "half_open"), (breaker, turn)
            else:
                assert state == "closed", (breaker, turn)


def check_voice_outage(run: FaultRun, heard_seconds: list[float]) -> None:
    """Voice down: speech requests get the friendly 503 at once; typed turns carry on."""
    for kind in ("stt", "tts"):
        during = run.during(kind)
        assert during, kind
        for turn in during:
            assert turn.status == 503, turn
            assert "voice is temporarily unavailable" in turn.text, turn
        before = [t for t in run.turns if t.kind == kind and t.started + t.latency < run.injected]
        after = [t for t in run.turns if t.kind == kind and t.started > max(run.closed.values())]
        assert before, kind
        assert after, kind
        assert all(t.status == 200 for t in before), kind
        assert after[-1].status == 200, after[-1]
    # What reached the speech server was the recording: over a second of real speech.
    assert heard_seconds
    assert min(heard_seconds) > 1.0, min(heard_seconds)
