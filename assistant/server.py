"""The app on port 8000: the OpenAI-compatible API first, then the Chainlit UI at ``/``.

Chainlit's own FastAPI app ends in a catch-all route, so it is mounted last, inside this
app, with ``chainlit.utils.mount_chainlit``; routes registered before it take precedence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from assistant.openai_api import openai_router
from assistant.runtime import current_runtime, get_runtime, shutdown_runtime
from assistant.settings import AssistantSettings

__all__ = ["UI_APP", "create_app"]

#: The Chainlit handlers, at the repository root.
UI_APP = Path(__file__).resolve().parents[1] / "chainlit_app_voice.py"


def create_app(settings: AssistantSettings) -> FastAPI:
    """The whole app; the runtime starts with the server and stops with it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await get_runtime(settings)
        try:
            yield
        finally:
            await shutdown_runtime()

    app = FastAPI(title="Nova", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    app.include_router(openai_router(lambda: current_runtime().assistant))
    # Imported here: importing chainlit reads (and writes) the app root's .chainlit folder.
    from chainlit.utils import mount_chainlit

    mount_chainlit(app=app, target=str(UI_APP), path="/")
    return app
