"""The fleet as the API shows it, held in memory on every API replica: `GET /api/workers`, `/api/workers/{id}`
and `/api/workers/summary` answer from here, without a database round trip or serialising a row.

It is a relay consumer (`events.relay.Consumer`): loaded whole at start and after a reset, then kept current by
the outbox. The events of each batch the relay reads name the workers that changed (an event's `worker_id`, or
the ids a `workers.observed` lists), and those rows are read again, in the relay's session, one query per 500
of them rather than one per event; a worker no longer there is dropped. That is correct as long as no worker row
is written without an event naming it in the same transaction; then every replica shows what the table holds,
within its relay's lag (docs/adr/0005-hot-path-choices.md says what would break it)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..events.relay import HubDep
from ..storage.models import EventRow, WorkerRow
from ..web import sequence
from . import pricing
from .domain import WorkerStatus
from .events import WorkersObserved
from .schemas import FleetSummary, WorkerOut
from .service import WorkerNotFound

_COLUMNS = [WorkerRow.__table__.c[name] for name in WorkerOut.model_fields]
# Ids per re-read: far below SQLite's limit on bound parameters.
READ_BATCH = 500


@dataclass(frozen=True, slots=True)
class Entry:
    """One worker: its answer, serialised once, and what the list's order, filters and the totals need."""

    key: tuple[str, str]  # (name, id): the list's order
    aws_region: str
    status: str
    instance_type: str
    cpu_percent: float | None
    json: bytes

    @classmethod
    def of(cls, row: Any) -> Entry:
        worker = WorkerOut.model_validate(row)
        return cls(
            key=(worker.name, worker.id),
            aws_region=worker.aws_region,
            status=worker.status,
            instance_type=worker.instance_type,
            cpu_percent=worker.cpu_percent,
            json=worker.__pydantic_serializer__.to_json(worker),
        )


_KEY = attrgetter("key")


def changed_workers(events: Iterable[EventRow]) -> set[str]:
    ids: set[str] = set()
    for event in events:
        if event.worker_id is not None:
            ids.add(event.worker_id)
        elif event.type in WorkersObserved.types:
            ids.update(WorkersObserved.model_validate(event.data).worker_ids)
    return ids


class Fleet:
    def __init__(self) -> None:
        self._by_id: dict[str, Entry] = {}
        self._ordered: list[Entry] = []  # by key
        self._summary: FleetSummary | None = None  # computed on first use after a change

    async def load(self, session: AsyncSession) -> None:
        entries = [Entry.of(row) for row in (await session.execute(select(*_COLUMNS))).mappings()]
        self._ordered = sorted(entries, key=_KEY)
        self._by_id = {entry.key[1]: entry for entry in entries}
        self._summary = None

    async def apply(self, session: AsyncSession, events: Sequence[EventRow]) -> None:
        ids = sorted(changed_workers(events))
        for start in range(0, len(ids), READ_BATCH):
            batch = ids[start : start + READ_BATCH]
            query = select(*_COLUMNS).where(WorkerRow.id.in_(batch))
            found = {row["id"]: row for row in (await session.execute(query)).mappings()}
            for worker_id in batch:
                row = found.get(worker_id)
                self._put(worker_id, None if row is None else Entry.of(row))

    def _put(self, worker_id: str, entry: Entry | None) -> None:
        old = self._by_id.get(worker_id)
        self._summary = None
        if old is not None and entry is not None and old.key == entry.key:
            self._ordered[bisect.bisect_left(self._ordered, old.key, key=_KEY)] = entry
            self._by_id[worker_id] = entry
            return
        if old is not None:
            del self._ordered[bisect.bisect_left(self._ordered, old.key, key=_KEY)]
            del self._by_id[worker_id]
        if entry is not None:
            bisect.insort(self._ordered, entry, key=_KEY)
            self._by_id[worker_id] = entry

    def get(self, worker_id: str) -> bytes:
        """`WorkerOut` as JSON."""
        entry = self._by_id.get(worker_id)
        if entry is None:
            raise WorkerNotFound(f"No worker with id '{worker_id}'")
        return entry.json

    def page(self, *, region: str | None, status: str | None, limit: int, offset: int) -> bytes:
        """A `WorkerPage` as JSON: by name (then id), filtered by region and status when given."""
        matching = self._ordered
        if region or status:
            matching = [
                e for e in matching if (not region or e.aws_region == region) and (not status or e.status == status)
            ]
        items = b",".join(entry.json for entry in matching[offset : offset + limit])
        return b'{"items":[%b],"total":%d,"limit":%d,"offset":%d}' % (items, len(matching), limit, offset)

    def summary(self) -> FleetSummary:
        if self._summary is None:
            self._summary = summarise(self._ordered)
        return self._summary


def summarise(entries: Sequence[Entry]) -> FleetSummary:
    """Fleet totals for the overview: counts by status, average CPU and the estimated cost of running workers."""
    by_status: dict[str, int] = {}
    cost_by_type: dict[str, float] = {}
    unpriced: set[str] = set()
    cpus = []
    for entry in entries:
        by_status[entry.status] = by_status.get(entry.status, 0) + 1
        if entry.status != WorkerStatus.RUNNING:
            continue
        if entry.cpu_percent is not None:
            cpus.append(entry.cpu_percent)
        price = pricing.hourly(entry.instance_type)
        if price is None:
            unpriced.add(entry.instance_type)
        else:
            cost_by_type[entry.instance_type] = round(cost_by_type.get(entry.instance_type, 0.0) + price, 4)
    return FleetSummary(
        total=len(entries),
        by_status=by_status,
        running=by_status.get(WorkerStatus.RUNNING, 0),
        stopped=by_status.get(WorkerStatus.STOPPED, 0),
        failed=by_status.get(WorkerStatus.FAILED, 0),
        avg_cpu_percent=round(sum(cpus) / len(cpus), 1) if cpus else None,
        hourly_cost_usd=round(sum(cost_by_type.values()), 2),
        cost_by_type=cost_by_type,
        unpriced_types=sorted(unpriced),
    )


async def _fleet(
    request: Request,
    hub: HubDep,
    x_event_sequence: Annotated[
        str | None,
        Header(description="The `X-Event-Sequence` a write answered with: read once this replica applied it"),
    ] = None,
) -> Fleet:
    """The fleet, once this replica has applied the write the caller names (or after `READ_WAIT_SECONDS`, with
    what it has then)."""
    wanted = sequence.requested(x_event_sequence)
    if wanted is not None:
        await hub.reached(wanted, sequence.READ_WAIT_SECONDS)
    fleet: Fleet = request.app.state.fleet
    return fleet


FleetDep = Annotated[Fleet, Depends(_fleet)]
