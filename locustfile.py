"""Load test Nova's chat API with conversations as people hold them.

Each simulated user opens a session (its own ``user`` id, which Nova uses as the session),
asks 3-6 questions drawn from ``tests/data/rag_questions.jsonl`` with a few seconds of
reading and typing between them, sometimes follows up briefly ("and how do I fix it?",
which Nova reads together with the previous question), sometimes types ``/help``, and
then leaves; a new user takes its place. A reply counts as a failure if the request fails
or the body is not a chat completion; a degraded reply (an open circuit) is a success, as
it is for the user, and is counted under its own name ("... [degraded]") in the stats.

Start Nova (``make up``), then, from the repository root::

    locust -f locustfile.py --headless -u 100 -r 20 -t 2m --host http://127.0.0.1:8000
    locust -f locustfile.py --headless -u 500 -r 50 -t 5m --csv .nova/locust

100 users, each asking about every 4 s, is a comfortable load for two cores; 500 users
reach what the knowledge service can answer, and replies queue. Without ``--headless``,
Locust's web UI runs on http://127.0.0.1:8089. Point it only at a Nova you run.
"""

from __future__ import annotations

import itertools
import json
import random
import uuid
from pathlib import Path

from locust import HttpUser, between, task

QUESTIONS_FILE = Path(__file__).resolve().parent / "tests" / "data" / "rag_questions.jsonl"
QUESTIONS = [
    json.loads(line)["question"]
    for line in QUESTIONS_FILE.read_text(encoding="utf-8").splitlines()
    if line.strip()
]
FOLLOW_UPS = ("and how do I fix it?", "why is that?", "and for Redis?", "can you explain more?")
#: Chances that a turn is followed by a short follow-up, and that a conversation has a /help.
FOLLOW_UP_CHANCE = 0.3
HELP_CHANCE = 0.2
ENDPOINT = "/v1/chat/completions"


class Conversation(HttpUser):
    """One person: a session of 3-6 questions, then a new person takes the seat."""

    host = "http://127.0.0.1:8000"
    wait_time = between(2, 6)  # reading the answer, typing the next question

    def on_start(self) -> None:
        """Open a new session and plan its questions."""
        self.session = f"locust-{uuid.uuid4().hex}"
        self.plan = random.sample(QUESTIONS, random.randint(3, 6))
        self.asked = itertools.count()
        self.wants_help = random.random() < HELP_CHANCE

    @task
    def next_turn(self) -> None:
        """Ask the next question (perhaps with a follow-up or /help), or leave when done."""
        turn = next(self.asked)
        if turn == len(self.plan):
            self.on_start()  # this person is done; the next one starts a new session
            return
        if self.wants_help and turn == 1:
            self.ask("/help", "/help")
        self.ask(self.plan[turn], "question")
        if random.random() < FOLLOW_UP_CHANCE:
            self.ask(random.choice(FOLLOW_UPS), "follow-up")

    def ask(self, text: str, kind: str) -> None:
        """One chat completion; fails unless Nova answers with a non-empty message."""
        body = {
            "model": "nova",
            "user": self.session,
            "messages": [{"role": "user", "content": text}],
        }
        with self.client.post(ENDPOINT, json=body, name=kind, catch_response=True) as response:
            if response.status_code != 200:
                why = response.error or (response.text or "")[:200]
                response.failure(f"HTTP {response.status_code}: {why!r}")
                return
            try:
                reply = response.json()
                content = reply["choices"][0]["message"]["content"]
                degraded = reply["nova"]["degraded"]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                response.failure(f"not a chat completion: {exc!r}")
                return
            if not content:
                response.failure("empty reply")
                return
            response.success()
            if degraded:
                response.request_meta["name"] = f"{kind} [degraded]"
