"""Mastodon's pagination: `max_id` (strictly older), `since_id` (newer, newest first),
`min_id` (the page just newer: read ascending, then reversed), `limit` (default 20, max 40),
and a `Link` header with rel="next" before rel="prev" whose ids are the pagination ids.

Ids are opaque strings to clients; here they are row ids, so newer is larger. Pages are read
in SQL and then passed through the privacy gate, so a page may hold fewer items than
`limit`: the Link header names the edges of what was read, never of what was shown, so the
next page continues after the hidden ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVarTuple
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select
from sqlalchemy.orm import QueryableAttribute

from fedi.api.errors import unprocessable
from fedi.api.params import Params

DEFAULT_LIMIT = 20
MAX_LIMIT = 40
MAX_ID = 2**63 - 1
Ts = TypeVarTuple("Ts")  # a Select's row, as SQLAlchemy 2.1 types it


@dataclass(frozen=True)
class PageQuery:
    max_id: int | None = None
    since_id: int | None = None
    min_id: int | None = None
    limit: int = DEFAULT_LIMIT


def _id(params: Params, name: str) -> int | None:
    raw = params.text(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) > MAX_ID:
        raise unprocessable(f"{name} is not an id", name)
    return int(raw)


def page_query(params: Params, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT
               ) -> PageQuery:
    limit = params.integer("limit", default, low=1, high=maximum) or default
    return PageQuery(_id(params, "max_id"), _id(params, "since_id"), _id(params, "min_id"),
                     limit)


def paged(query: Select[*Ts], column: ColumnElement[Any] | QueryableAttribute[Any],
          page: PageQuery, *, scan: int | None = None) -> Select[*Ts]:
    """The query narrowed to the page and ordered for it; `scan` rows are read (more than
    `limit` when the gate will drop some)."""
    if page.max_id is not None:
        query = query.where(column < page.max_id)
    if page.since_id is not None:
        query = query.where(column > page.since_id)
    if page.min_id is not None:
        query = query.where(column > page.min_id)
        return query.order_by(column.asc()).limit(scan or page.limit)
    return query.order_by(column.desc()).limit(scan or page.limit)


def newest_first(rows: Sequence[Any], page: PageQuery) -> list[Any]:
    """Rows of a `paged` query, newest first whichever way they were read."""
    return list(reversed(rows)) if page.min_id is not None else list(rows)


def link_header(base_url: str, path: str, params: Params, ids: Sequence[int]) -> str | None:
    """next → older than the oldest read; prev → newer than the newest read. `ids` are the
    pagination ids read (any order); none read, no header."""
    if not ids:
        return None
    keep = {k: v for k, v in params.values.items()
            if k not in ("max_id", "since_id", "min_id", "access_token")
            and isinstance(v, (str, int))}

    def url(**extra: int) -> str:
        return f"{base_url}{path}?{urlencode({**keep, **extra})}"

    return f'<{url(max_id=min(ids))}>; rel="next", <{url(min_id=max(ids))}>; rel="prev"'
