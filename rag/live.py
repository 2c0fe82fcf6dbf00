"""Serving the newest index: a running service switches to a new generation by itself.

An ingest writes a new generation and swaps ``CURRENT``; the service notices within
``check_every`` seconds, loads it in a worker thread while queries keep using the old
one, then switches. A new generation that fails to load is logged and the old one stays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from rag.answer import Answerer
from rag.store import IndexStore, IndexUnavailable, LoadedIndex
from resilience import Clock

__all__ = ["LiveIndex"]

logger = logging.getLogger(__name__)


class LiveIndex:
    """Hands out the answerer for the current index generation."""

    def __init__(
        self,
        store: IndexStore,
        build: Callable[[LoadedIndex], Answerer],
        *,
        check_every: float = 2.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._store = store
        self._build = build
        self._check_every = check_every
        self._clock = clock
        index = store.load(mmap=True)
        self._answerer = build(index)
        self._generation = index.directory.name
        self._checked = clock()
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Answerer:
        """The answerer in use now, without checking for a newer index."""
        return self._answerer

    async def answerer(self) -> Answerer:
        """The answerer for the newest index, reloading first if an ingest replaced it."""
        now = self._clock()
        if now - self._checked < self._check_every or self._lock.locked():
            return self._answerer
        async with self._lock:
            self._checked = now
            try:
                newest = self._store.current_generation()
                if newest is not None and newest != self._generation:
                    index = await asyncio.to_thread(self._store.load, mmap=True)
                    self._answerer = await asyncio.to_thread(self._build, index)
                    self._generation = index.directory.name
                    logger.info("switched to index %s", index.directory)
            except (IndexUnavailable, OSError) as exc:
                logger.error("kept the index in use; the new one failed to load: %s", exc)
        return self._answerer
