"""The answer cache against a real redis-server, up, dead and hung."""

from __future__ import annotations

import time

import pytest

from assistant.answer_cache import AnswerCache, CachedAnswer, normalize_question, question_key
from resilience import Outcome, State

pytestmark = pytest.mark.integration

SOURCES = [{"source": "guide.md", "title": "Guide", "heading": "Voice", "score": 0.8, "text": "…"}]


@pytest.fixture
def make_cache(redis, redis_breaker, clock):
    def make(**options) -> AnswerCache:
        return AnswerCache(redis, redis_breaker, clock=clock, **options)

    return make


def test_one_question_however_it_is_typed():
    assert normalize_question("  What is   NOVA?? ") == "what is nova"
    assert normalize_question("¿Qué es Nova?") == "qué es nova"
    assert normalize_question("what is nova v2") == "what is nova v2"
    assert question_key("What is Nova?") == question_key("what is nova")
    assert question_key("?!  ") is None


async def test_an_answer_comes_back_from_here_and_from_redis(make_cache, redis):
    cache = make_cache(ttl_s=600)
    await cache.put("How do I talk to Nova?", "Press the microphone.", SOURCES)
    hit = await cache.get("  how do I talk to nova ")
    assert isinstance(hit, CachedAnswer)
    assert (hit.answer, hit.sources, hit.question) == (
        "Press the microphone.",
        SOURCES,
        "How do I talk to Nova?",
    )
    key = question_key("how do i talk to nova")
    assert 590 <= await redis.ttl(key) <= 600

    other = make_cache()  # another process: nothing local, the answer is in Redis
    assert len(other) == 0
    assert (await other.get("how do I talk to Nova?")) == hit
    assert len(other) == 1
    assert await other.get("something else") is None


async def test_local_copies_expire_with_the_ttl(make_cache, redis_server, clock):
    cache = make_cache(ttl_s=60)
    await cache.put("q", "a")
    redis_server.kill()
    clock.advance(59)
    assert (await cache.get("q")).answer == "a"
    clock.advance(2)
    assert await cache.get("q") is None


async def test_the_local_copy_is_bounded(make_cache, redis_server):
    cache = make_cache(max_local=3)
    redis_server.kill()
    for n in range(5):
        await cache.put(f"question {n}", f"answer {n}")
    assert len(cache) == 3
    assert await cache.get("question 1") is None
    assert (await cache.get("question 4")).answer == "answer 4"


async def test_a_dead_redis_never_fails_a_lookup(make_cache, redis_server, redis_breaker, recorder):
    cache = make_cache()
    await cache.put("known", "yes")
    redis_server.kill()
    await cache.put("learnt while down", "kept here")
    assert (await cache.get("known")).answer == "yes"
    assert (await cache.get("learnt while down")).answer == "kept here"
    fresh = make_cache()
    for _ in range(7):
        assert await fresh.get("known") is None
    assert redis_breaker.state is State.OPEN
    assert recorder.count(Outcome.REJECTED) >= 2
    assert await fresh.clear() is False


async def test_a_hung_redis_costs_one_socket_timeout_then_nothing(
    make_cache, redis_server, redis_breaker, record_property
):
    cache = make_cache()
    redis_server.pause()
    start = time.perf_counter()
    assert await cache.get("anything") is None
    took = time.perf_counter() - start
    record_property("stopped_redis_lookup_s", round(took, 3))
    assert took < 5
    redis_breaker.force_open()
    start = time.perf_counter()
    assert await cache.get("anything") is None
    assert time.perf_counter() - start < 0.1


async def test_clear_forgets_everything_here_and_in_redis(make_cache, redis):
    cache = make_cache()
    for n in range(3):
        await cache.put(f"question {n}", f"answer {n}")
    await redis.set("nova:session:s:turns-like", "untouched")
    assert await cache.clear() is True
    assert await cache.get("question 1") is None
    assert [key async for key in redis.scan_iter(match="nova:answer:*")] == []
    assert await redis.get("nova:session:s:turns-like") == "untouched"


async def test_a_clear_redis_missed_happens_before_redis_is_read_again(
    make_cache, redis, redis_server, redis_breaker, clock
):
    cache = make_cache()
    await cache.put("stale", "from the old knowledge base")
    redis_server.pause()
    assert await cache.clear() is False  # Redis still has the stale answer
    redis_server.resume()
    assert await redis.exists(question_key("stale")) == 1
    assert await cache.get("stale") is None  # clears Redis first, then looks
    assert await redis.exists(question_key("stale")) == 0
    await cache.put("fresh", "from the new one")
    assert (await make_cache().get("fresh")).answer == "from the new one"


async def test_a_key_of_the_wrong_type_is_a_miss(make_cache, redis, redis_breaker, recorder):
    cache = make_cache()
    await redis.lpush(question_key("odd"), "x")
    for _ in range(6):
        assert await cache.get("odd") is None
    assert redis_breaker.state is State.CLOSED
    assert recorder.count(Outcome.FAILURE) == 0
