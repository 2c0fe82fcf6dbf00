"""Chainlit handlers for Nova: turn UI events into ``Assistant`` calls and render replies.

No business logic lives here. The breakers, the health port and the assistant belong to
``assistant.runtime``, a module outside this file's reload scope, so ``chainlit run -w``
reloading this file neither binds the health port twice nor splits breaker state.
"""

from __future__ import annotations

import chainlit as cl

from assistant.commands import COMMANDS
from assistant.reply import Reply
from assistant.runtime import get_runtime

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
            {"id": name, "icon": ICONS.get(name, "terminal"), "description": text}
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


async def render(reply: Reply) -> None:
    """Show a reply: a visible notice when degraded, the streamed text, sources beside it."""
    out = cl.Message(content="")
    if reply.notice:
        await out.stream_token(f"> ⚠️ {reply.notice}\n\n")
    for token in reply.tokens():
        await out.stream_token(token)
    out.elements = [
        cl.Text(
            name=f"{n}. {source.title or source.source}",
            content=f"**{source.heading}**\n\n{source.text}\n\n`{source.source}`",
            display="side",
        )
        for n, source in enumerate(reply.sources, start=1)
    ]
    if reply.sources:
        names = ", ".join(f"{n}. {s.title or s.source}" for n, s in enumerate(reply.sources, 1))
        await out.stream_token(f"\n\nSources: {names}")
    await out.send()
