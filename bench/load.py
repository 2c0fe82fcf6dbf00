"""Turn latency and throughput under many concurrent conversations, healthy and degraded.

Real parts on free ports of 127.0.0.1: a redis-server, ``python -m rag serve`` on a
BM25-only index of ``knowledge/`` (lite mode: no model, a few ms a question, so the load
lands on the assistant) and, for the HTTP runs, ``python -m assistant`` as ``make up``
starts it (voice off). Every conversation asks a question from
``tests/data/rag_questions.jsonl`` and then a short follow-up; all conversations of a run
start at the same moment.

1. In-process: ``Assistant.turn`` on a ``Runtime`` built as the app builds it, with 1, 100
   and 1500 conversations at once; then 1500 again with the shipped per-call timeouts,
   where the burst's queueing trips the breakers (figures only).
2. HTTP: ``POST /v1/chat/completions`` with 1, 100 and 1000 conversations at once.
3. Degraded: each circuit forced open (``Breaker.force_open``), one turn at a time and
   300 at once: a text turn with ``rag_api`` or ``redis`` open, a spoken turn with
   ``voice_processing`` open (its speech server is never reached); all closed for reference.

The healthy runs raise the per-call timeouts (``turns.HEALTHY_TIMEOUTS``) so that
queueing is not taken for an outage. Run from the repository root::

    .venv/bin/python bench/load.py           # about 2 minutes on 2 cores
    .venv/bin/python bench/load.py --quick   # smaller bursts (for tests)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from processes import (
    free_port,
    lite_services,
    nova_app,
)
from report import machine
from turns import (
    FOLLOW_UP,
    HEADER,
    HEALTHY_TIMEOUTS,
    Load,
    chat_turn,
    conversations,
    http_session,
    questions,
)

from assistant.runtime import Runtime
from assistant.settings import AssistantSettings

IN_PROCESS = (1, 100, 1500)
HTTP = (1, 100, 1000)
QUICK_IN_PROCESS = (1, 50, 300)
QUICK_HTTP = (1, 50, 200)
DEGRADED_AT_ONCE = 300
DEGRADED_ONE_BY_ONE = 200
#: One second of a 440 Hz tone as PCM16 at 16 kHz: enough sound to be sent to STT.
TONE = (np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2").tobytes()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build(tmp: Path, redis_url: str, rag_url: str, env: dict[str, str], **extra: object) -> Runtime:
    values: dict[str, object] = {"voice_enabled": False, **extra}
    with environment(env):
        settings = AssistantSettings.load(
            redis_url=redis_url,
            rag_url=rag_url,
            data_dir=tmp / f"nova-{time.monotonic_ns()}",
            health_port=0,
            **values,
        )
    return Runtime.build(settings)


def texts() -> list[list[str]]:
    return [[question, FOLLOW_UP] for question in questions()]


async def in_process(tmp: Path, redis_url: str, rag_url: str, levels: tuple[int, ...]) -> None:
    print("1. In-process: Assistant.turn, each conversation a question and a follow-up")
    print(HEADER)
    print("-" * len(HEADER))
    for timeouts, label in ((HEALTHY_TIMEOUTS, "raised timeouts"), ({}, "shipped timeouts")):
        runtime = build(tmp, redis_url, rag_url, timeouts)
        await runtime.start()
        try:

            async def turn(session: str, text: str, runtime: Runtime = runtime) -> bool:
                return (await runtime.assistant.turn(session, text)).degraded

            await conversations(turn, 20, texts(), "warm-up")
            for count in levels if timeouts else levels[-1:]:
                load = await conversations(turn, count, texts(), f"p{count}-{label[0]}")
                print(load.row(f"{count} conversations, {label}"))
            await runtime.sessions.flush()
        finally:
            await runtime.stop()
    print("(in fl. = most turns in flight at once; degr. = degraded replies)")


async def over_http(url: str, levels: tuple[int, ...]) -> None:
    print("2. HTTP: POST /v1/chat/completions against python -m assistant (aiohttp client)")
    print(HEADER)
    print("-" * len(HEADER))
    async with http_session(max(levels)) as http:
        turn = chat_turn(http, url)
        await conversations(turn, 20, texts(), "http-warm-up")
        for count in levels:
            load = await conversations(turn, count, texts(), f"h{count}")
            print(load.row(f"{count} conversations"))


async def degraded(tmp: Path, redis_url: str, rag_url: str) -> None:
    print(
        f"3. Degraded replies: each circuit forced open; {DEGRADED_ONE_BY_ONE} turns one at a "
        f"time, then {DEGRADED_AT_ONCE} conversations of one turn at once"
    )
    dead = f"http://127.0.0.1:{free_port()}"  # a speech server nobody runs: never reached
    long_reset = {f"NOVA_BREAKER_{n}_RESET_TIMEOUT": "3600" for n in ("RAG_API", "REDIS")}
    long_reset["NOVA_BREAKER_VOICE_PROCESSING_RESET_TIMEOUT"] = "3600"
    runtime = build(
        tmp,
        redis_url,
        rag_url,
        {**HEALTHY_TIMEOUTS, **long_reset},
        voice_enabled=True,
        stt_base_url=dead,
        tts_base_url=dead,
    )
    await runtime.start()
    assistant = runtime.assistant

    async def text_turn(session: str, text: str) -> bool:
        return (await assistant.turn(session, text)).degraded

    async def voice_turn(session: str, text: str) -> bool:
        reply = (await assistant.voice_turn(session, TONE, pcm16_rate=16000)).reply
        if reply is None or reply.fallback_source != "voice_unavailable":
            raise RuntimeError(f"expected the voice-unavailable reply, got {reply}")
        return reply.degraded

    one = [[q] for q in questions()]
    print(HEADER)
    print("-" * len(HEADER))
    try:
        await conversations(text_turn, 20, one, "d-warm-up")
        cases = (
            ("all closed, text turn", None, text_turn),
            ("rag_api open, text turn", "rag_api", text_turn),
            ("redis open, text turn", "redis", text_turn),
            ("voice_processing open, spoken turn", "voice_processing", voice_turn),
        )
        for label, name, turn in cases:
            if name:
                runtime.breakers[name].force_open()
            serial = Load()
            started = time.perf_counter()
            for i in range(DEGRADED_ONE_BY_ONE):
                t = time.perf_counter()
                was_degraded = await turn(f"{label}-s{i}", one[i % len(one)][0])
                serial.degraded += was_degraded
                serial.latencies.append(time.perf_counter() - t)
            serial.wall, serial.most_in_flight = time.perf_counter() - started, 1
            print(serial.row(f"{label}, one at a time"))
            burst = await conversations(turn, DEGRADED_AT_ONCE, one, f"{label}-b")
            print(burst.row(f"{label}, {DEGRADED_AT_ONCE} at once"))
            if name:
                runtime.breakers[name].reset()
        await runtime.sessions.flush()
    finally:
        await runtime.stop()


async def main_async(tmp: Path, quick: bool) -> None:
    print("index: python -m rag ingest knowledge/ --no-embeddings; served with bm25 retrieval")
    with lite_services(tmp) as (redis, rag):
        await in_process(tmp, redis.url, rag.url, QUICK_IN_PROCESS if quick else IN_PROCESS)
        print()
        with nova_app(
            tmp / "app", redis_url=redis.url, rag_url=rag.url, env=HEALTHY_TIMEOUTS
        ) as app:
            await over_http(app.url, QUICK_HTTP if quick else HTTP)
        print()
        await degraded(tmp, redis.url, rag.url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller bursts (for tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    print(f"machine at start: {machine()}")
    with tempfile.TemporaryDirectory(prefix="nova-load-") as tmp:
        asyncio.run(main_async(Path(tmp), args.quick))
    print()
    print(f"machine at end: {machine()}; run time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
