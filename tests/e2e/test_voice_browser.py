"""Speaking to Nova through the chat page's microphone button, in a real browser.

Chromium's fake capture device plays a WAV file (espeak-ng speaking a question) as the
microphone, so the whole path runs as a user's would: the frontend's recorder (an
AudioWorklet at 24 kHz) streams PCM16 over the socket, the app transcribes it, shows the
transcript as the user's message, answers, streams the spoken reply back and attaches
it to the answer as an ``<audio>`` player. Every host but this machine hangs, as in
``test_browser.py``. The browser applies its own gain control to the microphone, so the
tests look at what was understood, never at levels.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import Page, WebSocket, expect

from assistant.voice.audio import CHAINLIT_RATE, read_wav, resample, to_wav

pytestmark = pytest.mark.e2e

WAIT_MS = 30_000
REPLY = '[data-step-type="assistant_message"]'
USER = '[data-step-type="user_message"]'

QUESTION = "How do I talk to Nova instead of typing?"
SOURCE = "Talking to Nova: Voice Input and Spoken Replies"
#: Looser than over the socket (0.25): the browser's own processing of the microphone
#: (gain control, noise suppression, resampling in an AudioWorklet that can glitch on a
#: busy two-core machine) once turned "Nova instead" into "an over-pinstant" (0.33).
MAX_WER = 0.4
#: The fake microphone file: a little quiet, the question, then quiet long enough that
#: the file (which Chromium loops) does not start over before the button is released.
MIC_RATE = 48000
LEAD_S = 0.5
TAIL_S = 3.5
#: Release the button once this much audio has gone to the server: the lead and the
#: question (about 2.7 s) and some quiet, but less than one loop of the file.
RECORD_S = 5.0


@pytest.fixture(scope="module")
def microphone(tmp_path_factory, espeak) -> Path:
    """The question as a 48 kHz mono PCM16 WAV, for ``--use-file-for-fake-audio-capture``."""
    samples, rate = read_wav(espeak(QUESTION))
    speech = resample(samples.astype(np.float32) / 32768.0, rate, MIC_RATE)
    lead = np.zeros(round(LEAD_S * MIC_RATE), dtype=np.float32)
    tail = np.zeros(round(TAIL_S * MIC_RATE), dtype=np.float32)
    audio = np.concatenate([lead, speech, tail])
    assert audio.size / MIC_RATE > RECORD_S + 0.5  # no second take in the recording
    path = tmp_path_factory.mktemp("microphone") / "question-48k.wav"
    path.write_bytes(to_wav(audio, MIC_RATE))
    return path


class SocketTap:
    """Counts the audio going each way over the page's socket.io connection.

    Chainlit sends ``audio_chunk`` events with a binary attachment: a text frame naming
    the event, then the PCM16 as one binary frame.
    """

    def __init__(self) -> None:
        self.sent_bytes = 0
        self.sent: list[bytes] = []
        self.received_frames = 0
        self.received_bytes = 0
        self.recorded_enough = asyncio.Event()

    def attach(self, socket: WebSocket) -> None:
        if "/ws/socket.io" not in socket.url:
            return
        socket.on("framesent", self._sent)
        socket.on("framereceived", self._received)

    def _sent(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            self.sent.append(payload)
            self.sent_bytes += len(payload)
            if self.sent_seconds >= RECORD_S:
                self.recorded_enough.set()

    def _received(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            self.received_frames += 1
            self.received_bytes += len(payload)

    @property
    def sent_seconds(self) -> float:
        return self.sent_bytes / 2 / CHAINLIT_RATE

    def save_recording(self, path: Path) -> Path:
        """What the page sent as the microphone, as a WAV to listen to when a test fails."""
        pcm = np.frombuffer(b"".join(self.sent), dtype="<i2")
        path.write_bytes(to_wav(pcm.astype(np.int16), CHAINLIT_RATE))
        print(f"recording: {path}")  # noqa: T201
        return path


@pytest.fixture
async def voice_page(nova_app, microphone, offline_browser):
    tap = SocketTap()
    async with offline_browser(
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    ) as (context, outside):
        await context.grant_permissions(["microphone"], origin=nova_app.url)
        page = await context.new_page()
        page.on("websocket", tap.attach)
        yield page, tap, outside


def mic_button(page: Page):
    """The composer's microphone button (it has no id): just before the Tools menu."""
    return page.locator("div:has(> .command-popover-wrapper) > div:first-child > button")


async def test_a_question_spoken_into_the_microphone_is_answered_aloud(
    nova_app, voice_page, screenshot, wer, tmp_path
):
    page, tap, outside = voice_page
    await page.goto(nova_app.url)
    await expect(page.locator(REPLY).first).to_contain_text("Hi, I'm Nova", timeout=WAIT_MS)
    await page.locator("#chat-input").fill("x")  # the send button wakes once connected
    await page.locator("#chat-submit:enabled").wait_for(timeout=WAIT_MS)
    await page.locator("#chat-input").fill("")

    button = mic_button(page)
    await button.hover()
    await expect(page.get_by_role("tooltip")).to_contain_text("Start recording")
    await button.click()
    await expect(page.get_by_text("Listening")).to_be_visible()
    await asyncio.wait_for(tap.recorded_enough.wait(), WAIT_MS / 1000)
    await screenshot(page, "voice-listening")
    await button.click()  # stop: the recording goes off to be transcribed
    await expect(page.get_by_text("Listening")).to_be_hidden()
    tap.save_recording(tmp_path / "microphone-as-sent.wav")

    said = page.locator(USER).last
    await expect(said).to_be_visible(timeout=WAIT_MS)
    transcript = (await said.inner_text()).strip()
    assert wer(QUESTION, transcript) <= MAX_WER, transcript

    reply = page.locator(REPLY).last
    await expect(reply).to_contain_text(nova_app.rag_answer(transcript), timeout=WAIT_MS)
    await expect(reply).to_contain_text("Sources:")
    await expect(reply.get_by_text(SOURCE, exact=True)).to_be_visible()
    await expect(reply).not_to_contain_text("temporarily")
    await expect(reply.get_by_text("Spoken reply")).to_be_visible(timeout=WAIT_MS)
    player = reply.locator("audio")
    await expect(player).to_have_count(1)
    await page.locator("#stop-button").wait_for(state="detached", timeout=WAIT_MS)
    await screenshot(page, "voice-answer")

    # The reply was also streamed to the page as audio while it was being made.
    assert tap.received_frames > 0
    assert tap.received_bytes / 2 / CHAINLIT_RATE > 1.0

    # The attached reply loads and plays.
    handle = await player.element_handle()
    assert handle is not None
    await page.wait_for_function(
        "el => el.readyState >= 1 && Number.isFinite(el.duration) && el.duration > 0",
        arg=handle,
        timeout=WAIT_MS,
    )
    duration = await player.evaluate("el => el.duration")
    assert duration > 1.0
    await player.evaluate("el => { el.muted = true; return el.play(); }")
    await page.wait_for_function("el => el.currentTime > 0", arg=handle, timeout=WAIT_MS)
    assert await player.evaluate("el => el.error === null")

    assert outside == []  # the page asked nothing of any other host
