"""Exclusions: instances removed from the fleet, so that the next auto-import does not bring them back.

"Remove from fleet" records the instance here in the transaction that deletes the worker; imports by AMI name
(the `auto-import` job and `POST /api/workers/import` with a pattern) skip it, and importing it by id is refused
until the exclusion is lifted (`DELETE /api/exclusions/{instance_id}`, `cml-cloud-manager exclusions lift`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.guard import needs, require
from ..auth.roles import Principal, Role
from ..errors import NotFound
from ..events import outbox
from ..storage.models import ExclusionRow, WorkerRow
from ..web.deps import DatabaseDep
from ..web.paging import Limit, Offset, Page, rows_page
from .events import ExclusionCreated, ExclusionLifted
from .schemas import ExclusionOut

router = APIRouter(prefix="/api/exclusions", tags=["exclusions"], dependencies=needs(Role.VIEWER))


class ExclusionNotFound(NotFound):
    code = "exclusion_not_found"


async def exclude(session: AsyncSession, worker: WorkerRow, *, by: str) -> None:
    """Record the worker's instance as excluded (again, if it already was: the latest removal counts)."""
    if worker.aws_instance_id is None:
        return  # never got an instance: nothing an import could find
    row = await session.get(ExclusionRow, worker.aws_instance_id)
    if row is None:
        row = ExclusionRow(aws_instance_id=worker.aws_instance_id)
        session.add(row)
    row.aws_region, row.name, row.excluded_by = worker.aws_region, worker.name, by
    row.created_at = datetime.now(UTC)
    await outbox.append(session, ExclusionCreated.model_validate(row), subject=row.aws_instance_id)


async def excluded(session: AsyncSession, instance_ids: list[str]) -> set[str]:
    """Which of these instances are excluded."""
    if not instance_ids:
        return set()
    query = select(ExclusionRow.aws_instance_id).where(ExclusionRow.aws_instance_id.in_(instance_ids))
    return set((await session.scalars(query)).all())


def refusal(instance_id: str) -> str:
    return (
        f"Instance {instance_id} was removed from the fleet and is excluded from imports; lift the exclusion first "
        f"(DELETE /api/exclusions/{instance_id}, `cml-cloud-manager exclusions lift {instance_id}`, or Lift under "
        "the fleet table)"
    )


async def list_page(session: AsyncSession, *, limit: int, offset: int) -> Page[ExclusionOut]:
    query = select(ExclusionRow).order_by(ExclusionRow.created_at.desc(), ExclusionRow.aws_instance_id)
    rows, total = await rows_page(session, query, limit=limit, offset=offset)
    items = [ExclusionOut.model_validate(row) for row in rows]
    return Page[ExclusionOut](items=items, total=total, limit=limit, offset=offset)


async def lift(session: AsyncSession, instance_id: str, *, by: str) -> ExclusionOut:
    row = await session.get(ExclusionRow, instance_id)
    if row is None:
        raise ExclusionNotFound(
            f"Instance '{instance_id}' is not excluded; GET /api/exclusions (or `cml-cloud-manager exclusions list`) "
            "lists those that are"
        )
    lifted = ExclusionOut.model_validate(row)
    await session.delete(row)
    await outbox.append(session, ExclusionLifted(**lifted.model_dump(), lifted_by=by), subject=instance_id)
    return lifted


@router.get("", summary="Instances removed from the fleet, which imports leave alone; newest first")
async def list_exclusions(db: DatabaseDep, limit: Limit = 100, offset: Offset = 0) -> Page[ExclusionOut]:
    async with db.session(write=False) as session:
        return await list_page(session, limit=limit, offset=offset)


@router.delete(
    "/{instance_id}",
    summary="Lift an exclusion: the next auto-import may import the instance again",
    dependencies=needs(Role.ADMIN),
)
async def lift_exclusion(
    instance_id: str, db: DatabaseDep, caller: Annotated[Principal, Depends(require(Role.ADMIN))]
) -> ExclusionOut:
    async with db.session() as session:
        return await lift(session, instance_id, by=caller.name)
