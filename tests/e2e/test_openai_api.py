"""The OpenAI-compatible API, driven by the ``openai`` SDK and plain HTTP against the real app."""

from __future__ import annotations

import uuid

import openai
import pytest

pytestmark = pytest.mark.e2e

QUESTION = "How many failures open the voice breaker?"
EMPTY_MESSAGE = "I didn't catch a question there. What would you like to know?"
KNOWLEDGE_BASE_DOWN = "temporarily unable to access my knowledge base"


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def nova(response) -> dict:
    """Nova's ``nova`` extension field, which the SDK keeps as an extra."""
    assert response.model_extra is not None
    return response.model_extra["nova"]


async def test_models_lists_nova(client):
    models = [model.id async for model in client.models.list()]
    assert models == ["nova"]


async def test_a_question_gets_an_answer_from_the_knowledge_base(client):
    response = await client.chat.completions.create(model="nova", messages=ask(QUESTION))

    (choice,) = response.choices
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "stop"
    assert response.model == "nova"
    assert response.usage.completion_tokens == len(choice.message.content.split())
    extension = nova(response)
    assert extension["degraded"] is False
    assert extension["from_fallback"] is False
    assert extension["fallback_source"] is None
    assert extension["notice"] is None
    assert extension["sources"]
    assert {"source", "title", "heading", "score", "text"} <= set(extension["sources"][0])
    assert extension["breakers"] == {
        "rag_api": "closed",
        "redis": "closed",
        "voice_processing": "closed",
    }


async def test_streaming_sends_the_same_answer_in_chunks(client):
    whole = await client.chat.completions.create(model="nova", messages=ask(QUESTION))

    stream = await client.chat.completions.create(model="nova", messages=ask(QUESTION), stream=True)
    chunks = [chunk async for chunk in stream]

    assert len(chunks) > 3
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.id == chunks[0].id for chunk in chunks)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == whole.choices[0].message.content
    assert [chunk.choices[0].finish_reason for chunk in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert nova(chunks[-1])["degraded"] is False
    assert nova(chunks[-1])["sources"] == nova(whole)["sources"]


async def test_the_x_session_id_header_keeps_a_conversation(client, nova_app):
    session = f"e2e-{uuid.uuid4().hex}"
    headers = {"X-Session-Id": session}

    first = await client.chat.completions.with_raw_response.create(
        model="nova", messages=ask(QUESTION), extra_headers=headers
    )
    second = await client.chat.completions.with_raw_response.create(
        model="nova", messages=ask("and the knowledge base one?"), extra_headers=headers
    )

    for raw in (first, second):
        assert raw.headers["x-session-id"] == session
        assert nova(raw.parse())["session_id"] == session
    assert nova_app.stored_questions(session) == [QUESTION, "and the knowledge base one?"]

    cleared = await client.chat.completions.create(
        model="nova", messages=ask("/session clear"), extra_headers=headers
    )
    assert "forgotten" in cleared.choices[0].message.content
    assert nova_app.stored_questions(session) == []


async def test_the_user_field_names_the_session_when_there_is_no_header(client, nova_app):
    user = f"e2e-user-{uuid.uuid4().hex}"
    response = await client.chat.completions.create(model="nova", messages=ask(QUESTION), user=user)
    assert nova(response)["session_id"] == user
    assert nova_app.stored_questions(user) == [QUESTION]

    anonymous = [
        nova(await client.chat.completions.create(model="nova", messages=ask(QUESTION)))
        for _ in range(2)
    ]
    assert anonymous[0]["session_id"] != anonymous[1]["session_id"]


async def test_the_last_user_message_is_the_question(client):
    response = await client.chat.completions.create(
        model="nova",
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "/help"},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": [{"type": "text", "text": "/health"}]},
        ],
    )
    assert response.choices[0].message.content.startswith("**System health**")


async def test_invalid_json_is_a_400_in_openais_error_format(http):
    response = await http.post(
        "/v1/chat/completions",
        content=b'{"model": "nova", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("body is not valid JSON")


@pytest.mark.parametrize(
    "body",
    [
        {"model": "nova", "messages": [{"role": "system", "content": "Be brief."}]},
        {"model": "nova", "messages": []},
        {"model": "nova"},
        {"model": "nova", "messages": [{"role": "user", "content": 42}]},
    ],
    ids=["no-user-message", "empty-messages", "no-messages", "non-text-content"],
)
async def test_a_request_without_a_question_is_a_400(http, body):
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert error["message"]


async def test_the_sdk_raises_bad_request_for_a_missing_user_message(client):
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model="nova", messages=[{"role": "system", "content": "Be brief."}]
        )
    assert raised.value.status_code == 400
    assert "no user message" in raised.value.message


@pytest.mark.parametrize("content", ["", "   \n\t"], ids=["empty", "blank"])
async def test_an_empty_question_gets_a_friendly_reply(client, content):
    response = await client.chat.completions.create(model="nova", messages=ask(content))
    assert response.choices[0].message.content == EMPTY_MESSAGE
    assert nova(response)["degraded"] is False


async def test_with_the_knowledge_service_down_answers_are_degraded(client, nova_app, rag_outage):
    fresh = await client.chat.completions.create(model="nova", messages=ask(QUESTION))
    rag_outage()

    apology = await client.chat.completions.create(
        model="nova", messages=ask("What does the redis breaker protect?")
    )
    text = apology.choices[0].message.content
    assert KNOWLEDGE_BASE_DOWN in text
    assert "automatically recovering" in text
    extension = nova(apology)
    assert extension["degraded"] is True
    assert extension["from_fallback"] is True
    assert extension["fallback_source"] == "degraded_message"
    assert extension["notice"] == "My knowledge base is temporarily unavailable."
    assert extension["sources"] == []

    saved = await client.chat.completions.create(model="nova", messages=ask(QUESTION))
    assert saved.choices[0].message.content == fresh.choices[0].message.content
    extension = nova(saved)
    assert extension["degraded"] is True
    assert extension["fallback_source"] == "answer_cache"
    assert "saved answer" in extension["notice"]
    assert extension["sources"] == nova(fresh)["sources"]

    stream = await client.chat.completions.create(
        model="nova", messages=ask("What does half-open mean?"), stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert KNOWLEDGE_BASE_DOWN in "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert nova(chunks[-1])["fallback_source"] == "degraded_message"
    # three failures in a row: the circuit is open, and says so in every reply
    assert extension["breakers"]["rag_api"] == "closed"
    assert nova(chunks[-1])["breakers"]["rag_api"] == "open"
    assert nova_app.breaker_state("rag_api") == "open"
