"""How fast Nova hears and speaks: engine load, speech-to-text, text-to-speech, a voice turn.

Five parts, printed as tables (information only: nothing here fails):

1. Engine load: ``WhisperSTT()`` (tiny.en, int8) and ``PiperTTS()`` (joe, medium) built
   in this process, the first time (library import included) and again; then
   ``EngineWorker.start()``: spawning the worker process and loading both engines there.
2. STT real-time factor: questions and sentences from ``knowledge/`` spoken by espeak-ng
   (about 2, 5 and 10 s), decoded and trimmed as the app does (``audio.decode`` +
   ``audio.prepare``), then transcribed by ``WhisperSTT`` in this process and through an
   ``EngineWorker`` (pickling and the process hop included), with beam 1 and beam 5.
   RTF = processing time / seconds of audio transcribed; WER against the spoken text.
3. TTS: ``PiperTTS.synthesize`` of a 15-word sentence in this process and through the
   worker (seconds of audio made per second), and a 4-sentence reply through
   ``VoiceService.speak`` (the ``voice_processing`` breaker, the worker): time to its first
   audio chunk against the whole reply.
4. End-to-end voice turn: redis-server and ``python -m rag serve`` on free ports (the
   index built by ``python -m rag ingest knowledge/`` into a temporary directory), and a
   ``Runtime`` built and started as the app builds it, voice on. Three spoken questions
   (espeak WAV bytes, ``audio/wav``) through ``Assistant.voice_turn`` (decode, STT, RAG
   query, session writes), then ``Assistant.speak`` on the reply: time to the first
   spoken chunk and to the last.
5. The machine and the run time.

Figures are medians over the runs (every clip and engine interleaved in each run), after
one untimed warm-up per engine. Everything runs with no ``NOVA_*`` variables from the
environment (the defaults) and the Hugging Face Hub offline; all engines use the app's
default thread count (every core, at most four).

Run from the repository root::

    .venv/bin/python bench/voice.py          # about 1.5 min on 2 cores
    .venv/bin/python bench/voice.py --quick  # about 45 s, one run of each, noisy (for tests)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import numpy.typing as npt
from processes import ingest, rag_service, redis_server
from report import closing, section

from assistant.runtime import Runtime
from assistant.settings import AssistantSettings
from assistant.voice.audio import STT_RATE, decode, prepare
from assistant.voice.engines import PiperTTS, WhisperSTT, default_thread_count, split_sentences
from assistant.voice.service import VoiceService
from assistant.voice.transcripts import transcript_words, word_error_rate
from assistant.voice.worker import EngineWorker, WorkerLoad
from resilience import DEFAULT_BREAKERS, BreakerRegistry

ESPEAK = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"
#: espeak-ng voice and speed (words per minute): a clear, unhurried speaker.
ESPEAK_VOICE = "en-us"
ESPEAK_WPM = 150

#: Spoken clips for the real-time factor, about 2, 5 and 10 s (all verbatim from knowledge/).
STT_CLIPS = (
    ("~2 s", "Does Nova need the internet?"),
    ("~5 s", "Nova notices when the service is healthy again and returns to normal by itself."),
    (
        "~10 s",
        "Plain sentences work best, and spelling mistakes in ordinary words usually do no "
        "harm, because the meaning-based search still finds the right passages.",
    ),
)
BEAMS = (1, 5)
IN_PROCESS = "in-process"
WORKER = "worker"
#: 15 words, from knowledge/nova-voice.md.
SENTENCE_15 = "When spoken replies are on, Nova reads each answer aloud after showing it in text."
#: Four sentences, from knowledge/nova-voice.md.
REPLY_4 = (
    "When spoken replies are on, Nova reads each answer aloud after showing it in text. "
    "An audio player appears under the answer so you can pause it, replay it, or skip it. "
    "The text is always shown as well, so you never depend on sound alone. "
    "You can turn spoken replies on or off in the chat settings panel."
)
#: Spoken questions for the end-to-end turn (from knowledge/nova-faq.md and
#: knowledge/nova-getting-started.md).
TURN_QUESTIONS = (
    "How do I speak to Nova instead of typing?",
    "What does it mean when Nova says it is recovering?",
    "How do I add my own PDF files?",
)

#: Targets, printed as PASS/MISS beside the results.
TARGET_RTF = 0.3
TARGET_TTS_S = 0.5


@dataclass(frozen=True)
class Settings:
    """How long to run: timed runs per figure, and reloads of each engine."""

    runs: int
    reloads: int


FULL = Settings(runs=5, reloads=3)
QUICK = Settings(runs=1, reloads=1)


@dataclass(frozen=True)
class Clip:
    """A sentence spoken by espeak-ng: the WAV, and the 16 kHz speech STT receives."""

    label: str
    text: str
    wav: bytes
    audio: npt.NDArray[np.float32]

    @property
    def seconds(self) -> float:
        """Seconds of speech the engine receives."""
        return self.audio.size / STT_RATE


@dataclass(frozen=True)
class Loads:
    """Engine load times (seconds)."""

    whisper_first: float
    whisper_again: list[float]
    piper_first: float
    piper_again: list[float]
    workers: dict[int, tuple[float, WorkerLoad]]


@dataclass
class SttCell:
    """One clip through one path at one beam size: seconds and transcripts per run."""

    seconds: list[float] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TtsFigures:
    """Synthesis of the 15-word sentence and the 4-sentence reply."""

    sentence: dict[str, tuple[list[float], list[float]]]  # path -> (seconds, audio seconds)
    first_chunk: list[float]
    whole: list[float]
    reply_audio: list[float]
    chunks: int


@dataclass
class TurnRuns:
    """One spoken question through the running app, run after run."""

    question: str
    input_seconds: float
    turn: list[float] = field(default_factory=list)
    first_chunk: list[float] = field(default_factory=list)
    speech: list[float] = field(default_factory=list)
    audio_out: list[float] = field(default_factory=list)
    sentences: list[int] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Services:
    """The app's dependencies as started for part 4."""

    redis_url: str
    rag_url: str
    ingest_s: float
    documents: int
    chunks: int


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def clean_environment() -> None:
    """Drop ``NOVA_*`` (the app's defaults) and keep the Hub offline, here and in children."""
    for key in [key for key in os.environ if key.startswith("NOVA_")]:
        del os.environ[key]
    os.environ["HF_HUB_OFFLINE"] = "1"


def espeak(text: str, folder: Path, name: str) -> bytes:
    path = folder / f"{name}.wav"
    subprocess.run(
        [ESPEAK, "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WPM), "-w", str(path), text],
        check=True,
        timeout=60,
        capture_output=True,
    )
    return path.read_bytes()


def make_clip(label: str, text: str, folder: Path) -> Clip:
    wav = espeak(text, folder, re.sub(r"\W+", "-", label).strip("-") or "clip")
    return Clip(label, text, wav, prepare(decode(wav, "audio/wav")))


# -- 1. engine load ---------------------------------------------------------------------


def load_engines(settings: Settings) -> tuple[dict[int, WhisperSTT], PiperTTS, Loads]:
    """One WhisperSTT per beam size and one PiperTTS, with first and repeated load times."""
    started = time.perf_counter()
    whisper = {BEAMS[0]: WhisperSTT(beam_size=BEAMS[0])}
    whisper_first = time.perf_counter() - started
    whisper_again = []
    for _ in range(settings.reloads):
        started = time.perf_counter()
        whisper[BEAMS[1]] = WhisperSTT(beam_size=BEAMS[1])
        whisper_again.append(time.perf_counter() - started)
    started = time.perf_counter()
    piper = PiperTTS()
    piper_first = time.perf_counter() - started
    piper_again = []
    for _ in range(settings.reloads):
        started = time.perf_counter()
        piper = PiperTTS()
        piper_again.append(time.perf_counter() - started)
    return whisper, piper, Loads(whisper_first, whisper_again, piper_first, piper_again, {})


async def start_workers(loads: Loads) -> dict[int, EngineWorker]:
    """One started EngineWorker per beam size, one after the other."""
    workers: dict[int, EngineWorker] = {}
    for beam in BEAMS:
        worker = workers[beam] = EngineWorker(beam_size=beam)
        started = time.perf_counter()
        load = await worker.start()
        loads.workers[beam] = (time.perf_counter() - started, load)
    return workers


def report_loads(loads: Loads, settings: Settings) -> None:
    print(
        f"Engine load: Whisper tiny.en (int8) and Piper joe (medium), {default_thread_count()} "
        "threads each"
    )
    print("first = first build in this process (imports faster-whisper / piper + onnxruntime);")
    print(f"again = median of {settings.reloads} more build(s) (libraries loaded, files cached)")
    print()
    header = f"{'engine':<42}{'first s':>10}{'again s':>10}"
    print(header)
    print("-" * len(header))
    print(f"{'WhisperSTT()':<42}{loads.whisper_first:>10.2f}{median(loads.whisper_again):>10.2f}")
    print(f"{'PiperTTS()':<42}{loads.piper_first:>10.2f}{median(loads.piper_again):>10.2f}")
    print()
    print("EngineWorker.start(): spawn a process, import, load both engines, answer over IPC")
    header = f"{'worker':<24}{'start() s':>12}{'load in worker s':>18}{'spawn + IPC s':>15}"
    print(header)
    print("-" * len(header))
    for beam, (seconds, load) in loads.workers.items():
        name = f"EngineWorker(beam {beam})"
        print(
            f"{name:<24}{seconds:>12.2f}{load.load_seconds:>18.2f}"
            f"{seconds - load.load_seconds:>15.2f}"
        )


# -- 2. speech-to-text ------------------------------------------------------------------


async def measure_stt(
    clips: list[Clip],
    whisper: dict[int, WhisperSTT],
    workers: dict[int, EngineWorker],
    settings: Settings,
) -> dict[tuple[str, str, int], SttCell]:
    """Every clip x path x beam, ``runs`` times, interleaved; one warm-up per engine."""
    cells: dict[tuple[str, str, int], SttCell] = {}
    for beam in BEAMS:
        whisper[beam].transcribe(clips[0].audio)
        await workers[beam].transcribe(clips[0].audio)
    for _ in range(settings.runs):
        for clip in clips:
            for beam in BEAMS:
                for path in (IN_PROCESS, WORKER):
                    started = time.perf_counter()
                    if path == IN_PROCESS:
                        text = whisper[beam].transcribe(clip.audio)
                    else:
                        text = await workers[beam].transcribe(clip.audio)
                    elapsed = time.perf_counter() - started
                    cell = cells.setdefault((clip.label, path, beam), SttCell())
                    cell.seconds.append(elapsed)
                    cell.transcripts.append(text)
    return cells


def rtf(cell: SttCell, clip: Clip) -> float:
    return median(cell.seconds) / clip.seconds


def mean_wer(cell: SttCell, clip: Clip) -> float:
    return statistics.fmean(word_error_rate(clip.text, text) for text in cell.transcripts)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report_stt(
    clips: list[Clip], cells: dict[tuple[str, str, int], SttCell], settings: Settings
) -> None:
    print(
        f"STT real-time factor: WhisperSTT (tiny.en, int8), median of {settings.runs} run(s) "
        "after a warm-up"
    )
    print(f"clips spoken by espeak-ng ({ESPEAK_VOICE}, {ESPEAK_WPM} wpm), text from knowledge/:")
    for clip in clips:
        lines = textwrap.wrap(f'"{clip.text}"', 80)
        print(f"  {clip.label:<7}" + "\n         ".join(lines))
    print("audio s = speech the engine receives (WAV decoded to 16 kHz, silence trimmed by")
    print("audio.prepare, as the app does); worker = EngineWorker.transcribe, IPC included")
    print("RTF = median s / audio s; WER = word error rate against the spoken text")
    print()
    header = (
        f"{'clip':<8}{'audio s':>9}{'words':>7}  {'path':<12}{'beam':>5}{'median s':>10}"
        f"{'min s':>8}{'RTF':>7}{'WER':>7}"
    )
    print(header)
    print("-" * len(header))
    for clip in clips:
        for path in (IN_PROCESS, WORKER):
            for beam in BEAMS:
                cell = cells[(clip.label, path, beam)]
                print(
                    f"{clip.label:<8}{clip.seconds:>9.2f}{len(transcript_words(clip.text)):>7}  "
                    f"{path:<12}{beam:>5}{median(cell.seconds):>10.3f}{min(cell.seconds):>8.3f}"
                    f"{rtf(cell, clip):>7.3f}{mean_wer(cell, clip):>7.2f}"
                )
    misheard = [
        (clip, beam, text)
        for clip in clips
        for beam in BEAMS
        for text in dict.fromkeys(cells[(clip.label, IN_PROCESS, beam)].transcripts)
        if word_error_rate(clip.text, text) > 0
    ]
    print()
    if misheard:
        print("transcripts with errors:")
        for clip, beam, text in misheard:
            print(f'  {clip.label:<7}beam {beam}: "{text}"')
    else:
        print("every clip transcribed word for word (case and punctuation aside)")
    print()
    print(f"target: RTF < {TARGET_RTF} on every clip")
    for path in (IN_PROCESS, WORKER):
        for beam in BEAMS:
            worst = max(clips, key=lambda clip: rtf(cells[(clip.label, path, beam)], clip))
            value = rtf(cells[(worst.label, path, beam)], worst)
            name = f"{path}, beam {beam}"
            print(
                f"    {name:<22}worst RTF {value:.3f} ({worst.label} clip)  "
                f"{verdict(value < TARGET_RTF)}"
            )


# -- 3. text-to-speech ------------------------------------------------------------------


async def speak_timed(chunks: AsyncIterator[tuple[bytes, int]]) -> tuple[float, float, float, int]:
    """Seconds to the first chunk and to the last, seconds of audio, and chunk count."""
    started = time.perf_counter()
    first = None
    audio = 0.0
    count = 0
    async for pcm, rate in chunks:
        if first is None:
            first = time.perf_counter() - started
        audio += len(pcm) / 2 / rate
        count += 1
    whole = time.perf_counter() - started
    return (whole if first is None else first), whole, audio, count


async def measure_tts(piper: PiperTTS, worker: EngineWorker, settings: Settings) -> TtsFigures:
    voice = VoiceService(BreakerRegistry(DEFAULT_BREAKERS)["voice_processing"], worker)
    piper.synthesize(SENTENCE_15)
    await worker.synthesize(SENTENCE_15)
    await speak_timed(voice.speak(REPLY_4))
    sentence: dict[str, tuple[list[float], list[float]]] = {IN_PROCESS: ([], []), WORKER: ([], [])}
    first_chunk, whole, reply_audio = [], [], []
    chunks = 0
    for _ in range(settings.runs):
        started = time.perf_counter()
        samples = piper.synthesize(SENTENCE_15)
        sentence[IN_PROCESS][0].append(time.perf_counter() - started)
        sentence[IN_PROCESS][1].append(samples.size / piper.sample_rate)
        started = time.perf_counter()
        pcm, rate = await worker.synthesize(SENTENCE_15)
        sentence[WORKER][0].append(time.perf_counter() - started)
        sentence[WORKER][1].append(len(pcm) / 2 / rate)
        first, all_of_it, audio, chunks = await speak_timed(voice.speak(REPLY_4))
        first_chunk.append(first)
        whole.append(all_of_it)
        reply_audio.append(audio)
    return TtsFigures(sentence, first_chunk, whole, reply_audio, chunks)


def report_tts(figures: TtsFigures, settings: Settings) -> None:
    print(f"TTS: Piper joe (medium), median of {settings.runs} run(s) after a warm-up")
    print(f'15-word sentence: "{SENTENCE_15}"')
    print("audio s/s = seconds of speech produced per second of synthesis")
    print()
    header = f"{'path':<34}{'median s':>10}{'min s':>8}{'audio s':>9}{'audio s/s':>11}"
    print(header)
    print("-" * len(header))
    for path, name in ((IN_PROCESS, "PiperTTS.synthesize"), (WORKER, "EngineWorker.synthesize")):
        seconds, audio = figures.sentence[path]
        print(
            f"{name:<34}{median(seconds):>10.3f}{min(seconds):>8.3f}{median(audio):>9.2f}"
            f"{median(audio) / median(seconds):>11.1f}"
        )
    sentences = split_sentences(REPLY_4)
    print()
    print(
        f"{len(sentences)}-sentence reply ({len(transcript_words(REPLY_4))} words, "
        "knowledge/nova-voice.md) "
        "through VoiceService.speak"
    )
    print("(voice_processing breaker + EngineWorker, one sentence synthesised per chunk)")
    header = f"{'':<34}{'median s':>10}{'min s':>8}"
    print(header)
    print("-" * len(header))
    first = figures.first_chunk
    print(f"{'first audio chunk':<34}{median(first):>10.3f}{min(first):>8.3f}")
    print(f"{'whole reply':<34}{median(figures.whole):>10.3f}{min(figures.whole):>8.3f}")
    print(
        f"{figures.chunks} chunks, {median(figures.reply_audio):.2f} s of audio; the first chunk "
        f"comes at {median(first) / median(figures.whole):.0%} of the whole reply's time"
    )
    print()
    value = median(figures.sentence[IN_PROCESS][0])
    print(f"target: < {TARGET_TTS_S} s for a 15-word sentence")
    print(f"    PiperTTS.synthesize median {value:.3f} s  {verdict(value < TARGET_TTS_S)}")
    value = median(figures.sentence[WORKER][0])
    print(f"    EngineWorker.synthesize median {value:.3f} s  {verdict(value < TARGET_TTS_S)}")


# -- 4. end-to-end voice turn -----------------------------------------------------------


@contextlib.contextmanager
def services(tmp: Path) -> Iterator[Services]:
    """Redis and the knowledge service over a fresh index of knowledge/; stopped after."""
    data_dir = tmp / "rag"
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp / "redis")).url
        ingest_s = ingest(data_dir)
        rag = stack.enter_context(rag_service(data_dir, tmp / "rag-serve.log"))
        rag_url, health = rag.url, rag.health
        yield Services(
            redis_url,
            rag_url,
            ingest_s,
            int(str(health.get("documents", 0))),
            int(str(health.get("chunks", 0))),
        )


async def one_turn(runtime: Runtime, session: str, clip: Clip, runs: TurnRuns | None) -> None:
    assistant = runtime.assistant
    started = time.perf_counter()
    heard = await assistant.voice_turn(session, clip.wav, mime="audio/wav")
    turn = time.perf_counter() - started
    reply = heard.reply
    if reply is None:
        raise RuntimeError(f"no reply to {clip.text!r} (heard {heard.transcript!r})")
    first, speech, audio, count = await speak_timed(assistant.speak(session, reply.text))
    if runs is not None:
        runs.turn.append(turn)
        runs.first_chunk.append(first)
        runs.speech.append(speech)
        runs.audio_out.append(audio)
        runs.sentences.append(count)
        runs.transcripts.append(heard.transcript or "")
        runs.sources.append(reply.fallback_source or "rag")


async def measure_turns(
    tmp: Path, found: Services, clips: list[Clip], settings: Settings
) -> tuple[float, list[TurnRuns]]:
    app_settings = AssistantSettings.load(
        redis_url=found.redis_url,
        rag_url=found.rag_url,
        data_dir=tmp / "nova",
        health_port=0,
        voice_enabled=True,
    )
    runtime = Runtime.build(app_settings)
    try:
        started = time.perf_counter()
        await runtime.start()
        start_s = time.perf_counter() - started
        if runtime.assistant.voice is None or runtime.assistant.voice.worker is None:
            raise RuntimeError("the runtime started without local voice")
        if runtime.assistant.voice.worker.last_load is None:
            raise RuntimeError("the runtime's voice worker did not start")
        await one_turn(runtime, "bench-warm-up", clips[0], None)
        results = [TurnRuns(clip.text, clip.seconds) for clip in clips]
        for run in range(settings.runs):
            for i, clip in enumerate(clips):
                await one_turn(runtime, f"bench-{run}-{i}", clip, results[i])
        return start_s, results
    finally:
        await runtime.stop()


def report_turns(
    found: Services, start_s: float, results: list[TurnRuns], settings: Settings
) -> None:
    print(
        f"End-to-end voice turn: Runtime (voice on), median of {settings.runs} run(s) after "
        "a warm-up turn"
    )
    print("redis-server and python -m rag serve on free ports, index of knowledge/ built fresh:")
    print(
        f"  ingest {found.documents} documents, {found.chunks} chunks in {found.ingest_s:.1f} s; "
        f"Runtime.start() {start_s:.2f} s (health port, journal, voice worker)"
    )
    print(
        f"questions spoken by espeak-ng ({ESPEAK_VOICE}, {ESPEAK_WPM} wpm), WAV bytes, audio/wav:"
    )
    for i, runs in enumerate(results, 1):
        print(f'  q{i}  "{runs.question}"')
    print("turn = Assistant.voice_turn (decode + STT in the worker + RAG query + session writes)")
    print("1st chunk / speech = Assistant.speak on the reply: first chunk, all of it")
    print("to audio = turn + 1st chunk (question sent -> first reply audio); total = turn + speech")
    print()
    header = (
        f"{'q':<4}{'in s':>6}{'turn s':>8}{'1st chunk':>10}{'speech s':>10}{'to audio':>10}"
        f"{'total s':>9}{'sent.':>6}{'out s':>7}{'WER':>6}  {'answer'}"
    )
    print(header)
    print("-" * len(header))
    for i, runs in enumerate(results, 1):
        to_audio = [t + f for t, f in zip(runs.turn, runs.first_chunk, strict=True)]
        total = [t + s for t, s in zip(runs.turn, runs.speech, strict=True)]
        error = statistics.fmean(word_error_rate(runs.question, text) for text in runs.transcripts)
        answer = ",".join(dict.fromkeys(runs.sources))
        print(
            f"{'q' + str(i):<4}{runs.input_seconds:>6.2f}{median(runs.turn):>8.3f}"
            f"{median(runs.first_chunk):>10.3f}{median(runs.speech):>10.3f}"
            f"{median(to_audio):>10.3f}{median(total):>9.3f}"
            f"{median([float(n) for n in runs.sentences]):>6.0f}"
            f"{median(runs.audio_out):>7.2f}{error:>6.2f}  {answer}"
        )
    print("(answer: rag = from the knowledge service; anything else names the fallback used)")
    heard = [
        (i, text)
        for i, runs in enumerate(results, 1)
        for text in dict.fromkeys(runs.transcripts)
        if word_error_rate(runs.question, text) > 0
    ]
    for i, text in heard:
        print(f'  q{i} heard as "{text}"')


# -- 5. machine -------------------------------------------------------------------------


def report_machine(load_before: tuple[float, float, float], elapsed: float) -> None:
    closing(
        load_before,
        elapsed,
        f"faster-whisper {version('faster-whisper')}, ctranslate2 {version('ctranslate2')}, "
        f"piper-tts {version('piper-tts')}, onnxruntime {version('onnxruntime')}",
    )


async def engines_and_speech(clips: list[Clip], settings: Settings) -> None:
    """Parts 1 to 3: load the engines, then time speech-to-text and text-to-speech."""
    whisper, piper, loads = load_engines(settings)
    workers: dict[int, EngineWorker] = {}
    try:
        workers = await start_workers(loads)
        report_loads(loads, settings)
        section()
        cells = await measure_stt(clips, whisper, workers, settings)
        report_stt(clips, cells, settings)
        section()
        figures = await measure_tts(piper, workers[BEAMS[0]], settings)
        report_tts(figures, settings)
        section()
    finally:
        for worker in workers.values():
            await worker.stop()


async def voice_turns(tmp: Path, clips: list[Clip], settings: Settings) -> None:
    """Part 4: the app's voice turn against real services."""
    with services(tmp) as found:
        start_s, results = await measure_turns(tmp, found, clips, settings)
    report_turns(found, start_s, results, settings)
    section()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one run of each (for tests)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()
    clean_environment()
    # Worker and breaker logs go to stderr; keep stdout the tables.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="nova-voice-bench-") as name:
        tmp = Path(name)
        stt_clips = [make_clip(label, text, tmp) for label, text in STT_CLIPS]
        turn_clips = [make_clip(f"q{i}", text, tmp) for i, text in enumerate(TURN_QUESTIONS, 1)]
        asyncio.run(engines_and_speech(stt_clips, settings))
        asyncio.run(voice_turns(tmp, turn_clips, settings))
    report_machine(load_before, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
