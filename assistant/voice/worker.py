"""Run the local speech engines in one separate process, off the event loop.

Whisper and Piper are CPU-bound native code: run on the event loop they would stall
every conversation, and a crash inside them (a segfault, an out-of-memory kill) would
take the whole app down. ``EngineWorker`` keeps them in a single spawned worker process
that loads the models once. If that process dies, the call in flight raises
``EngineError`` (so the ``voice_processing`` breaker counts it) and the next call starts a
fresh process.

Timeouts are the caller's: the breaker cancels the awaiting coroutine, but cancelling
``run_in_executor`` does not stop the worker, which stays busy with the abandoned call.
After a timeout the caller must call ``kill()`` (or ``await restart()``) so the next
call gets a fresh process instead of queueing behind a hung one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from assistant.voice.engines import (
    EngineError,
    PiperTTS,
    SpeechToText,
    TextToSpeech,
    WhisperSTT,
    default_thread_count,
)
from resilience.errors import CallerError

__all__ = ["EngineFactory", "EngineWorker", "WorkerLoad", "local_engines"]

log = logging.getLogger(__name__)

#: Builds the engines inside the worker process. It is pickled to get there, so it must
#: be a top-level function (or a ``functools.partial`` of one).
EngineFactory = Callable[[], tuple[SpeechToText, TextToSpeech]]

T = TypeVar("T")


def local_engines(
    model_dir: Path | None = None,
    voice_path: Path | None = None,
    threads: int | None = None,
    beam_size: int = 1,
) -> tuple[SpeechToText, TextToSpeech]:
    """The default engines: Whisper tiny.en and the Piper joe voice, from installed packages."""
    stt = WhisperSTT(model_dir, cpu_threads=threads, beam_size=beam_size)
    return stt, PiperTTS(voice_path, threads=threads)


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """What starting the worker cost: its pid and the seconds spent loading engines."""

    pid: int
    load_seconds: float
    stt: str
    tts: str


class EngineWorker:
    """The local speech engines in one spawned process, called with ``await``.

    Calls queue up and run one at a time. Engine failures raise ``EngineError`` (a
    ``CallerError`` raised by an engine stays one); a dead process raises ``EngineError``
    and is replaced lazily on the next call. ``threads`` and ``beam_size`` tune the
    default engines; ``engine_factory`` replaces them, e.g. with faulty ones in tests.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        voice_path: Path | None = None,
        *,
        threads: int | None = None,
        beam_size: int = 1,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        self.threads = threads or default_thread_count()
        self._factory: EngineFactory = engine_factory or functools.partial(
            local_engines, model_dir, voice_path, self.threads, beam_size
        )
        self._executor: ProcessPoolExecutor | None = None
        self.last_load: WorkerLoad | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The worker process's id, if one is running."""
        alive = [p for p in self._processes() if p.is_alive()]
        return int(alive[0].pid) if alive else None

    async def start(self) -> WorkerLoad:
        """Spawn the worker and load the models now, so the first question isn't slow."""
        started = time.perf_counter()
        load = await self._call(_warm)
        self.last_load = load
        log.info(
            "voice worker pid %d ready in %.2f s (engines %s + %s loaded in %.2f s)",
            load.pid,
            time.perf_counter() - started,
            load.stt,
            load.tts,
            load.load_seconds,
        )
        return load

    async def transcribe(self, audio: npt.NDArray[np.float32]) -> str:
        """The words in ``audio`` (16 kHz mono float32, see ``audio.prepare``)."""
        return await self._call(_transcribe, np.ascontiguousarray(audio, dtype=np.float32))

    async def synthesize(self, text: str) -> tuple[bytes, int]:
        """``text`` spoken: mono PCM16 bytes and their sample rate."""
        return await self._call(_synthesize, text)

    def kill(self) -> None:
        """Kill the worker at once (a hung engine), failing its calls with ``EngineError``.

        Returns without waiting for the engines; the next call spawns a fresh process.
        """
        executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = _processes_of(executor)
        for process in processes:
            process.kill()  # before shutdown: a hung worker would never take its sentinel
        manager = getattr(executor, "_executor_manager_thread", None)
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=2.0)
        if manager is not None:
            # It fails the pending calls and frees the pool's queues; give it a moment
            # so nothing is left half-released (a "leaked semaphore" warning at exit).
            manager.join(timeout=2.0)
        self.restarts += 1
        log.warning("voice worker killed: pids %s", [p.pid for p in processes])

    async def restart(self) -> WorkerLoad:
        """Kill the worker and start a fresh one (call after a timed-out call)."""
        self.kill()
        return await self.start()

    async def stop(self, grace: float = 5.0) -> None:
        """Let the worker finish its call and exit; kill it if that takes over ``grace`` s."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = _processes_of(executor)
        try:
            await asyncio.wait_for(
                asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True), grace
            )
        except TimeoutError:
            for process in processes:
                process.kill()
            log.warning("voice worker did not stop within %g s; killed", grace)

    def _processes(self) -> list[Any]:
        return _processes_of(self._executor) if self._executor is not None else []

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self._factory, self.threads),
            )
        return self._executor

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        executor = self._pool()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, function, *args)
        except RuntimeError as exc:
            # BrokenProcessPool: the process died. A plain RuntimeError: the call was
            # submitted to a pool that kill() or stop() had just shut down.
            codes = [p.exitcode for p in _processes_of(executor)]
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
                self.restarts += 1
            what = (
                f"died (exit codes {codes})"
                if isinstance(exc, BrokenProcessPool)
                else f"could not take the call ({exc})"
            )
            raise EngineError(
                f"the voice engine process {what}; a fresh one starts on the next call"
            ) from exc


def _processes_of(executor: ProcessPoolExecutor) -> list[Any]:
    processes = getattr(executor, "_processes", None) or {}
    return list(processes.values())


# --- inside the worker process -------------------------------------------------------

_factory: EngineFactory | None = None
_engines: tuple[SpeechToText, TextToSpeech] | None = None
_load_seconds = 0.0


def _init_worker(factory: EngineFactory, threads: int) -> None:
    """Load the engines as the process starts; a load error is re-raised on first use.

    It never raises itself: a failing initializer breaks the pool without a message.
    """
    global _factory
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: never download
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    _factory = factory
    _thread_only_tqdm_lock()
    with contextlib.suppress(EngineError):
        _load()


def _thread_only_tqdm_lock() -> None:
    """Give tqdm a plain thread lock before faster-whisper makes a (disabled) progress bar.

    tqdm's default lock is a named POSIX semaphore; a worker killed with SIGKILL can't
    unlink it, and the resource tracker warns about a leak when the app exits.
    """
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError:
        return
    tqdm.tqdm.set_lock(threading.RLock())


def _load() -> tuple[SpeechToText, TextToSpeech]:
    """The engines, built on first use; a failed build is retried on the next call."""
    global _engines, _load_seconds
    if _engines is not None:
        return _engines
    if _factory is None:
        raise EngineError("voice worker was not initialised")
    started = time.perf_counter()
    _engines = _guarded(_factory, "loading the speech engines")
    _load_seconds = time.perf_counter() - started
    return _engines


def _guarded(function: Callable[[], T], doing: str) -> T:
    """Run an engine call, turning what it raises into an error the parent can unpickle.

    ``CallerError`` and ``EngineError`` pass through when they survive pickling (else a
    plain one with the same message); anything else becomes an ``EngineError``.
    """
    try:
        return function()
    except (CallerError, EngineError) as exc:
        raise _portable(exc) from None
    except Exception as exc:
        raise EngineError(f"{doing} failed: {type(exc).__name__}: {exc}") from None


def _portable(exc: CallerError | EngineError) -> CallerError | EngineError:
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except Exception:
        copy = None
    if type(copy) is type(exc) and str(copy) == str(exc):
        return exc
    return CallerError(str(exc)) if isinstance(exc, CallerError) else EngineError(str(exc))


def _warm() -> WorkerLoad:
    stt, tts = _load()
    return WorkerLoad(os.getpid(), _load_seconds, stt.name, tts.name)


def _transcribe(audio: npt.NDArray[np.float32]) -> str:
    stt, _ = _load()
    return _guarded(lambda: stt.transcribe(audio), "speech recognition")


def _synthesize(text: str) -> tuple[bytes, int]:
    _, tts = _load()
    samples = _guarded(lambda: tts.synthesize(text), "speech synthesis")
    return np.asarray(samples, dtype="<i2").tobytes(), int(tts.sample_rate)
