"""Chainlit handlers for Nova: turn UI events into ``Assistant`` calls and render replies.

No business logic lives here. The breakers, the health port and the assistant belong to
``assistant.runtime``, a module outside this file's reload scope, so ``chainlit run -w``
reloading this file neither binds the health port twice nor splits breaker state.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import chainlit as cl
import numpy as np
from chainlit.input_widget import InputWidget, Switch

from assistant.commands import COMMANDS
from assistant.conversation import Assistant
from assistant.reply import Reply
from assistant.runtime import get_runtime
from assistant.voice.audio import CHAINLIT_RATE, resample_pcm16, to_wav

EXAMPLES = (
    "How do I talk to Nova instead of typing?",
    "What happens when the knowledge base is down?",
    "How do I add my own documents?",
)
ICONS = {"help": "circle-help", "health": "activity", "session": "eraser", "voice": "mic"}


@cl.on_chat_start
async def start() -> None:
    """Greet with example questions and offer the slash commands and voice settings."""
    await cl.context.emitter.set_commands(
        [
            {
                "id": name,
                "icon": ICONS.get(name, "terminal"),
                "description": text,
                "button": False,
                "persistent": False,
                "selected": False,
            }
            for name, text in COMMANDS.items()
        ]
    )
    runtime = await get_runtime()
    if runtime.assistant.voice is not None:
        prefs = runtime.assistant.voice_prefs.get(cl.context.session.id)
        switch: list[InputWidget] = [
            Switch(id="spoken_replies", label="Spoken replies", initial=prefs.spoken_replies)
        ]
        await cl.ChatSettings(switch).send()
    examples = "\n".join(f"- *{question}*" for question in EXAMPLES)
    await cl.Message(
        content=(
            "Hi, I'm **Nova**. Ask me about anything in my knowledge base, for example:\n"
            f"{examples}\n\nType `/help` for commands."
        )
    ).send()


@cl.on_message
async def message(incoming: cl.Message) -> None:
    """Answer one message (or the recordings attached to it), then attach its sources."""
    runtime = await get_runtime()
    session = cl.context.session.id
    recordings = [
        element
        for element in incoming.elements or []
        if (element.mime or "").startswith(("audio/", "video/webm")) and element.path
    ]
    for element in recordings:
        audio = await asyncio.to_thread(Path(str(element.path)).read_bytes)
        await answer_voice(runtime.assistant, session, audio, mime=element.mime)
    if recordings and not incoming.content.strip():
        return
    text = incoming.content
    if incoming.command:
        text = f"/{incoming.command} {text}".strip()
    reply = await runtime.assistant.turn(session, text)
    await render(reply)


@cl.on_settings_update
async def settings_update(settings: dict[str, object]) -> None:
    """The chat-settings switch for spoken replies."""
    runtime = await get_runtime()
    prefs = runtime.assistant.voice_prefs.get(cl.context.session.id)
    prefs.spoken_replies = bool(settings.get("spoken_replies", True))


async def render(reply: Reply) -> cl.Message:
    """Show a reply: a visible notice when degraded, the streamed text, sources beside it."""
    documents = group_sources(reply)
    out = cl.Message(
        content="",
        elements=[
            cl.Text(name=title, content=content, display="side")
            for title, content in documents.items()
        ],
    )
    if reply.notice:
        await out.stream_token(f"> ⚠️ {reply.notice}\n\n")
    for token in reply.tokens():
        await out.stream_token(token)
    if documents:
        await out.stream_token("\n\nSources: " + ", ".join(documents))
    await out.send()
    return out


def group_sources(reply: Reply) -> dict[str, str]:
    """One side panel per document, holding each of its passages under its heading."""
    grouped: dict[str, tuple[str, list[str]]] = {}
    for source in reply.sources:
        _, passages = grouped.setdefault(source.title or source.source, (source.source, []))
        passages.append(f"**{source.heading}**\n\n{source.text}")
    return {
        title: "\n\n".join(passages) + f"\n\n`{path}`"
        for title, (path, passages) in grouped.items()
    }


@cl.on_audio_start
async def audio_start() -> bool:
    """The user pressed the microphone: stop any reply still playing (barge-in), listen."""
    cl.user_session.set("audio", bytearray())
    await cl.context.emitter.send_audio_interrupt()
    return True


@cl.on_audio_chunk
async def audio_chunk(chunk: cl.InputAudioChunk) -> None:
    """Keep PCM16 chunks in order: append before anything awaits."""
    buffer = cl.user_session.get("audio")
    if isinstance(buffer, bytearray):
        buffer.extend(chunk.data)


@cl.on_audio_end
async def audio_end() -> None:
    """Answer what was said into the microphone."""
    buffer = cl.user_session.get("audio")
    cl.user_session.set("audio", None)
    runtime = await get_runtime()
    audio = bytes(buffer or b"")
    await answer_voice(runtime.assistant, cl.context.session.id, audio, pcm16_rate=CHAINLIT_RATE)


async def answer_voice(
    assistant: Assistant,
    session: str,
    audio: bytes,
    *,
    mime: str | None = None,
    pcm16_rate: int | None = None,
) -> None:
    """Transcribe, show the transcript as the user's message, answer and speak."""
    turn = await assistant.voice_turn(session, audio, mime=mime, pcm16_rate=pcm16_rate)
    if turn.transcript:
        await cl.Message(content=turn.transcript, author="You", type="user_message").send()
    if turn.reply is None:
        return
    message = await render(turn.reply)
    if turn.transcript and not turn.reply.degraded:
        await speak(assistant, session, turn.reply.text, message)


async def speak(assistant: Assistant, session: str, text: str, message: cl.Message) -> None:
    """Stream the reply's audio as each sentence is ready, then attach it to replay."""
    track = f"reply-{message.id}"
    pcm = bytearray()
    async for chunk, rate in assistant.speak(session, text):
        samples = resample_pcm16(chunk, rate, CHAINLIT_RATE)
        pcm.extend(samples)
        await cl.context.emitter.send_audio_chunk(
            cl.OutputAudioChunk(mimeType="pcm16", data=samples, track=track)
        )
    notice = assistant.voice_notice(session)
    if notice:
        await cl.Message(content=notice).send()
    if pcm:
        wav = to_wav(np.frombuffer(bytes(pcm), dtype=np.int16), CHAINLIT_RATE)
        audio = cl.Audio(name="Spoken reply", content=wav, mime="audio/wav", display="inline")
        await audio.send(for_id=message.id)
