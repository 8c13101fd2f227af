"""A server's projections, caught up on its own loop between requests (sync.server).

A push is answered once its entries are verified and durable; the tiers' projections of
them are deferred (sync.store). They are caught up on the serving loop, where every request
is handled, so the node's one connection is never used by two threads: once no push has
come for `IDLE_SECONDS`, a few hundred entries at a time so a request does not wait long
(a step goes on to where the push it reached ended, so a push is projected in one flush:
a request may then wait for up to a chunk, PROJECT_CHUNK entries) —
and, while pushes keep coming, whatever exceeds `BACKLOG` between two requests, so the work
does not pile up for the next pull, which on SQLite catches up at once before it reads
them (a pull behind 100,000 unprojected entries held the loop for minutes: the towns'
pushes timed out). On PostgreSQL, where fronts project beside each other's pushes
(sync.pg.beside) and a pull catches up one chunk and reads no further than the
projections, nothing else holds the pushes back: a push waits while the projections are
more than `BEHIND` entries behind (`keep_pace`). Then the WAL is checkpointed, so that
work too falls in quiet time. Any failure there but a busy database is logged and tried
again later, each time later (a database refusing the role or unreachable, as a bug).
"""

from __future__ import annotations

import asyncio
import time

from sync.logs import log_line
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.batch import BATCH_ENTRIES
from sync.protocol.errors import StoreError, ZhibaoError, describe

IDLE_SECONDS = 0.5  # project deferred entries once no push has come for this long
PROJECT_STEP = 500  # entries projected between two looks at the request queue
BACKLOG = 4 * PROJECT_STEP  # unprojected entries a stream of pushes may leave waiting
BEHIND = 16 * BATCH_ENTRIES  # unprojected entries a push waits on, where nothing else holds it
PACE_WAIT_S = 10.0  # longest such a wait (then it is taken: a push is never refused for it)
STALLED_SECONDS = 0.1  # look again after a step that could project nothing (sync.pg.beside)
KEEP_UP = 2 * BATCH_ENTRIES  # most projected beyond it between two requests (two pushes' worth)
FAILURE_BACKOFF_MAX = 60.0  # longest pause of idle projection after an unexpected error

i18n.register(
    {
        "server.checkpoint_failed": (
            "checkpointing the database failed ({error}); the next quiet time tries again",
            "数据库检查点失败（{error}）；下次空闲时重试",
        ),
        "server.projection_failed": (
            "projecting received entries failed ({error}); trying again in {seconds:.0f} s",
            "处理已接收条目的投影失败（{error}）；{seconds:.0f} 秒后重试",
        ),
    }
)


class IdleProjection:
    """The catching up of one served store; `pushed` after each push, on the loop."""

    def __init__(self, store: LogStore) -> None:
        self.store = store
        self._last_push = 0.0
        self._projecting = False
        self._stopped = False
        self._failures = 0  # unexpected errors in a row
        self._behind = (0, -STALLED_SECONDS)  # (unprojected entries, when read): keep_pace

    def pushed(self) -> None:
        """A push was answered: look (soon) whether to project."""
        self._last_push = time.monotonic()
        if not self._projecting:
            self._projecting = True
            asyncio.get_running_loop().call_soon(self._step)  # it looks again

    async def keep_pace(self) -> None:
        """Before a push is taken where fronts project beside their appends (PostgreSQL,
        sync.pg.beside), so nothing holds the pushes back: while the projections are more
        than BEHIND entries behind, wait (up to PACE_WAIT_S, the loop serving meanwhile) —
        pushes must not outrun them without bound (a pull would hand out stale cases, the
        desk show stale figures, for as long as the pushes go on)."""
        if not self.store.races:
            return
        deadline = time.monotonic() + PACE_WAIT_S
        try:
            while self._unprojected() > BEHIND and time.monotonic() < deadline:
                self.pushed()  # (a step is under way, or now scheduled)
                await asyncio.sleep(STALLED_SECONDS)
        except ZhibaoError:  # the database failing: the push will say so
            pass

    def _unprojected(self) -> int:
        """`store.unprojected()`, read at most once a STALLED_SECONDS however many pushes
        wait on it (each used to read it every STALLED_SECONDS: ten waiting, a hundred
        queries a second)."""
        count, read_at = self._behind
        now = time.monotonic()
        if now - read_at >= STALLED_SECONDS:
            count = self.store.unprojected()
            self._behind = (count, now)
        return count

    def stop(self) -> None:
        """No more steps (call on the serving loop, before closing the store: a step
        already scheduled then does nothing)."""
        self._stopped = True

    def _step(self) -> None:
        """Catch the projections up, a step at a time, while no push is coming in; while
        pushes come, whatever exceeds BACKLOG (up to KEEP_UP) between two requests (steps: a
        stream of 4,000-entry pushes outran 500-entry steps: the backlog grew without end
        and the next pull, which catches up whole, held every front for minutes). Any
        failure waits and tries again: the entries are durable, only their projection is
        late, and a server must not stop projecting for good over one bad moment."""
        if self._stopped:
            self._projecting = False
            return
        loop = asyncio.get_running_loop()
        quiet = time.monotonic() - self._last_push
        store = self.store
        try:
            if quiet >= IDLE_SECONDS:
                done, remaining = store.project_some(PROJECT_STEP)
            elif (excess := store.unprojected() - BACKLOG) > 0:  # pushes must not outrun it
                done, remaining = store.project_some(min(excess, KEEP_UP))
            else:
                loop.call_later(IDLE_SECONDS - quiet, self._step)
                return
        except Exception as exc:
            if isinstance(exc, ZhibaoError) and exc.key == "store.busy":
                loop.call_later(IDLE_SECONDS, self._step)  # a clerk's command is writing
                return
            # the database failing (unreachable, refusing the role …: in its words, which
            # name no entry's data) or a bug (where, not what): say so, wait longer each
            # time, try again
            said = str(exc) if isinstance(exc, StoreError) and exc.failing else describe(exc)
            self._failures += 1
            wait = min(IDLE_SECONDS * 2**self._failures, FAILURE_BACKOFF_MAX)
            log_line("server.projection_failed", error=said, seconds=wait)
            loop.call_later(wait, self._step)
            return
        self._failures = 0
        if remaining:  # requests waiting are served first
            if not done:  # none could be: another front is projecting, or what is
                loop.call_later(STALLED_SECONDS, self._step)  # left follows appends in flight
            else:
                loop.call_soon(self._step)
            return
        self._projecting = False
        try:
            store.checkpoint()
        except ZhibaoError:  # busy: the next quiet time will do it
            pass
        except Exception as exc:
            log_line("server.checkpoint_failed", error=describe(exc))
