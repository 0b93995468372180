"""One envelope and one pagination scheme for every list the API returns.

`?limit=&offset=` in; `{items, total, limit, offset}` out, `total` counting every match whatever the page, so a
client knows when it has them all (`offset + len(items) >= total`). Each list keeps its own order and filters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
MAX_LIMIT = 1000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Items skipped before this page")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="Items matching the filters, on every page")
    limit: int
    offset: int


async def rows_page(session: AsyncSession, query: Select[Any], *, limit: int, offset: int) -> tuple[list[Any], int]:
    """One page of an ordered query's rows (first column), and how many rows the query matches in all."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = list((await session.scalars(query.limit(limit).offset(offset))).all())
    return rows, int(total or 0)


def page_of(items: Sequence[T], *, limit: int, offset: int) -> Page[T]:
    """A page of a list already in memory (a handful of jobs, a worker's labs)."""
    return Page[T](items=list(items[offset : offset + limit]), total=len(items), limit=limit, offset=offset)
