"""Row ids known before the INSERT, where the database hands them out ahead (a sequence).

A group stores a remote member's new post and then, in the same item, sets what only its id
gives (its thread and context) and what the relay decides (its boost's id). Flushed at once
for the id, the post took an INSERT and then an UPDATE, and on PostgreSQL an UPDATE of an
indexed column writes every one of the table's eleven indexes again (issue 13 item 8: about a
fifth of the database's work per processed post). With the id known first, the post goes in once,
with everything, when the session next flushes. Likewise the group's outbound activity: its
delivery rows need its id, and with the id known it waits for the batch's end with them
(fedi.delivery.enqueue) instead of an INSERT … RETURNING round trip of its own.

Only in an inbox batch (its memo holds the ids taken) and only on PostgreSQL: SQLite has no
sequence, and its rowids come from the table as the INSERT runs. Ids are taken a few at a
time, doubling within a batch up to `MOST_AT_ONCE`, so a batch takes at most about twice the
ids it uses; one a rolled-back item took is a gap, as any sequence leaves.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.store.memo import memo_of

MOST_AT_ONCE = 64

_TAKE = text(
    "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"
).bindparams(bindparam("table"), bindparam("count"))


async def next_id(session: AsyncSession, table: str) -> int | None:
    """An id for a new row of `table` (its serial `id` column), or None where there is none
    to take ahead: the row then gets its id when it is inserted."""
    memo = memo_of(session)
    if memo is None or session.get_bind().dialect.name != "postgresql":
        return None
    pool, taken = memo.reserved_ids.setdefault(table, ([], 0))
    if not pool:
        count = min(MOST_AT_ONCE, max(1, taken))
        found = await session.execute(_TAKE, {"table": table, "count": count})
        pool.extend(reversed(found.scalars().all()))  # popped from the end: in order
        memo.reserved_ids[table] = (pool, taken + count)
    return pool.pop()
