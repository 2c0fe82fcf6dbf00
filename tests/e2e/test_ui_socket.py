"""The chat page's socket.io protocol, spoken by a script the way Chainlit's frontend speaks it."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import socketio

pytestmark = pytest.mark.e2e

QUESTION = "How do I talk to Nova instead of typing?"
KNOWLEDGE_BASE_DOWN = "temporarily unable to access my knowledge base"
DEGRADED_NOTICE = "My knowledge base is temporarily unavailable."


@dataclass
class Exchange:
    """What the server sent between a message and the end of the task it started."""

    events: list[tuple[str, Any]] = field(default_factory=list)

    def named(self, name: str) -> list[Any]:
        return [data for event, data in self.events if event == name]

    @property
    def replies(self) -> list[dict[str, Any]]:
        return [m for m in self.named("new_message") if m.get("type") == "assistant_message"]

    @property
    def text(self) -> str:
        """The final content of the (one) assistant message."""
        (reply,) = self.replies
        return str(reply["output"])

    def streamed(self) -> str:
        """The assistant message as assembled from ``stream_start`` and ``stream_token``."""
        (start,) = self.named("stream_start")
        text = str(start["output"])
        for token in self.named("stream_token"):
            assert token["id"] == start["id"]
            text = token["token"] if token["isSequence"] else text + token["token"]
        return text


class ChatClient:
    """One browser tab's worth of socket.io: connect, then send messages and read replies."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session_id = str(uuid.uuid4())
        self.sio = socketio.AsyncClient(reconnection=False)
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.sio.on("*", self._receive)
        self.welcome = Exchange()

    async def _receive(self, event: str, *args: Any) -> None:
        await self.inbox.put((event, args[0] if args else None))

    async def connect(self) -> Exchange:
        """Connect as the web page does; the greeting and command menu come back."""
        await self.sio.connect(
            self.url,
            socketio_path="/ws/socket.io",
            transports=["websocket"],
            auth={
                "sessionId": self.session_id,
                "clientType": "webapp",
                "userEnv": "{}",
                "chatProfile": "",
                "threadId": "",
            },
            wait_timeout=10,
        )
        await self.sio.emit("connection_successful")
        return await self._exchange()

    async def send(self, text: str, command: str | None = None) -> Exchange:
        """Send a message (optionally with a command picked from the menu) and read the reply."""
        message: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "threadId": "",
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": datetime.now(UTC).isoformat(),
            "metadata": {},
        }
        if command is not None:
            message["command"] = command
        await self.sio.emit("client_message", {"message": message, "fileReferences": None})
        return await self._exchange()

    async def _exchange(self) -> Exchange:
        """Events up to the ``task_end`` that follows an assistant message."""
        exchange = Exchange()
        async with asyncio.timeout(30):
            while True:
                event, data = await self.inbox.get()
                exchange.events.append((event, data))
                if event == "task_end" and exchange.replies:
                    return exchange

    async def close(self) -> None:
        await self.sio.disconnect()


@pytest.fixture
async def chat(nova_app):
    client = ChatClient(nova_app.url)
    client.welcome = await client.connect()
    yield client
    await client.close()


def test_the_page_is_the_offline_build_from_the_app_root(nova_app):
    page = httpx.get(nova_app.url + "/", timeout=10)
    assert page.status_code == 200
    assert "<title>Nova</title>" in page.text
    for host in ("fonts.googleapis.com", "fonts.gstatic.com", "cdn.jsdelivr.net"):
        assert host not in page.text
    build = nova_app.root / ".nova" / "chainlit-frontend"
    assets = re.findall(r'(?:src|href)="/(assets/[^"]+)"', page.text)
    assert assets
    for asset in assets:
        assert (build / asset).is_file()
        assert httpx.get(f"{nova_app.url}/{asset}", timeout=10).status_code == 200

    settings = httpx.get(f"{nova_app.url}/project/settings", timeout=10).json()
    assert settings["ui"]["name"] == "Nova"
    assert "Nova answers your questions" in settings["markdown"]
    # Chainlit wrote its files into the app root it was given, not the checkout.
    assert (nova_app.root / ".chainlit" / "translations").is_dir()


async def test_the_greeting_arrives_with_the_command_menu(chat):
    greeting = chat.welcome.text
    assert "Hi, I'm **Nova**" in greeting
    assert "How do I talk to Nova instead of typing?" in greeting
    assert "`/help`" in greeting
    (commands,) = chat.welcome.named("set_commands")
    assert [command["id"] for command in commands] == ["help", "health", "session", "voice"]
    assert all(command["description"] for command in commands)


async def test_a_question_streams_the_answer_and_its_sources(chat, nova_app):
    exchange = await chat.send(QUESTION)

    text = exchange.text
    assert text.startswith(nova_app.rag_answer(QUESTION))
    sources = text.rsplit("\n\nSources: ", 1)[1]
    assert "Talking to Nova" in sources
    assert len(exchange.named("stream_token")) > 5
    assert exchange.streamed() == text
    elements = exchange.named("element")
    assert elements
    # one side panel per document, named as in the "Sources:" line (sent concurrently)
    names = sources.split(", ")
    assert len(set(names)) == len(names)
    assert sorted(e["name"] for e in elements) == sorted(names)
    assert all(e["display"] == "side" for e in elements)
    assert "temporarily" not in text
    assert nova_app.stored_questions(chat.session_id) == [QUESTION]


async def test_the_health_command_from_the_menu_shows_every_breaker(chat):
    exchange = await chat.send("", command="health")

    text = exchange.text
    assert text.startswith("**System health**")
    assert "| knowledge base | `rag_api` | `closed` (available) | 0 | - |" in text
    assert "| conversation memory | `redis` | `closed` (available) |" in text
    assert "| voice | `voice_processing` | `closed` (available) |" in text


async def test_session_clear_forgets_the_conversation(chat, nova_app):
    await chat.send(QUESTION)
    assert nova_app.stored_questions(chat.session_id) == [QUESTION]

    cleared = await chat.send("clear", command="session")

    assert "forgotten" in cleared.text
    assert nova_app.stored_questions(chat.session_id) == []


async def test_with_the_knowledge_service_down_replies_are_degraded_not_broken(
    nova_app, rag_outage, chat
):
    fresh = await chat.send(QUESTION)
    rag_outage()

    degraded = await chat.send("What does the redis breaker protect?")
    text = degraded.text
    assert text.startswith(f"> ⚠️ {DEGRADED_NOTICE}\n\n")
    assert KNOWLEDGE_BASE_DOWN in text
    assert "automatically recovering" in text
    assert "Sources:" not in text
    assert "Traceback" not in text
    assert degraded.streamed() == text

    saved = await chat.send(QUESTION)
    assert "saved answer from earlier" in saved.text
    assert saved.text.endswith(fresh.text)
    assert nova_app.health()["circuit_breakers"]["rag_api"]["fail_count"] == 2
