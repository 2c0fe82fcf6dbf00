"""The session store against a real redis-server that dies, hangs and comes back."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import textwrap
import time
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from assistant.sessions import JournalInUse, SessionStore, redis_client
from resilience import Breaker, BreakerConfig, Outcome, State

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "nova:session:{}:turns"


@pytest.fixture
async def make_store(redis, redis_breaker, tmp_path):
    """Stores on the test's Redis and journal directory; all stopped after the test."""
    stores: list[SessionStore] = []

    def make(**options) -> SessionStore:
        options.setdefault("journal_dir", tmp_path / "journal")
        options.setdefault("flush_interval_s", 0.05)
        stores.append(
            SessionStore(
                options.pop("client", redis), options.pop("breaker", redis_breaker), **options
            )
        )
        return stores[-1]

    yield make
    for store in stores:
        await store.stop()


async def say(store: SessionStore, session: str, *numbers: int) -> None:
    for n in numbers:
        await store.add_interaction(session, f"question {n}", f"answer {n}", {"n": n})


def questions(turns) -> list[str]:
    return [turn.question for turn in turns]


async def stored(redis, session: str) -> list[dict]:
    """What Redis holds for a session, in score order."""
    return [json.loads(member) for member in await redis.zrange(KEY.format(session), 0, -1)]


def expected(*numbers: int) -> list[str]:
    return [f"question {n}" for n in numbers]


async def test_the_client_makes_one_attempt_and_redis_errors_count(
    redis, redis_breaker, free_port, record_property
):
    connection = redis.connection_pool.make_connection()
    assert connection.retry.get_retries() == 0
    assert connection.socket_timeout == 0.5
    assert connection.socket_connect_timeout == 0.5
    dead = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    start = time.perf_counter()
    with pytest.raises(RedisConnectionError) as refused:
        await dead.ping()
    took = time.perf_counter() - start
    await dead.aclose()
    record_property("dead_redis_fails_in_s", round(took, 4))
    assert took < 0.5
    assert redis_breaker.counts_as_failure(refused.value)
    assert redis_breaker.counts_as_failure(RedisTimeoutError("Timeout reading"))


async def test_pooled_connections_to_a_restarted_redis_are_not_used(
    make_store, redis_server, recorder
):
    """With redis-py 8's default maintenance notifications the pool would hand out the
    dead connection, and the first call after every Redis restart would fail."""
    store = make_store()
    await say(store, "s", 1)
    redis_server.restart()
    await asyncio.sleep(0.05)  # a running app's event loop sees the old connection close
    await say(store, "s", 2)
    assert recorder.count(Outcome.FAILURE) == 0
    assert (await store.stats())["pending_writes"] == 0


async def test_a_conversation_keeps_its_last_turns_in_order(make_store, redis):
    store = make_store(ttl_s=120)
    await say(store, "alice", *range(1, 8))
    await say(store, "bob", 100)
    context = await store.get_conversation_context("alice")
    assert questions(context) == expected(3, 4, 5, 6, 7)
    assert [turn.answer for turn in context] == [f"answer {n}" for n in range(3, 8)]
    assert context[-1].meta == {"n": 7}
    assert [turn.seq for turn in context] == sorted(turn.seq for turn in context)
    assert abs(context[-1].at - time.time()) < 60
    assert questions(await store.get_conversation_context("alice", max_turns=2)) == expected(6, 7)
    assert questions(await store.get_conversation_context("bob")) == expected(100)
    assert await store.get_conversation_context("nobody") == []
    assert 110 <= await redis.ttl(KEY.format("alice")) <= 120
    stats = await store.stats()
    assert stats == {
        "local_sessions": 3,
        "pending_writes": 0,
        "last_redis_ok": True,
        "redis_sessions": 2,
    }


async def test_redis_keeps_the_last_n_turns_for_30_days_by_default(make_store, redis):
    store = make_store(keep_turns=3)
    await say(store, "s", 1, 2, 3, 4, 5)
    assert [turn["q"] for turn in await stored(redis, "s")] == expected(3, 4, 5)
    assert 30 * 24 * 3600 - 10 <= await redis.ttl(KEY.format("s")) <= 30 * 24 * 3600


async def test_killing_redis_loses_nothing_and_the_journal_catches_up(
    make_store, redis, redis_server, redis_breaker, recorder, clock
):
    store = make_store()
    await say(store, "s", 1, 2, 3)
    redis_server.kill()

    await say(store, "s", 4, 5, 6, 7, 8, 9)  # every one returns normally
    context = await store.get_conversation_context("s", max_turns=20)
    assert questions(context) == expected(*range(1, 10))
    stats = await store.stats()
    assert stats["pending_writes"] == 6
    assert stats["last_redis_ok"] is False
    assert stats["redis_sessions"] is None
    assert redis_breaker.state is State.OPEN
    assert recorder.count(Outcome.FAILURE) == 5

    redis_server.start()  # empty: it never persisted, so turns 1-3 are gone from it
    assert not await store.flush()  # still open: rejected without trying
    clock.advance(15)
    assert await store.flush()  # the half-open trial replays everything
    assert redis_breaker.state is State.CLOSED
    held = await stored(redis, "s")
    # The replay brings back 4-9; the local copy restores 1-3, which Redis lost.
    assert [turn["q"] for turn in held] == expected(*range(1, 10))
    assert len({turn["id"] for turn in held}) == len(held)
    assert (await store.stats())["pending_writes"] == 0
    assert store._journal.path.read_text() == ""  # rewritten once replayed


async def test_a_replay_of_writes_that_did_land_duplicates_nothing(
    make_store, redis, redis_server, redis_breaker, recorder, clock, record_property
):
    """SIGSTOP: each call gives up after the socket timeout, but Redis still gets the
    commands and runs them on SIGCONT; the replay then finds them already there."""
    store = make_store()
    await say(store, "s", 1, 2)
    redis_server.pause()

    took = []
    for n in range(3, 8):
        start = time.perf_counter()
        await say(store, "s", n)
        took.append(time.perf_counter() - start)
    record_property("stopped_redis_write_s", [round(t, 3) for t in took])
    assert all(t < 5 for t in took)
    assert redis_breaker.state is State.OPEN
    assert recorder.count(Outcome.FAILURE) == 5

    start = time.perf_counter()
    await say(store, "s", 8)
    context = await store.get_conversation_context("s", max_turns=10)
    rejected_in = time.perf_counter() - start
    record_property("open_circuit_write_and_read_s", round(rejected_in, 5))
    assert rejected_in < 0.1
    assert recorder.count(Outcome.REJECTED) == 2
    assert questions(context) == expected(*range(1, 9))

    redis_server.resume()
    # The first write had reached Redis's socket before the timeout; it runs now.
    await eventually(lambda: stored(redis, "s"), lambda held: len(held) == 3)
    clock.advance(15)
    assert await store.flush()  # replays 3 again, among the rest
    held = await stored(redis, "s")
    assert [turn["q"] for turn in held] == expected(*range(1, 9))
    assert len({turn["id"] for turn in held}) == 8
    assert questions(await store.get_conversation_context("s", max_turns=10)) == expected(
        *range(1, 9)
    )


async def test_clear_during_an_outage_keeps_its_place(make_store, redis, redis_server, clock):
    store = make_store()
    await say(store, "s", 1, 2)
    await say(store, "other", 50)
    redis_server.kill()
    await say(store, "s", 3)
    await store.clear_session("s")
    await say(store, "s", 4, 5)
    assert questions(await store.get_conversation_context("s")) == expected(4, 5)

    redis_server.start()
    await redis.zadd(
        KEY.format("s"), {json.dumps({"id": "x", "q": "question 2", "a": "", "seq": 2}): 2}
    )
    # Redis is back with an old turn, but the pending clear still hides it from reads.
    clock.advance(15)
    assert questions(await store.get_conversation_context("s")) == expected(4, 5)
    assert await store.flush()
    assert [turn["q"] for turn in await stored(redis, "s")] == expected(4, 5)
    # Redis acknowledged "other" and then lost it in its restart (it never persists here):
    # the store cannot replay what it was told had been written.
    assert await stored(redis, "other") == []


async def test_a_new_store_replays_the_journal_left_by_the_last(
    make_store, redis, redis_server, clock, recorder
):
    store = make_store()
    await say(store, "s", 1)
    redis_server.kill()
    await say(store, "s", 2, 3)
    await store.clear_session("gone")
    await store.stop()  # the last flush fails: the journal stays on disk

    redis_server.start()
    # A restart: a new store with its own, closed breaker, on the same directory.
    breaker = Breaker(
        BreakerConfig(name="redis", fail_max=5, reset_timeout=15.0, timeout=1.0), clock=clock
    )
    await redis.set("unrelated", "kept")
    await redis.zadd(KEY.format("gone"), {"old": 1})
    again = make_store(breaker=breaker)
    assert (await again.stats())["pending_writes"] == 3
    await again.start()
    assert (await again.stats())["pending_writes"] == 0
    assert [turn["q"] for turn in await stored(redis, "s")] == expected(2, 3)
    assert await redis.exists(KEY.format("gone")) == 0
    assert await redis.get("unrelated") == "kept"


async def test_a_crashed_process_leaves_its_writes_to_the_next(
    make_store, redis, tmp_path, free_port, caplog
):
    journal = tmp_path / "journal"
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from assistant.sessions import SessionStore, redis_client
        from resilience import Breaker, BreakerConfig

        async def main():
            breaker = Breaker(BreakerConfig(name="redis", fail_max=5, reset_timeout=15, timeout=1))
            store = SessionStore(redis_client("redis://127.0.0.1:{free_port()}/0"), breaker,
                                 journal_dir={str(journal)!r})
            for n in (1, 2, 3):
                await store.add_interaction("s", f"question {{n}}", f"answer {{n}}")
            os._exit(9)  # no stop(), no cleanup: a crash

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 9, stderr.decode()
    with (journal / "sessions-journal.jsonl").open("a") as file:
        file.write('{"op": "add", "sess')  # and a line cut short mid-write

    with caplog.at_level(logging.WARNING, logger="assistant.sessions"):
        store = make_store(journal_dir=journal)
    assert "skipping unreadable line 4" in caplog.text
    assert (await store.stats())["pending_writes"] == 3
    assert questions(await store.get_conversation_context("s")) == expected(1, 2, 3)
    await store.start()
    assert [turn["q"] for turn in await stored(redis, "s")] == expected(1, 2, 3)


async def test_the_background_task_replays_once_the_circuit_half_opens(
    make_store, redis, redis_server, clock
):
    store = make_store(flush_interval_s=0.02)
    await store.start()
    redis_server.kill()
    await say(store, "s", 1, 2, 3, 4, 5, 6)
    redis_server.start()
    await asyncio.sleep(0.2)  # still open: nothing is replayed
    assert (await store.stats())["pending_writes"] == 6
    clock.advance(15)
    await eventually(store.stats, lambda stats: stats["pending_writes"] == 0)
    assert [turn["q"] for turn in await stored(redis, "s")] == expected(*range(1, 7))


async def test_a_cancelled_write_is_kept(make_store, redis, redis_server, clock):
    store = make_store()
    redis_server.pause()
    task = asyncio.create_task(store.add_interaction("s", "question 1", "answer 1"))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await store.stats())["pending_writes"] == 1
    redis_server.resume()
    assert await store.flush()
    assert [turn["q"] for turn in await stored(redis, "s")] == expected(1)


async def test_concurrent_turns_all_arrive_in_order(make_store, redis):
    store = make_store()
    await asyncio.gather(*(say(store, f"s{n % 3}", n) for n in range(60)))
    assert await store.flush()  # writes that found Redis busy were queued, not awaited
    for session in ("s0", "s1", "s2"):
        held = await stored(redis, session)
        assert [turn["q"] for turn in held] == expected(*range(int(session[1]), 60, 3))
        assert [turn["seq"] for turn in held] == sorted(turn["seq"] for turn in held)


async def test_a_key_of_the_wrong_type_is_bad_data_not_an_outage(
    make_store, redis, redis_breaker, recorder
):
    store = make_store()
    await redis.set(KEY.format("bad"), "not a sorted set")
    for n in range(6):
        await say(store, "bad", n)
        assert questions(await store.get_conversation_context("bad")) == []
    assert redis_breaker.state is State.CLOSED
    assert recorder.count(Outcome.FAILURE) == 0
    assert (await store.stats())["pending_writes"] == 0  # dropped, or they would block


async def test_one_journal_one_store(make_store, tmp_path):
    make_store()
    with pytest.raises(JournalInUse):
        make_store()


async def eventually(read, done):
    """Poll ``read`` until ``done`` accepts what it returns, for up to 5 s."""
    for _ in range(500):
        value = await read()
        if done(value):
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"still {value!r} after 5 s")
