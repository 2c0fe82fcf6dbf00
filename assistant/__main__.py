"""``python -m assistant`` (or ``nova``): serve the chat UI and API on port 8000.

The health port (8001) opens in the same process. Exit code 2 for invalid settings.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from assistant.settings import AssistantSettings
from resilience import ConfigError

logger = logging.getLogger("assistant")


def main() -> int:
    """Load settings, then serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    try:
        settings = AssistantSettings.load()
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    from assistant.server import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.ui_host,
        port=settings.ui_port,
        log_level="info",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
