"""A real browser on the chat page, with every host but this machine hanging as if offline.

Chromium (Debian's, headless) loads the page from the app; a request to any other host is
held open forever, the way a firewall that drops packets holds it. Chainlit's stock page
never starts under those conditions; the offline frontend must.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Locator, Page, expect

pytestmark = pytest.mark.e2e

REPLY = '[data-step-type="assistant_message"]'
WAIT_MS = 30_000

QUESTION = "How do I talk to Nova instead of typing?"
SOURCE = "Talking to Nova: Voice Input and Spoken Replies"
DEGRADED_NOTICE = "My knowledge base is temporarily unavailable."
KNOWLEDGE_BASE_DOWN = "temporarily unable to access my knowledge base"


class ChatPage:
    """The chat page as a user drives it: type, press Enter, wait for the reply."""

    def __init__(self, page: Page, outside: list[str]) -> None:
        self.page = page
        self.outside = outside
        self.replies = page.locator(REPLY)
        self.input = page.locator("#chat-input")

    async def open(self, url: str) -> Locator:
        """Load the page; the greeting arrives once the socket is connected."""
        await self.page.goto(url)
        greeting = self.replies.first
        await expect(greeting).to_contain_text("Hi, I'm Nova", timeout=WAIT_MS)
        return greeting

    async def send(self, text: str) -> Locator:
        await self.input.fill(text)
        # Enter does nothing until the socket is connected and there is text to send.
        await self.page.locator("#chat-submit:enabled").wait_for(timeout=WAIT_MS)
        return await self._submit()

    async def command(self, name: str) -> Locator:
        """Type ``/name``: the first Enter picks it from the command menu, the second sends."""
        await self.input.press_sequentially(f"/{name}")
        await self.input.press("Enter")
        await self.page.locator(f".command-buttons-container #command-{name}").wait_for()
        return await self._submit()

    async def _submit(self) -> Locator:
        before = await self.replies.count()
        await self.input.press("Enter")
        await expect(self.replies).to_have_count(before + 1, timeout=WAIT_MS)
        await self.page.locator("#stop-button").wait_for(state="detached", timeout=WAIT_MS)
        return self.replies.last


@pytest.fixture
async def chat_page(nova_app, offline_browser):
    async with offline_browser() as (context, outside):
        yield ChatPage(await context.new_page(), outside)


async def test_a_question_is_answered_with_its_sources(nova_app, chat_page, screenshot):
    greeting = await chat_page.open(nova_app.url)
    await expect(greeting).to_contain_text("Type /help for commands")
    await screenshot(chat_page.page, "welcome")

    reply = await chat_page.send(QUESTION)

    await expect(reply).to_contain_text(nova_app.rag_answer(QUESTION))
    await expect(reply).to_contain_text("Sources:")
    await expect(reply.get_by_text(SOURCE, exact=True)).to_be_visible()
    await expect(reply).not_to_contain_text("temporarily")
    await screenshot(chat_page.page, "answer")
    assert chat_page.outside == []  # the page asked nothing of any other host


async def test_with_the_knowledge_service_down_the_page_says_so(
    nova_app, rag_outage, chat_page, screenshot
):
    await chat_page.open(nova_app.url)
    expected = nova_app.rag_answer(QUESTION)
    answer = await chat_page.send(QUESTION)
    await expect(answer).to_contain_text(expected)
    rag_outage()

    saved = await chat_page.send(QUESTION)
    await expect(saved.locator("blockquote")).to_contain_text(
        "My knowledge base is temporarily unavailable, so this is a saved answer from earlier."
    )
    await expect(saved).to_contain_text(expected)
    await expect(saved.get_by_text(SOURCE, exact=True)).to_be_visible()

    for question in ("What does the redis breaker protect?", "What does half-open mean?"):
        apology = await chat_page.send(question)
        await expect(apology.locator("blockquote")).to_have_text(f"⚠️ {DEGRADED_NOTICE}")
        await expect(apology).to_contain_text(KNOWLEDGE_BASE_DOWN)
        await expect(apology).not_to_contain_text("Sources:")
    await screenshot(chat_page.page, "degraded")

    health = await chat_page.command("health")
    row = health.locator("tr", has_text="rag_api")
    await expect(row.locator("td").nth(2)).to_contain_text("open")
    await expect(row.locator("td").nth(3)).to_have_text("3")
    await expect(health.locator("tr", has_text="redis").locator("td").nth(2)).to_contain_text(
        "closed"
    )
    await screenshot(chat_page.page, "health")
    assert nova_app.breaker_state("rag_api") == "open"
