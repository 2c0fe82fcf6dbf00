"""Chainlit handlers for Nova: turn UI events into ``Assistant`` calls and render replies.

No business logic lives here. The breakers, the health port and the assistant belong to
``assistant.runtime``, a module outside this file's reload scope, so ``chainlit run -w``
reloading this file neither binds the health port twice nor splits breaker state.
"""

from __future__ import annotations

import chainlit as cl
import numpy as np

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
    """Greet with example questions and offer the slash commands in the menu."""
    await get_runtime()
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
    examples = "\n".join(f"- *{question}*" for question in EXAMPLES)
    await cl.Message(
        content=(
            "Hi, I'm **Nova**. Ask me about anything in my knowledge base, for example:\n"
            f"{examples}\n\nType `/help` for commands."
        )
    ).send()


@cl.on_message
async def message(incoming: cl.Message) -> None:
    """Answer one message: stream the text, then attach its sources."""
    text = incoming.content
    if incoming.command:
        text = f"/{incoming.command} {text}".strip()
    runtime = await get_runtime()
    reply = await runtime.assistant.turn(cl.context.session.id, text)
    await render(reply)


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
    """Transcribe what was said, show it as the user's message, answer and speak."""
    buffer = cl.user_session.get("audio")
    cl.user_session.set("audio", None)
    runtime = await get_runtime()
    session = cl.context.session.id
    turn = await runtime.assistant.voice_turn(
        session, bytes(buffer or b""), pcm16_rate=CHAINLIT_RATE
    )
    if turn.transcript:
        await cl.Message(content=turn.transcript, author="You", type="user_message").send()
    if turn.reply is None:
        return
    message = await render(turn.reply)
    if turn.transcript and not turn.reply.degraded:
        await speak(runtime.assistant, session, turn.reply.text, message)


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
