"""Audio decoding, resampling, trimming and validation: real FFmpeg (PyAV) and soxr."""

from __future__ import annotations

import contextlib
import io
import pickle
import wave

import av
import numpy as np
import pytest

from assistant.voice.audio import (
    CHAINLIT_RATE,
    MAX_SECONDS,
    STT_RATE,
    AudioRejected,
    decode,
    from_pcm16,
    prepare,
    read_wav,
    resample,
    resample_pcm16,
    to_pcm16,
    to_wav,
    trim_silence,
)
from resilience import CallerError
from resilience.errors import is_caller_error

pytestmark = pytest.mark.unit


def tone(seconds: float, rate: int = STT_RATE, freq: float = 440.0, amp: float = 0.5):
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float, rate: int = STT_RATE, noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * rate)) * noise).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    """A PCM16 WAV; with ``channels`` > 1 the mono signal is copied to every channel."""
    pcm = np.rint(np.clip(samples, -1, 1) * 32767).astype("<i2")
    interleaved = np.repeat(pcm, channels)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(interleaved.tobytes())
    return buffer.getvalue()


def encoded(samples: np.ndarray, rate: int, container: str, codec: str, codec_rate: int) -> bytes:
    """``samples`` compressed by FFmpeg, as a browser or phone would send them."""
    pcm = np.rint(samples * 32767).astype(np.int16).reshape(1, -1)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=codec_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def dominant_hz(samples: np.ndarray, rate: int = STT_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_stereo_wav_at_any_rate_becomes_16k_mono_float32(rate):
    audio = decode(wav_bytes(tone(2.0, rate), rate, channels=2), "audio/wav")

    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert abs(audio.size - 2.0 * STT_RATE) <= 2
    assert dominant_hz(audio) == pytest.approx(440, abs=2)
    # Identical channels average to the same level, not double it.
    assert float(np.max(np.abs(audio))) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    ("container", "codec", "codec_rate", "mime"),
    [
        ("ogg", "libopus", 48000, "audio/ogg; codecs=opus"),
        ("webm", "libopus", 48000, "audio/webm;codecs=opus"),
        ("mp3", "libmp3lame", 44100, "audio/mpeg"),
    ],
)
def test_compressed_recordings_decode(container, codec, codec_rate, mime):
    data = encoded(tone(1.5, 16000), 16000, container, codec, codec_rate)

    audio = decode(data, mime)

    assert audio.dtype == np.float32
    assert audio.size / STT_RATE == pytest.approx(1.5, abs=0.08)
    assert dominant_hz(audio) == pytest.approx(440, abs=3)


def test_float_wav_decodes():
    data = encoded(tone(1.0, 22050), 22050, "wav", "pcm_f32le", 22050)

    assert decode(data).size == pytest.approx(STT_RATE, abs=2)


def rejection(data: bytes, **kwargs) -> AudioRejected:
    with pytest.raises(AudioRejected) as caught:
        decode(data, **kwargs)
    exc = caught.value
    assert isinstance(exc, CallerError)
    assert is_caller_error(exc), "bad input must never count against the voice breaker"
    message = str(exc)
    assert message[0].isupper()
    assert message.endswith(".")
    assert "Error" not in message
    assert "ffmpeg" not in message.lower()
    return exc


def test_empty_bytes_are_rejected():
    assert rejection(b"").reason == "empty"


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "data",
    [
        b"this is not audio at all",
        b'{"json": "instead of audio"}',
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # a WAV header cut short
        bytes(4096),
        np.random.default_rng(7).bytes(50_000),
    ],
    ids=["text", "json", "truncated-header", "zeros", "random"],
)
def test_garbage_is_rejected_with_a_friendly_message(data):
    exc = rejection(data, mime="audio/webm")

    assert exc.reason == "unreadable"
    assert "couldn't read that audio" in str(exc)


@pytest.mark.timeout(60)
def test_no_ffmpeg_error_escapes_on_mangled_files():
    rng = np.random.default_rng(3)
    good = encoded(tone(1.0), STT_RATE, "webm", "libopus", 48000)
    for _ in range(60):
        data = bytearray(good[: int(rng.integers(1, len(good)))])
        for _ in range(int(rng.integers(0, 20))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        with contextlib.suppress(AudioRejected):  # anything else fails the test
            decode(bytes(data), "audio/webm")


def test_a_file_without_sound_is_rejected():
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)

    assert rejection(buffer.getvalue()).reason == "no_audio"
    assert rejection(wav_bytes(np.zeros(0, np.float32), 16000)).reason == "no_audio"


def test_ten_minute_recording_is_rejected_saying_the_limit():
    ten_minutes = wav_bytes(np.zeros(600 * 8000, np.float32), 8000)

    exc = rejection(ten_minutes)

    assert exc.reason == "too_long"
    assert f"{MAX_SECONDS:g} seconds" in str(exc)


def test_the_limit_is_checked_while_decoding_too():
    data = encoded(tone(3.0), STT_RATE, "ogg", "libopus", 48000)

    exc = rejection(data, max_seconds=1.0)

    assert exc.reason == "too_long"
    assert "1 second" in str(exc)


def test_from_pcm16_turns_chainlit_chunks_into_16k_float():
    pcm = np.rint(tone(1.0, CHAINLIT_RATE) * 32767).astype("<i2").tobytes()

    audio = from_pcm16(pcm + b"\x01")  # a stray odd byte from a chunk boundary

    assert audio.dtype == np.float32
    assert abs(audio.size - STT_RATE) <= 1
    assert dominant_hz(audio) == pytest.approx(440, abs=2)
    assert from_pcm16(b"").size == 0


def test_resample_keeps_duration_and_pitch():
    out = resample(tone(1.0, 44100, freq=1000), 44100, 16000)

    assert out.dtype == np.float32
    assert out.size == 16000
    assert dominant_hz(out) == pytest.approx(1000, abs=2)


def test_resample_pcm16_for_the_browser():
    pcm = np.rint(tone(1.0, 22050) * 32767).astype("<i2").tobytes()

    out = resample_pcm16(pcm, 22050, CHAINLIT_RATE)

    assert len(out) == 2 * CHAINLIT_RATE
    assert resample_pcm16(pcm, 22050, 22050) == pcm


def test_trim_silence_cuts_the_quiet_around_speech():
    speech = tone(0.5)
    audio = np.concatenate([silence(1.0, noise=1e-3), speech, silence(1.5, noise=1e-3, seed=1)])

    trimmed = trim_silence(audio)

    # Half a second of "speech" plus about 0.2 s of padding each side.
    assert trimmed.size / STT_RATE == pytest.approx(0.9, abs=0.05)
    assert np.max(np.abs(trimmed)) == pytest.approx(0.5, abs=0.01)


def test_trim_silence_keeps_audio_without_pauses():
    audio = tone(2.0, amp=0.3)

    assert trim_silence(audio).size == audio.size


def test_trim_silence_of_silence_is_empty():
    assert trim_silence(np.zeros(STT_RATE, np.float32)).size == 0
    assert trim_silence(silence(2.0, noise=1e-3)).size == 0
    assert trim_silence(np.zeros(0, np.float32)).size == 0


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(3 * STT_RATE, np.float32),
        silence(3.0, noise=2e-3),
        # A click from the microphone button and nothing else.
        np.concatenate([silence(1.0), np.full(40, 0.8, np.float32), silence(1.0)]),
    ],
    ids=["digital-silence", "room-noise", "click"],
)
def test_prepare_rejects_recordings_with_nothing_said(audio):
    with pytest.raises(AudioRejected) as caught:
        prepare(audio)

    assert caught.value.reason == "silent"
    assert "couldn't hear anything" in str(caught.value)


def test_prepare_rejects_empty_and_overlong_speech():
    with pytest.raises(AudioRejected) as caught:
        prepare(np.zeros(0, np.float32))
    assert caught.value.reason == "empty"

    with pytest.raises(AudioRejected) as caught:
        prepare(tone(3.0), max_seconds=2.0)
    assert caught.value.reason == "too_long"
    assert "2 seconds" in str(caught.value)


def test_prepare_returns_the_trimmed_speech():
    audio = np.concatenate([silence(2.0), tone(1.0), silence(2.0)])
    audio[5] = np.nan  # a glitch must not poison the model input

    ready = prepare(audio, max_seconds=2.0)  # the pauses don't count towards the limit

    assert ready.dtype == np.float32
    assert 1.0 <= ready.size / STT_RATE <= 1.5
    assert np.all(np.isfinite(ready))


def test_audio_rejected_survives_pickling():
    exc = pickle.loads(pickle.dumps(AudioRejected("Too long.", "too_long")))

    assert (str(exc), exc.reason) == ("Too long.", "too_long")


def test_to_wav_round_trip():
    samples = tone(0.25, 22050)

    data = to_wav(samples, 22050)

    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        frames = wav.readframes(wav.getnframes())
    assert frames == to_pcm16(samples)
    pcm = np.frombuffer(frames, "<i2")
    assert np.array_equal(np.frombuffer(to_wav(pcm, 22050)[44:], "<i2"), pcm)


def test_to_pcm16_clips_instead_of_wrapping():
    pcm = np.frombuffer(to_pcm16(np.array([2.0, -2.0, 0.0, 0.5], np.float32)), "<i2")

    assert pcm.tolist() == [32767, -32767, 0, 16384]


def test_read_wav_gives_mono_pcm16_at_the_file_rate():
    samples, rate = read_wav(wav_bytes(tone(0.5, 24000), 24000, channels=2))
    assert (samples.dtype, rate, samples.size) == (np.int16, 24000, 12000)

    float_wav = encoded(tone(0.5, 22050), 22050, "wav", "pcm_f32le", 22050)
    samples, rate = read_wav(float_wav)
    assert (samples.dtype, rate) == (np.int16, 22050)
    assert samples.size == pytest.approx(11025, abs=2)

    with pytest.raises(AudioRejected):
        read_wav(b"<html>502 Bad Gateway</html>")
