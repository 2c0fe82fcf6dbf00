"""Slash commands and reply streaming, without any service behind them."""

from __future__ import annotations

import pytest

from assistant.commands import COMMANDS, Commands, health_table
from assistant.openai_api import ApiError, _question
from assistant.reply import Reply
from assistant.voice.prefs import VoicePrefsStore
from resilience import DEFAULT_BREAKERS, BreakerRegistry

pytestmark = pytest.mark.unit


class Boom(ConnectionError):
    pass


async def fail() -> None:
    raise Boom("down")


@pytest.fixture
def breakers(clock) -> BreakerRegistry:
    return BreakerRegistry(DEFAULT_BREAKERS, clock=clock)


@pytest.fixture
def cleared() -> list[str]:
    return []


@pytest.fixture
def commands(breakers, cleared) -> Commands:
    async def clear(session: str) -> None:
        cleared.append(session)

    return Commands(breakers, clear)


def test_tokens_rebuild_the_text_exactly():
    text = "Two  failures open it.\nThen it waits\t45 s. "
    tokens = list(Reply(text).tokens())
    assert "".join(tokens) == text
    assert tokens[:2] == ["Two  ", "failures "]
    assert len(tokens) == 9


async def test_health_shows_every_breaker_with_its_state_in_code_spans(breakers, commands):
    for _ in range(3):
        with pytest.raises(Boom):
            await breakers["rag_api"].call_async(fail)
    reply = await commands.run("s", "/health")
    assert (
        "| knowledge base | `rag_api` | `open` (unavailable, recovering) | 3 | 30 s |" in reply.text
    )
    assert "| conversation memory | `redis` | `closed` (available) | 0 | - |" in reply.text
    assert health_table(breakers).count("\n") == 4


async def test_session_clear_clears_only_with_the_word_clear(commands, cleared):
    assert "forgotten" in (await commands.run("abc", "/session clear")).text
    assert cleared == ["abc"]
    assert "/session clear" in (await commands.run("abc", "/session")).text
    assert cleared == ["abc"]


async def test_help_lists_every_command_and_unknown_ones_point_to_help(commands):
    text = (await commands.run("s", "/HELP")).text
    assert all(f"`/{name}`" in text for name in COMMANDS)
    assert "`/help`" in (await commands.run("s", "/teleport now")).text
    assert "switched off" in (await commands.run("s", "/voice on")).text


async def test_voice_commands_set_this_sessions_voice_preferences(breakers, cleared):
    prefs = VoicePrefsStore()

    async def clear(session: str) -> None:
        cleared.append(session)

    commands = Commands(breakers, clear, prefs)
    assert "Spoken replies: **off**" in (await commands.run("a", "/voice off")).text
    assert prefs.get("a").spoken_replies is False
    assert prefs.get("b").spoken_replies is True
    reply = await commands.run("a", "/voice wake on")
    assert "Wake word (*Hey Nova*): **on**" in reply.text
    assert "Voice engines: available" in reply.text
    assert "`/voice wake on|off`" in (await commands.run("a", "/voice loud")).text


@pytest.mark.parametrize(
    ("messages", "question"),
    [
        ([{"role": "user", "content": "hi"}], "hi"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "a"),
        ([{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image"}]}], "x"),
    ],
)
def test_the_question_is_the_last_user_message(messages, question):
    assert _question({"messages": messages}) == question


@pytest.mark.parametrize(
    "body",
    [{}, {"messages": []}, {"messages": [{"role": "system", "content": "x"}]}, {"messages": "hi"}],
)
def test_a_body_without_a_user_message_is_a_400(body):
    with pytest.raises(ApiError) as error:
        _question(body)
    assert error.value.status == 400
    assert error.value.response().status_code == 400
