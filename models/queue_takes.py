"""Remote takes on PostgreSQL, batched per process: one call for the takes that meet in flight.

A take finding no call of its category in flight makes one at once; takes arriving
while it runs wait for it and then share the next call (take_tickets, migration 0009). A quiet
hall's take goes straight through, and a rush pays one statement, one counter lock and one
commit per batch instead of per take.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

log = logging.getLogger(__name__)

# Takes per call at most: a rush's backlog goes in several calls, none holding the counter
# row for long.
MAX_BATCH = 50
_TAKE_SQL = f"CALL take_tickets({', '.join(f'${i}' for i in range(1, 12))})"


@dataclass(frozen=True, slots=True)
class Batch:
    """What the takes of one call share: the hall's category on one day, with its quota."""

    hall_id: int
    category_id: int
    day: date
    is_remote_counted: bool
    limit: int
    prefix: str
    category_code: str
    sample: int


@dataclass(frozen=True, slots=True)
class Request:
    """One citizen's take: who, the key that keeps it their only one, and when."""

    openid: str
    key: str
    at: datetime


# What one take got: its row of the call (id, seq, number, place, ahead, handling_min,
# windows, near_ahead), or None when the quota ran out before it.
Taken = dict[str, Any] | None


_Aboard = list[tuple[Request, asyncio.Future[Taken]]]


@dataclass(slots=True)
class _Flight:
    """The takes of one batch in its call now, and those waiting for the next."""

    waiting: _Aboard
    aboard: _Aboard = field(default_factory=list)


class RemoteTakes:
    """The calls in flight per batch; one per process (`remote_takes`)."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        # Per (event loop, batch): the flight making its calls.
        self._flights: dict[tuple[asyncio.AbstractEventLoop, Batch], _Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0

    async def take(self, conn: BaseDBAsyncClient, batch: Batch, request: Request) -> Taken:
        """Take a number, with the takes of this batch meeting it; raise what its call raised."""
        loop = asyncio.get_running_loop()
        taken: asyncio.Future[Taken] = loop.create_future()
        key = (loop, batch)
        flight = self._flights.get(key)
        if flight is not None:
            flight.waiting.append((request, taken))
        else:
            flight = self._flights[key] = _Flight([(request, taken)])
            task = loop.create_task(self._fly(conn, key, flight))
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._landed(key, flight, done))
        return await taken

    async def _fly(
        self,
        conn: BaseDBAsyncClient,
        key: tuple[asyncio.AbstractEventLoop, Batch],
        flight: _Flight,
    ) -> None:
        flight.aboard = self._board(flight)
        while flight.aboard:
            await self._call_for(conn, key[1], flight.aboard)
            flight.aboard = self._board(flight)
        del self._flights[key]  # at once: a take coming after it makes a new flight

    def _board(self, flight: _Flight) -> _Aboard:
        """Take the next call's takes off the waiting list, in the order they came.

        A take whose request gave up takes no number; a citizen's second take waits for the
        next call, where their first one's key refuses it alone.
        """
        aboard: _Aboard = []
        left: _Aboard = []
        keys: set[str] = set()
        for one in flight.waiting:
            if one[1].done():
                continue
            if len(aboard) < self.max_batch and one[0].key not in keys:
                aboard.append(one)
                keys.add(one[0].key)
            else:
                left.append(one)
        flight.waiting = left
        return aboard

    def _landed(
        self,
        key: tuple[asyncio.AbstractEventLoop, Batch],
        flight: _Flight,
        task: asyncio.Task[None],
    ) -> None:
        self._tasks.discard(task)
        # A flight stopped before its end (its loop closing, even before it began) must not
        # stay in the way of later takes, nor leave its own waiting.
        if self._flights.get(key) is flight:
            del self._flights[key]
        for _, taken in flight.aboard + flight.waiting:
            taken.cancel()

    async def _call_for(self, conn: BaseDBAsyncClient, batch: Batch, aboard: _Aboard) -> None:
        while aboard:
            try:
                rows = await self._call(conn, batch, [request for request, _ in aboard])
            except IntegrityError as exc:
                aboard = await self._without_holders(conn, aboard, exc)
                continue
            except Exception as exc:  # every take of the call learns what failed it
                for _, taken in aboard:
                    _settle(taken, exc)
                return
            for (_, taken), row in zip(aboard, rows, strict=True):
                _settle(taken, row)
            return

    async def _without_holders(
        self, conn: BaseDBAsyncClient, aboard: _Aboard, refused: IntegrityError
    ) -> _Aboard:
        """Refuse the takes of citizens holding a number already; return the others' call.

        The others keep their order, so the quota's last numbers still go to the first.
        """
        if len(aboard) == 1:
            _settle(aboard[0][1], refused)
            return []
        try:
            rows = await conn.execute_query_dict(
                "SELECT active_key FROM ticket WHERE active_key = ANY($1)",
                [[request.key for request, _ in aboard]],
            )
        except Exception as exc:
            for _, taken in aboard:
                _settle(taken, exc)
            return []
        held = {row["active_key"] for row in rows}
        if not held:  # let go meanwhile: the first take alone learns what holds it
            held = {aboard[0][0].key}
        log.debug("take batch refused size=%d holders=%d", len(aboard), len(held))
        for request, taken in aboard:
            if request.key in held:
                _settle(taken, refused)
        return [one for one in aboard if one[0].key not in held]

    async def _call(
        self, conn: BaseDBAsyncClient, batch: Batch, requests: list[Request]
    ) -> list[Taken]:
        self.calls += 1
        values = [
            batch.hall_id,
            batch.category_id,
            batch.day,
            int(batch.is_remote_counted),
            batch.limit,
            batch.prefix,
            [r.openid for r in requests],
            [r.key for r in requests],
            [r.at for r in requests],
            batch.sample,
            batch.category_code,
        ]
        rows = await conn.execute_query_dict(_TAKE_SQL, values)
        out = rows[0] if rows else {}
        ids = out.get("ids") or []
        columns = ("ids", "seqs", "numbers", "places", "aheads", "near_aheads")
        names = ("id", "seq", "number", "place", "ahead", "near_ahead")
        taken: list[Taken] = []
        for i in range(len(requests)):
            if i >= len(ids):
                taken.append(None)
                continue
            row = {name: out[column][i] for name, column in zip(names, columns, strict=True)}
            row.update(handling_min=out["handling_min"], windows=out["windows"])
            taken.append(row)
        return taken


def _settle(taken: asyncio.Future[Taken], outcome: Taken | BaseException) -> None:
    if taken.done():  # its request gave up waiting
        return
    if isinstance(outcome, BaseException):
        taken.set_exception(outcome)
    else:
        taken.set_result(outcome)


remote_takes = RemoteTakes()
