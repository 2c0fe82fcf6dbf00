"""Conversation sessions in Redis, with a local fallback and a journal so no turn is lost.

Redis is the shared store. Every call to it goes through the ``redis`` breaker on a
client that fails fast (short socket timeouts, no client-side retries), so a dead or hung
Redis costs a turn at most one socket timeout and, once the circuit is open, nothing.

While Redis is unreachable the conversation goes on from a bounded in-process copy of
recent turns, and every write Redis has not acknowledged waits, in order, in a journal
mirrored to an append-only file, to be replayed once Redis is back. Turns live in one
sorted set per session, scored by a per-process monotonic sequence and each carrying a
unique id, so replaying a write that had in fact reached Redis changes nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.maint_notifications import MaintNotificationsConfig

from resilience import Breaker, CircuitOpen, ConfigError, NovaError

__all__ = [
    "DEFAULT_TTL_S",
    "JournalInUse",
    "SessionStore",
    "Turn",
    "is_wrong_type",
    "redis_client",
]

logger = logging.getLogger(__name__)

DEFAULT_TTL_S = 30 * 24 * 3600
DEFAULT_KEEP_TURNS = 200
DEFAULT_LOCAL_SESSIONS = 1000
DEFAULT_JOURNAL_DIR = Path(".nova")
DEFAULT_FLUSH_INTERVAL_S = 1.0
DEFAULT_SOCKET_TIMEOUT_S = 0.5

#: Journal entries sent per Redis round trip (one breaker call) when replaying.
FLUSH_BATCH = 100

KEY_PREFIX = "nova:session:"
JOURNAL_FILE = "sessions-journal.jsonl"
LOCK_FILE = "sessions-journal.lock"


def redis_client(
    url: str = "redis://127.0.0.1:6379/0",
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_S,
    connect_timeout: float = DEFAULT_SOCKET_TIMEOUT_S,
    max_connections: int = 100,
) -> Redis:
    """A ``redis.asyncio`` client that fails fast, meant to be used behind the breaker.

    redis-py 8 retries a failed command 10 times with backoff by default, so a dead
    server takes about 3 s to report and a hung one about 8 s; here the breaker is the
    retry policy and the client makes exactly one attempt. Maintenance notifications are
    off: they can relax the socket timeout to 10 s, and while they are on the pool hands
    out connections whose server has gone away without checking them first.

    When all ``max_connections`` are busy a command waits for one to come free, within
    the breaker's per-call timeout. redis-py's default pool raises ``MaxConnectionsError``
    at once instead, a connection error the breaker counts, so a burst of more concurrent
    turns than connections would open the circuit of a healthy Redis.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        timeout=None,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        health_check_interval=0,
        max_connections=max_connections,
        decode_responses=True,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return Redis.from_pool(pool)


class JournalInUse(NovaError):
    """Another store (in this or another process) already writes to this journal."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One question and its answer. ``seq`` orders turns: microseconds since the epoch."""

    id: str
    question: str
    answer: str
    seq: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def at(self) -> float:
        """When the turn was recorded, in seconds since the epoch."""
        return self.seq / 1_000_000

    def encode(self) -> str:
        """The sorted-set member: canonical JSON, so a replay writes identical bytes."""
        body = {"id": self.id, "q": self.question, "a": self.answer, "seq": self.seq}
        if self.meta:
            body["meta"] = self.meta
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def decode(cls, raw: str | bytes) -> Turn:
        """Parse a member written by ``encode``; ``ValueError`` if it is not one."""
        try:
            body = json.loads(raw)
            return cls(
                id=str(body["id"]),
                question=str(body["q"]),
                answer=str(body["a"]),
                seq=int(body["seq"]),
                meta=dict(body.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a stored turn: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class _Write:
    """One write to replay: add a turn to a session, or clear the session.

    ``member`` is encoded once, when the turn is recorded, so every attempt and replay
    sends the very same bytes (and ZADD finds them already there).
    """

    op: Literal["add", "clear"]
    session: str
    seq: int
    turn: Turn | None = None
    member: str = ""

    def to_json(self) -> str:
        body: dict[str, Any] = {"op": self.op, "session": self.session, "seq": self.seq}
        if self.turn is not None:
            body["member"] = self.member
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> _Write:
        body = json.loads(line)
        op = body["op"]
        if op == "add":
            member = str(body["member"])
            turn = Turn.decode(member)
            return cls("add", str(body["session"]), int(body["seq"]), turn, member)
        if op == "clear":
            return cls("clear", str(body["session"]), int(body["seq"]))
        raise ValueError(f"unknown journal op {op!r}")


class _Journal:
    """Writes Redis has not acknowledged, in sequence order, mirrored to a file.

    Appends go to the end of the file and are flushed to the OS at once, so a crash of
    the process loses nothing (a power cut can still lose what the OS had not written).
    After a replay the file is rewritten with what is left. A lock file keeps a second
    store from sharing the journal and overwriting the first one's entries.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / JOURNAL_FILE
        self._lock = (directory / LOCK_FILE).open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise JournalInUse(
                f"{directory} is used by another session store; give each its own directory"
            ) from None
        self.entries: list[_Write] = self._load()
        self.per_session: Counter[str] = Counter(entry.session for entry in self.entries)
        self._file: IO[str] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def closed(self) -> bool:
        """Whether ``close`` has released the directory."""
        return self._lock.closed

    def add(self, entry: _Write) -> None:
        """Keep ``entry`` in sequence order (a failed write may be older than the tail)."""
        bisect.insort(self.entries, entry, key=lambda e: e.seq)
        self.per_session[entry.session] += 1
        try:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(entry.to_json() + "\n")
            self._file.flush()
        except OSError:
            logger.exception(
                "session journal: cannot write %s; the entry is kept in memory", self.path
            )

    def for_session(self, session: str) -> list[_Write]:
        """The pending writes of one session, oldest first."""
        if not self.per_session[session]:
            return []
        return [entry for entry in self.entries if entry.session == session]

    def drop_first(self, count: int) -> None:
        """Forget the ``count`` oldest entries once Redis has them."""
        for entry in self.entries[:count]:
            self.per_session[entry.session] -= 1
            if not self.per_session[entry.session]:
                del self.per_session[entry.session]
        del self.entries[:count]

    def rewrite(self) -> None:
        """Make the file hold exactly the pending entries (empty once all are replayed)."""
        tmp = self.path.with_suffix(".tmp")
        try:
            self._close_file()
            with tmp.open("w", encoding="utf-8") as out:
                out.writelines(entry.to_json() + "\n" for entry in self.entries)
            os.replace(tmp, self.path)
        except OSError:
            logger.exception("session journal: cannot rewrite %s", self.path)

    def close(self) -> None:
        """Close the file and release the directory for another store."""
        self._close_file()
        self._lock.close()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _load(self) -> list[_Write]:
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entries.append(_Write.from_json(line))
            except (KeyError, TypeError, ValueError):
                # A line cut short by a crash mid-write: that write never completed.
                logger.warning(
                    "session journal: skipping unreadable line %d of %s", number, self.path
                )
        entries.sort(key=lambda e: e.seq)
        if entries:
            logger.info("session journal: %d writes to replay from %s", len(entries), self.path)
        return entries


class _LocalSessions:
    """The fallback: recent turns of the most recently used sessions, in this process."""

    def __init__(self, max_sessions: int, max_turns: int) -> None:
        self._sessions: OrderedDict[str, deque[Turn]] = OrderedDict()
        self._max_sessions = max_sessions
        self._max_turns = max_turns

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session: str) -> bool:
        return session in self._sessions

    def turns(self, session: str) -> list[Turn]:
        turns = self._sessions.get(session)
        if turns is None:
            return []
        self._sessions.move_to_end(session)
        return list(turns)

    def add(self, session: str, turn: Turn) -> None:
        self._touch(session).append(turn)

    def seed(self, session: str, turns: Sequence[Turn]) -> None:
        self._touch(session).extend(turns)

    def clear(self, session: str) -> None:
        self._touch(session).clear()

    def _touch(self, session: str) -> deque[Turn]:
        turns = self._sessions.get(session)
        if turns is None:
            turns = self._sessions[session] = deque(maxlen=self._max_turns)
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session)
        return turns


class SessionStore:
    """Conversation history per session: Redis first, never blocked by Redis being down.

    Writes never fail because of Redis: the turn is kept locally and, if Redis does not
    acknowledge it, journaled and replayed later, in order. Reads come from Redis, merged
    with this process's pending writes; without Redis, from the local copy. Call
    ``start()`` to replay the journal in the background and ``stop()`` when done.
    """

    def __init__(
        self,
        redis: Redis,
        breaker: Breaker,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        keep_turns: int = DEFAULT_KEEP_TURNS,
        local_sessions: int = DEFAULT_LOCAL_SESSIONS,
        journal_dir: Path | str = DEFAULT_JOURNAL_DIR,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
    ) -> None:
        for name, count in (
            ("ttl_s", ttl_s),
            ("keep_turns", keep_turns),
            ("local_sessions", local_sessions),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {count!r}")
        if isinstance(flush_interval_s, bool) or not flush_interval_s > 0:
            raise ConfigError(f"flush_interval_s must be > 0 seconds, got {flush_interval_s!r}")
        self._redis = redis
        self._breaker = breaker
        self._ttl_s = ttl_s
        self._keep = keep_turns
        self._flush_interval_s = flush_interval_s
        self._local = _LocalSessions(local_sessions, keep_turns)
        self._journal = _Journal(Path(journal_dir))
        self._seq = max((entry.seq for entry in self._journal.entries), default=0)
        # One writer to Redis at a time, so journaled writes reach it in their order.
        self._write_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._last_ok: bool | None = None

    # -- public API ----------------------------------------------------------------------

    async def add_interaction(
        self,
        session_id: str,
        question: str,
        answer: str,
        meta: Mapping[str, Any] | None = None,
    ) -> Turn:
        """Record a turn. Never raises because Redis is down: the write waits instead."""
        _check_session(session_id)
        turn = Turn(uuid.uuid4().hex, question, answer, self._next_seq(), dict(meta or {}))
        try:
            member = turn.encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"meta must be JSON-serialisable: {exc}") from exc
        self._local.add(session_id, turn)
        await self._write(_Write("add", session_id, turn.seq, turn, member))
        return turn

    async def get_conversation_context(self, session_id: str, max_turns: int = 5) -> list[Turn]:
        """The last ``max_turns`` turns of a session, oldest first."""
        _check_session(session_id)
        if max_turns <= 0:
            return []
        try:
            remote = await self._breaker.call_async(self._read, session_id, max_turns)
            self._last_ok = True
        except Exception as exc:
            self._outage(exc, "read")
            remote = None
        if remote is None:
            turns = self._local.turns(session_id)
        else:
            turns = remote
            if session_id not in self._local:
                # So a later outage can still show what came before this process started.
                self._local.seed(session_id, remote)
        return _apply_pending(turns, self._journal.for_session(session_id))[-max_turns:]

    async def clear_session(self, session_id: str) -> None:
        """Forget a session's turns; ordered after every earlier write, like any write."""
        _check_session(session_id)
        self._local.clear(session_id)
        await self._write(_Write("clear", session_id, self._next_seq()))

    async def flush(self) -> bool:
        """Replay the journal to Redis, oldest first; true once nothing is pending.

        Each batch is one call through the breaker, so while the circuit is open this
        returns at once, and the half-open trial is a real replay. A flush already under
        way (or a write in flight) is not waited for: it is the one doing the work.
        """
        if not self._journal:
            return True
        if self._write_lock.locked():
            return False
        async with self._write_lock:
            return await self._flush_locked()

    async def stats(self) -> dict[str, Any]:
        """Counts for status pages: local sessions, pending writes, Redis health and size."""
        try:
            redis_sessions: int | None = await self._breaker.call_async(self._count_sessions)
            self._last_ok = True
        except Exception as exc:
            self._outage(exc, "count")
            redis_sessions = None
        return {
            "local_sessions": len(self._local),
            "pending_writes": len(self._journal),
            "last_redis_ok": self._last_ok,
            "redis_sessions": redis_sessions,
        }

    async def start(self) -> None:
        """Replay what a previous run left in the journal, then keep replaying in the background.

        The background task is what brings Redis up to date after an outage even when
        nobody writes: it tries every ``flush_interval_s`` while anything is pending.
        """
        if self._flusher is None:
            await self.flush()
            self._flusher = asyncio.create_task(self._flush_forever(), name="session-journal")

    async def stop(self) -> None:
        """Stop the background task, try one last replay, and release the journal.

        Whatever the last replay cannot write stays in the journal file for the next
        start. Do not use the store afterwards.
        """
        if self._journal.closed:
            return
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            await self.flush()
        finally:
            self._journal.close()

    # -- writes --------------------------------------------------------------------------

    async def _write(self, entry: _Write) -> None:
        """Send one write to Redis, or journal it; older journaled writes go first."""
        if self._write_lock.locked():
            # Someone is talking to Redis (a replay, or a write that may be hanging):
            # queue behind them instead of waiting, so no turn waits for another's timeout.
            self._journal.add(entry)
            return
        async with self._write_lock:
            written = False
            try:
                if not self._journal or await self._flush_locked():
                    await self._breaker.call_async(self._apply, [entry])
                    written = self._last_ok = True
            except Exception as exc:
                self._outage(exc, "write")
            finally:
                # Also on cancellation: the caller gave up, not Redis, and the write may or
                # may not have landed; replaying it is harmless, losing it is not.
                if not written:
                    self._journal.add(entry)

    async def _flush_locked(self) -> bool:
        """Under the write lock: replay batch after batch until empty or Redis fails."""
        replayed = 0
        touched: set[str] = set()
        try:
            while self._journal:
                batch = self._journal.entries[:FLUSH_BATCH]
                await self._breaker.call_async(self._apply, batch)
                self._journal.drop_first(len(batch))
                replayed += len(batch)
                touched.update(entry.session for entry in batch)
            await self._heal(touched)
            self._last_ok = True
        except Exception as exc:
            self._outage(exc, "replay")
        finally:
            if replayed:
                self._journal.rewrite()
                logger.info(
                    "session journal: replayed %d writes, %d pending", replayed, len(self._journal)
                )
        return not self._journal

    async def _heal(self, sessions: set[str]) -> None:
        """Write back every turn this process holds for sessions that saw an outage.

        A Redis that crashed without persistence comes back empty: the replay restores
        the writes it never took, this restores the ones it took and lost. The bytes are
        the same as the first time, so turns Redis still has are not duplicated.
        """
        writes = [
            _Write("add", session, turn.seq, turn, turn.encode())
            for session in sorted(sessions)
            for turn in self._local.turns(session)
        ]
        for start in range(0, len(writes), FLUSH_BATCH):
            await self._breaker.call_async(self._apply, writes[start : start + FLUSH_BATCH])

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)
            if self._journal:
                try:
                    await self.flush()
                except Exception:  # never let the replay task die
                    logger.exception("session journal: replay failed")

    async def _apply(self, entries: Sequence[_Write]) -> None:
        """Run ``entries`` in one MULTI/EXEC: each write's commands land together."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry in entries:
                key = _key(entry.session)
                if entry.op == "clear":
                    pipe.delete(key)
                else:
                    pipe.zadd(key, {entry.member: entry.seq})
                    pipe.zremrangebyrank(key, 0, -(self._keep + 1))
                    pipe.expire(key, self._ttl_s)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, ResponseError):
                if is_wrong_type(result):
                    # The key holds something else; no replay could ever succeed.
                    logger.error("session store: dropping a write Redis refuses: %s", result)
                    continue
                raise result

    # -- reads ---------------------------------------------------------------------------

    async def _read(self, session_id: str, max_turns: int) -> list[Turn]:
        try:
            members = await self._redis.zrange(_key(session_id), -max_turns, -1)
        except ResponseError as exc:
            if not is_wrong_type(exc):
                raise
            # One session's bad key is not Redis failing: it must not open the circuit.
            logger.error("session store: %s holds no turns: %s", _key(session_id), exc)
            return []
        turns = []
        for member in members:
            try:
                if not isinstance(member, str | bytes):
                    raise ValueError(f"unexpected member {member!r}")
                turns.append(Turn.decode(member))
            except ValueError:
                logger.warning("session store: skipping an unreadable turn in %s", session_id)
        return turns

    async def _count_sessions(self) -> int:
        count = 0
        async for _ in self._redis.scan_iter(match=f"{KEY_PREFIX}*", count=1000):
            count += 1
        return count

    # -- helpers -------------------------------------------------------------------------

    def _outage(self, exc: Exception, what: str) -> None:
        """Note that Redis failed; anything but an outage is a bug and propagates."""
        if not (isinstance(exc, CircuitOpen) or self._breaker.counts_as_failure(exc)):
            raise exc
        self._last_ok = False
        logger.debug("session store: %s without Redis: %r", what, exc)

    def _next_seq(self) -> int:
        """Microseconds since the epoch, strictly increasing within this process."""
        self._seq = max(time.time_ns() // 1000, self._seq + 1)
        return self._seq


def _apply_pending(turns: Sequence[Turn], pending: Sequence[_Write]) -> list[Turn]:
    """``turns`` as they will be once the pending writes reach Redis, oldest first."""
    by_id = {turn.id: turn for turn in turns}
    for entry in pending:
        if entry.turn is not None:
            by_id[entry.turn.id] = entry.turn
        else:
            by_id = {k: t for k, t in by_id.items() if t.seq > entry.seq}
    return sorted(by_id.values(), key=lambda turn: turn.seq)


def is_wrong_type(exc: ResponseError) -> bool:
    """Whether Redis refused a command because the key holds another type (bad data)."""
    return str(exc).startswith("WRONGTYPE")


def _key(session_id: str) -> str:
    return f"{KEY_PREFIX}{session_id}:turns"


def _check_session(session_id: str) -> None:
    if not isinstance(session_id, str) or not session_id:
        raise ValueError("session_id must be a non-empty string")
