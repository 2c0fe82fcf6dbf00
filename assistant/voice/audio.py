"""Turning whatever the user recorded into the 16 kHz mono float32 speech-to-text expects.

Everything a user can send is checked here, before an engine sees it: empty, unreadable,
silent or overlong recordings raise ``AudioRejected``, a ``CallerError`` whose text is a
friendly sentence to show the user, so bad input never counts against the
``voice_processing`` breaker. Compressed files are decoded with PyAV (FFmpeg) and
resampled with soxr; PCM16 from the browser goes through ``from_pcm16``.
"""

from __future__ import annotations

import io
import math
import wave
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soxr

from resilience.errors import CallerError

__all__ = [
    "CHAINLIT_RATE",
    "MAX_SECONDS",
    "STT_RATE",
    "AudioRejected",
    "decode",
    "from_pcm16",
    "prepare",
    "read_wav",
    "resample",
    "resample_pcm16",
    "to_pcm16",
    "to_wav",
    "trim_silence",
]

STT_RATE = 16000
#: Chainlit 2.12 streams mono PCM16 at 24 kHz whatever ``sample_rate`` its config says.
CHAINLIT_RATE = 24000
#: Longest recording accepted by default: tiny.en transcribes 60 s in a few seconds on
#: two cores, well inside the ``voice_processing`` breaker's 20 s timeout.
MAX_SECONDS = 60.0

# Energy VAD: 20 ms frames; a frame is speech when its RMS clears the larger of an
# absolute floor (-50 dBFS) and an adaptive level: 10 dB above the noise floor (10th
# percentile of frame RMS), capped at 20 dB below the loudest frame so a recording
# with no pauses at all still counts as speech.
_FRAME_S = 0.02
_ABSOLUTE_FLOOR = 10 ** (-50 / 20)
_ABOVE_NOISE = 10 ** (10 / 20)
_BELOW_PEAK = 10 ** (-20 / 20)
_NOISE_PERCENTILE = 10
_PAD_S = 0.2  # kept either side of the speech so soft onsets and endings survive
_MIN_SPEECH_S = 0.1  # less than this (a click, a bump) is not a question

_MIME_FORMATS = {
    "audio/webm": "webm",
    "video/webm": "webm",
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "application/ogg": "ogg",
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "mp4",
    "audio/m4a": "mp4",
    "audio/x-m4a": "mp4",
    "audio/aac": "aac",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
}

EMPTY = "I didn't receive any audio. Please try recording again."
UNREADABLE = (
    "I couldn't read that audio. Please try recording again, or send a WAV, WebM, OGG or MP3 file."
)
NO_AUDIO = "That file doesn't contain any sound I can listen to. Please send a voice recording."
SILENT = (
    "I couldn't hear anything in that recording. Please try again a little closer to the "
    "microphone."
)


def _too_long(max_seconds: float) -> str:
    return (
        f"That recording is too long for me: please keep spoken questions under "
        f"{_seconds(max_seconds)}, or type longer ones."
    )


class AudioRejected(CallerError):
    """The user's recording can't be used; ``str(exc)`` is a sentence to show them.

    ``reason`` is a short machine-readable tag: ``empty``, ``unreadable``, ``no_audio``,
    ``too_long`` or ``silent``.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep ``reason`` when the error crosses a process boundary (the engine worker).
        return (type(self), (str(self), self.reason))


def decode(
    data: bytes, mime: str | None = None, *, max_seconds: float = MAX_SECONDS
) -> npt.NDArray[np.float32]:
    """Decode a recording (WAV, WebM, OGG, MP3, anything FFmpeg reads) to 16 kHz mono.

    ``mime`` is only a hint, used when FFmpeg cannot recognise the bytes by itself. Raw
    PCM has no header to recognise: use ``from_pcm16`` for it. Raises ``AudioRejected``
    for empty, unreadable or soundless data and for recordings over ``max_seconds``;
    no FFmpeg error escapes.
    """
    samples, rate = _decode_native(data, mime, max_seconds=max_seconds)
    return resample(samples, rate, STT_RATE)


def read_wav(data: bytes) -> tuple[npt.NDArray[np.int16], int]:
    """Mono PCM16 samples and their rate, from a WAV (or any audio a service sends back).

    PCM16 WAV is read exactly with ``wave``; anything else (float WAV, MP3...) goes through
    FFmpeg at its own rate. Raises ``AudioRejected`` if the bytes are not audio.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
        if width == 2 and channels >= 1 and rate > 0:
            pcm = np.frombuffer(frames[: len(frames) // (2 * channels) * 2 * channels], "<i2")
            if channels > 1:
                mixed = pcm.reshape(-1, channels).astype(np.float32).mean(axis=1)
                pcm = np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)
            return pcm.astype(np.int16), rate
    except (wave.Error, EOFError, ValueError):
        pass
    samples, rate = _decode_native(data, None, max_seconds=math.inf)
    return np.frombuffer(to_pcm16(samples), "<i2").astype(np.int16), rate


def from_pcm16(data: bytes, rate: int = CHAINLIT_RATE) -> npt.NDArray[np.float32]:
    """Mono little-endian PCM16 at ``rate`` (Chainlit's audio chunks) to 16 kHz float32.

    An odd trailing byte (a chunk boundary split mid-sample) is dropped.
    """
    usable = len(data) - len(data) % 2
    pcm = np.frombuffer(data[:usable], dtype="<i2")
    return resample(pcm.astype(np.float32) / 32768.0, rate, STT_RATE)


def resample_pcm16(data: bytes, from_rate: int, to_rate: int) -> bytes:
    """Mono PCM16 bytes from one rate to another (a voice's 22.05 kHz to the browser's 24)."""
    usable = len(data) - len(data) % 2
    pcm = np.frombuffer(data[:usable], dtype="<i2")
    if from_rate == to_rate:
        return bytes(pcm.tobytes())
    return to_pcm16(resample(pcm.astype(np.float32) / 32768.0, from_rate, to_rate))


def resample(
    audio: npt.NDArray[np.float32], from_rate: int, to_rate: int
) -> npt.NDArray[np.float32]:
    """Resample mono float32 audio with soxr (high quality, and fast enough for 60 s)."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
    if from_rate == to_rate or samples.size == 0:
        return samples.copy()
    out: npt.NDArray[np.float32] = np.asarray(
        soxr.resample(samples, from_rate, to_rate, quality="HQ"), dtype=np.float32
    )
    return out


def trim_silence(audio: npt.NDArray[np.float32], rate: int = STT_RATE) -> npt.NDArray[np.float32]:
    """Cut leading and trailing silence, keeping a little padding; empty if all silent.

    Whisper hallucinates words ("Thank you.") in long silences, and every second it
    doesn't have to read saves time, so only the span from the first to the last frame
    of speech is kept (pauses inside it stay). Less than 0.1 s of speech counts as silence.
    """
    samples = np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1))
    frame = max(1, round(rate * _FRAME_S))
    count = math.ceil(samples.size / frame)
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    padded = np.zeros(count * frame, dtype=np.float64)
    padded[: samples.size] = samples
    padded -= padded.mean()  # a DC offset is not speech
    rms = np.sqrt(np.mean(padded.reshape(count, frame) ** 2, axis=1))
    noise = float(np.percentile(rms, _NOISE_PERCENTILE))
    peak = float(rms.max())
    threshold = max(_ABSOLUTE_FLOOR, min(noise * _ABOVE_NOISE, peak * _BELOW_PEAK))
    voiced = np.flatnonzero(rms > threshold)
    if voiced.size * frame < _MIN_SPEECH_S * rate:
        return np.zeros(0, dtype=np.float32)
    pad = round(_PAD_S * rate)
    start = max(0, int(voiced[0]) * frame - pad)
    end = min(samples.size, (int(voiced[-1]) + 1) * frame + pad)
    return samples[start:end].copy()


def prepare(
    audio: npt.NDArray[np.float32], *, max_seconds: float = MAX_SECONDS
) -> npt.NDArray[np.float32]:
    """Make 16 kHz audio ready for speech-to-text, or say why it can't be used.

    Trims silence, then rejects recordings with nothing in them (``AudioRejected``,
    reasons ``empty`` and ``silent``) and speech longer than ``max_seconds`` (``too_long``;
    the limit applies to the trimmed speech, so a long pause at the end doesn't count).
    """
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    if samples.size == 0:
        raise AudioRejected(EMPTY, "empty")
    samples = np.clip(np.nan_to_num(samples), -1.0, 1.0)
    speech = trim_silence(samples, STT_RATE)
    if speech.size == 0:
        raise AudioRejected(SILENT, "silent")
    if speech.size > max_seconds * STT_RATE:
        raise AudioRejected(_too_long(max_seconds), "too_long")
    return speech


def to_pcm16(samples: npt.NDArray[np.float32]) -> bytes:
    """Float samples in [-1, 1] as little-endian PCM16 bytes (clipped, rounded)."""
    scaled = np.clip(np.nan_to_num(np.asarray(samples, dtype=np.float32)), -1.0, 1.0) * 32767.0
    return bytes(np.rint(scaled).astype("<i2").tobytes())


def to_wav(samples: npt.NDArray[np.float32] | npt.NDArray[np.int16], rate: int) -> bytes:
    """A mono PCM16 WAV file of ``samples`` (int16 as is, float scaled from [-1, 1])."""
    array = np.asarray(samples).reshape(-1)
    pcm = (
        array.astype("<i2").tobytes()
        if array.dtype == np.int16
        else to_pcm16(array.astype(np.float32))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


def _seconds(seconds: float) -> str:
    value = f"{seconds:g}"
    return f"{value} second" if value == "1" else f"{value} seconds"


def _format_hint(mime: str | None) -> str | None:
    if not mime:
        return None
    return _MIME_FORMATS.get(mime.split(";", 1)[0].strip().lower())


def _decode_native(
    data: bytes, mime: str | None, *, max_seconds: float
) -> tuple[npt.NDArray[np.float32], int]:
    """Mono float32 at the recording's own rate; every failure becomes ``AudioRejected``."""
    if not data:
        raise AudioRejected(EMPTY, "empty")
    try:
        return _demux(data, None, max_seconds)
    except AudioRejected as exc:
        hint = _format_hint(mime)
        if exc.reason != "unreadable" or hint is None:
            raise
        return _demux(data, hint, max_seconds)


def _demux(
    data: bytes, format_name: str | None, max_seconds: float
) -> tuple[npt.NDArray[np.float32], int]:
    try:
        container = av.open(
            io.BytesIO(data), mode="r", format=format_name, metadata_errors="ignore"
        )
    except Exception as exc:  # FFmpeg's errors are many and varied; all mean "unreadable"
        raise AudioRejected(UNREADABLE, "unreadable") from exc
    with container:
        if not container.streams.audio:
            raise AudioRejected(NO_AUDIO, "no_audio")
        stream = container.streams.audio[0]
        declared = container.duration  # microseconds, when the header knows it
        if declared is not None and declared / 1_000_000 > max_seconds + 1.0:
            raise AudioRejected(_too_long(max_seconds), "too_long")
        return _decode_stream(container, stream, max_seconds)


def _decode_stream(
    container: av.container.InputContainer, stream: av.AudioStream, max_seconds: float
) -> tuple[npt.NDArray[np.float32], int]:
    """Decode one audio stream, stopping as soon as it runs past ``max_seconds``.

    The running count catches files whose header lies about (or omits) the duration,
    such as the WebM a browser's MediaRecorder writes. A corrupt packet after some good
    audio ends the recording there (an upload cut short); one before any is fatal.
    """
    # Planar float keeps the channels apart so they can be averaged here: FFmpeg's own
    # stereo-to-mono downmix can exceed full scale.
    converter = av.AudioResampler(format="fltp")
    pieces: list[npt.NDArray[np.float32]] = []
    rate = 0
    seconds = 0.0
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                if not rate:
                    rate = frame.sample_rate
                for converted in converter.resample(frame):
                    planes = np.asarray(converted.to_ndarray(), dtype=np.float32)
                    pieces.append(planes.reshape(planes.shape[0], -1).mean(axis=0))
                    seconds += converted.samples / converted.sample_rate
                if seconds > max_seconds:
                    raise AudioRejected(_too_long(max_seconds), "too_long")
    except AudioRejected:
        raise
    except Exception as exc:
        if not pieces:
            raise AudioRejected(UNREADABLE, "unreadable") from exc
    if not pieces or rate <= 0:
        raise AudioRejected(NO_AUDIO, "no_audio")
    samples = np.concatenate(pieces).astype(np.float32)
    if not np.all(np.isfinite(samples)):
        samples = np.nan_to_num(samples).astype(np.float32)
    return samples, rate
