"""Per-session voice choices: spoken replies on or off, and the optional wake word."""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["VoicePrefs", "VoicePrefsStore", "strip_wake_word"]

#: "Hey Nova", "hi, Nova", "okay nova" at the very start of a transcript.
_WAKE = re.compile(r"^\W*(?:hey|hi|hello|ok|okay)\W+nova\b\W*", re.IGNORECASE)


@dataclass
class VoicePrefs:
    """One session's voice settings, and whether it was already told voice is down."""

    spoken_replies: bool = True
    wake_word: bool = False
    told_unavailable: bool = False


class VoicePrefsStore:
    """Voice settings by session, for the most recent ``max_sessions`` sessions."""

    def __init__(self, max_sessions: int = 1000, *, wake_word: bool = False) -> None:
        self._prefs: OrderedDict[str, VoicePrefs] = OrderedDict()
        self._max = max_sessions
        self._wake_word = wake_word

    def get(self, session_id: str) -> VoicePrefs:
        """The session's settings (defaults for a new one)."""
        prefs = self._prefs.get(session_id)
        if prefs is None:
            prefs = self._prefs[session_id] = VoicePrefs(wake_word=self._wake_word)
            while len(self._prefs) > self._max:
                self._prefs.popitem(last=False)
        self._prefs.move_to_end(session_id)
        return prefs


def strip_wake_word(transcript: str) -> str | None:
    """The request after the wake word, or None when the transcript does not start with it."""
    match = _WAKE.match(transcript)
    return transcript[match.end() :].strip() if match else None
