"""Spoken turns end to end: real engines on real speech, and engines that fail on cue."""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.runtime import Runtime
from assistant.settings import AssistantSettings
from assistant.voice.audio import STT_RATE, decode, resample, to_pcm16, to_wav
from assistant.voice.service import VoiceService
from assistant.voice.transcripts import word_error_rate as wer
from assistant.voice.worker import EngineWorker
from resilience import State

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("nova-voice.md", "ops-circuit-breakers.md", "redis-basics.md")
QUESTION = "How do I talk to Nova instead of typing?"
ESPEAK = shutil.which("espeak-ng")


class ScriptedSTT:
    """Stands in for Whisper where a fault must be exact: raise, hang, or hear a script."""

    name = "scripted-stt"

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def transcribe(self, audio: np.ndarray) -> str:
        if self.mode == "raise":
            raise RuntimeError("decoder exploded")
        if self.mode == "hang":
            time.sleep(60)
        if self.mode == "wake":
            return f"Hey Nova, {QUESTION}"
        return QUESTION


class ScriptedTTS:
    name = "scripted-tts"
    sample_rate = 22050

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def synthesize(self, text: str) -> np.ndarray:
        if self.mode == "raise":
            raise MemoryError("out of memory in the vocoder")
        return np.full(2205, 1000, np.int16)


def scripted_engines(mode: str) -> tuple[ScriptedSTT, ScriptedTTS]:
    return ScriptedSTT(mode), ScriptedTTS(mode)


@pytest.fixture(scope="module")
def spoken_question(tmp_path_factory) -> bytes:
    assert ESPEAK, "espeak-ng is needed to speak the test questions (apt-get install espeak-ng)"
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    subprocess.run([ESPEAK, "-v", "en-us", "-s", "150", "-w", str(path), QUESTION], check=True)
    return path.read_bytes()


@pytest.fixture(scope="module")
def rag_index(tmp_path_factory, rag_ingest) -> Path:
    data = tmp_path_factory.mktemp("index")
    rag_ingest(data, *(ROOT / "knowledge" / name for name in DOCS))
    return data


@pytest.fixture(scope="module")
def rag(rag_service, rag_index):
    return rag_service(rag_index).start()


@pytest.fixture
async def runtime(redis_server, rag, tmp_path, clock):
    settings = AssistantSettings.load(
        redis_url=redis_server.url,
        rag_url=rag.url,
        data_dir=tmp_path / "nova",
        health_port=0,
        voice_enabled=False,
        max_audio_seconds=20.0,
        breakers={"voice_processing": {"timeout": 2.0}},
    )
    runtime = Runtime.build(settings, clock=clock)
    await runtime.start()
    yield runtime
    if runtime.assistant.voice is not None:
        await runtime.assistant.voice.stop()
    await runtime.stop()


async def use_worker(runtime: Runtime, worker: EngineWorker) -> VoiceService:
    voice = VoiceService(runtime.breakers["voice_processing"], worker)
    await voice.start()
    runtime.assistant.voice = voice
    return voice


@pytest.fixture
async def real_voice(runtime):
    return await use_worker(runtime, EngineWorker(threads=2, beam_size=5))


def scripted(mode: str) -> EngineWorker:
    return EngineWorker(engine_factory=functools.partial(scripted_engines, mode), threads=1)


async def test_a_spoken_question_is_heard_and_answered(runtime, real_voice, spoken_question):
    turn = await runtime.assistant.voice_turn("v1", spoken_question, mime="audio/wav")
    assert wer(QUESTION, turn.transcript) <= 0.2
    typed = await runtime.assistant.turn("v2", turn.transcript)
    assert turn.reply.text == typed.text
    assert any(s.source.endswith("nova-voice.md") for s in turn.reply.sources)
    chunks = [chunk async for chunk in runtime.assistant.speak("v1", turn.reply.text)]
    assert chunks
    assert {rate for _, rate in chunks} == {22050}
    assert sum(len(pcm) for pcm, _ in chunks) > 22050  # over half a second of speech
    assert runtime.breakers["voice_processing"].state is State.CLOSED


async def test_browser_microphone_pcm_at_24_khz_is_heard(runtime, real_voice, spoken_question):
    pcm = to_pcm16(resample(decode(spoken_question), STT_RATE, 24000))
    turn = await runtime.assistant.voice_turn("v3", pcm, pcm16_rate=24000)
    assert wer(QUESTION, turn.transcript) <= 0.2


@pytest.mark.parametrize(
    ("audio", "words"),
    [
        (b"", "receive any audio"),
        (b"\x00\x01garbage" * 50, "couldn't read"),
        (to_wav(np.zeros(STT_RATE * 3, np.float32), STT_RATE), "hear anything"),
        (to_wav(np.full(STT_RATE * 30, 0.3, np.float32), STT_RATE), "under 20 seconds"),
    ],
)
async def test_bad_audio_gets_a_friendly_reply_and_never_counts(runtime, real_voice, audio, words):
    turn = await runtime.assistant.voice_turn("v4", audio, mime="audio/wav")
    assert turn.transcript is None
    assert words in turn.reply.text.lower()
    assert "Traceback" not in turn.reply.text
    assert runtime.breakers["voice_processing"].fail_count == 0


async def test_a_failing_engine_opens_the_circuit_after_two_and_recovers(
    runtime, spoken_question, clock
):
    await use_worker(runtime, scripted("raise"))
    for _ in range(2):
        turn = await runtime.assistant.voice_turn("v5", spoken_question, mime="audio/wav")
        assert turn.reply.fallback_source == "voice_unavailable"
        assert "Voice is unavailable right now, so please type" in turn.reply.text
    breaker = runtime.breakers["voice_processing"]
    assert breaker.state is State.OPEN
    rejected = await runtime.assistant.voice_turn("v5", spoken_question, mime="audio/wav")
    assert "in about 50 seconds" in rejected.reply.text  # 45 s, rounded as a person would

    await runtime.assistant.voice.stop()
    await use_worker(runtime, scripted("ok"))
    clock.advance(45)
    turn = await runtime.assistant.voice_turn("v5", spoken_question, mime="audio/wav")
    assert turn.transcript == QUESTION
    assert not turn.reply.degraded
    assert breaker.state is State.CLOSED


async def test_a_hung_engine_is_cut_off_and_its_worker_replaced(runtime, spoken_question):
    voice = await use_worker(runtime, scripted("hang"))
    first_pid = voice.worker.pid
    turn = await runtime.assistant.voice_turn("v6", spoken_question, mime="audio/wav")
    assert turn.reply.fallback_source == "voice_unavailable"
    assert runtime.breakers["voice_processing"].fail_count == 1
    await runtime.assistant.voice_turn("v6", spoken_question, mime="audio/wav")
    assert runtime.breakers["voice_processing"].state is State.OPEN
    assert voice.worker.pid != first_pid


async def test_failed_speech_leaves_the_text_and_says_so_once(runtime):
    await use_worker(runtime, scripted("raise"))
    reply = await runtime.assistant.turn("v7", QUESTION)
    assert [c async for c in runtime.assistant.speak("v7", reply.text)] == []
    notice = runtime.assistant.voice_notice("v7")
    assert "Voice is unavailable right now" in notice
    assert [c async for c in runtime.assistant.speak("v7", reply.text)] == []
    assert runtime.assistant.voice_notice("v7") is None  # told once, not on every reply


async def test_spoken_replies_can_be_switched_off(runtime):
    await use_worker(runtime, scripted("ok"))
    assert [c async for c in runtime.assistant.speak("v8", "Hello there.")]
    runtime.assistant.voice_prefs.get("v8").spoken_replies = False
    assert [c async for c in runtime.assistant.speak("v8", "Hello there.")] == []


async def test_the_wake_word_mode_ignores_what_is_not_for_nova(runtime, spoken_question):
    await use_worker(runtime, scripted("ok"))
    runtime.assistant.voice_prefs.get("v9").wake_word = True
    ignored = await runtime.assistant.voice_turn("v9", spoken_question, mime="audio/wav")
    assert ignored.transcript == QUESTION
    assert ignored.reply is None
    await runtime.assistant.voice.stop()
    await use_worker(runtime, scripted("wake"))
    heard = await runtime.assistant.voice_turn("v9", spoken_question, mime="audio/wav")
    assert heard.transcript == QUESTION  # the wake word itself is not part of the question
    assert heard.reply.sources
