"""Slash commands: ``/help``, ``/health``, ``/session clear`` and the reserved ``/voice``.

They are handled by the assistant, not the UI, so the chat page and the API behave the
same. Replies render safely in Chainlit's Markdown: states and names sit in code spans,
since text such as ``word:word`` loses what follows the colon there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from assistant.reply import Reply
from assistant.voice.prefs import VoicePrefsStore
from resilience import BreakerRegistry, State

__all__ = ["COMMANDS", "Commands", "health_table"]

#: Command name -> one-line description, for ``/help`` and the UI's command menu.
COMMANDS = {
    "help": "What Nova can do and the commands it knows",
    "health": "Show whether the knowledge base, memory and voice are available",
    "session": "`/session clear` forgets this conversation",
    "voice": "`/voice on|off|status` for spoken replies, `/voice wake on|off` for *Hey Nova*",
}

_STATE_WORDS = {
    State.CLOSED: "available",
    State.OPEN: "unavailable, recovering",
    State.HALF_OPEN: "testing recovery",
}
_GUARDS = {
    "rag_api": "knowledge base",
    "redis": "conversation memory",
    "voice_processing": "voice",
}


def health_table(breakers: BreakerRegistry) -> str:
    """A Markdown table of every breaker's state, failures and time to the next retry."""
    lines = [
        "| dependency | breaker | state | failures | retry in |",
        "|---|---|---|---|---|",
    ]
    for name, status in breakers.statuses().items():
        retry = f"{status.retry_after_s:.0f} s" if status.state is State.OPEN else "-"
        lines.append(
            f"| {_GUARDS.get(name, name)} | `{name}` | `{status.state.value}` "
            f"({_STATE_WORDS[status.state]}) | {status.fail_count} | {retry} |"
        )
    return "\n".join(lines)


def _help() -> str:
    commands = "\n".join(f"- `/{name}`: {text}" for name, text in COMMANDS.items())
    return (
        "Ask me anything about the documents in my knowledge base, for example "
        "*How do I talk to Nova instead of typing?* or *What happens when Redis is down?*\n\n"
        f"Commands:\n{commands}"
    )


@dataclass(frozen=True, slots=True)
class Commands:
    """Runs slash commands against the app's breakers, session store and voice settings."""

    breakers: BreakerRegistry
    clear_session: Callable[[str], Awaitable[None]]
    voice_prefs: VoicePrefsStore | None = None

    async def run(self, session_id: str, text: str) -> Reply:
        """The reply to a message that starts with ``/``."""
        name, _, argument = text[1:].strip().partition(" ")
        name, argument = name.lower(), argument.strip().lower()
        if name == "help":
            return Reply(_help())
        if name == "health":
            return Reply(f"**System health**\n\n{health_table(self.breakers)}")
        if name == "session":
            if argument != "clear":
                return Reply("Use `/session clear` to forget this conversation.")
            await self.clear_session(session_id)
            return Reply("Done: I've forgotten this conversation. Let's start afresh.")
        if name == "voice":
            return self._voice(session_id, argument)
        return Reply(f"I don't know the command `/{name}`. Type `/help` to see what I know.")

    def _voice(self, session_id: str, argument: str) -> Reply:
        if self.voice_prefs is None:
            return Reply("Voice is switched off on this server (`NOVA_VOICE_ENABLED=false`).")
        prefs = self.voice_prefs.get(session_id)
        words = argument.split()
        if words in (["on"], ["off"]):
            prefs.spoken_replies = words[0] == "on"
        elif len(words) == 2 and words[0] == "wake" and words[1] in ("on", "off"):
            prefs.wake_word = words[1] == "on"
        elif words not in ([], ["status"]):
            return Reply("Use `/voice on`, `/voice off`, `/voice status` or `/voice wake on|off`.")
        status = self.breakers["voice_processing"].status()
        engines = _STATE_WORDS[status.state]
        if status.state is State.OPEN:
            engines += f", retry in {status.retry_after_s:.0f} s"
        return Reply(
            f"Spoken replies: **{'on' if prefs.spoken_replies else 'off'}**. "
            f"Wake word (*Hey Nova*): **{'on' if prefs.wake_word else 'off'}**. "
            f"Voice engines: {engines}."
        )
