"""What the stress tests share beyond the benchmarks' runner (``bench/turns.py``): the
figures they report and what Redis stored."""

from __future__ import annotations

import json

import redis

FIGURES: list[str] = []


def stored_questions(redis_url: str, sessions: list[str]) -> dict[str, list[str]]:
    """The questions Redis holds for each session, oldest first."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for session in sessions:
            pipe.zrange(f"nova:session:{session}:turns", 0, -1)
        members = pipe.execute()
    finally:
        client.close()
    return {
        session: [json.loads(member)["q"] for member in stored]
        for session, stored in zip(sessions, members, strict=True)
    }
