"""A delivery's `order_key` becomes a digest of its object followed by a digest of its inbox
(was one digest of both), and the index on `deliveries.activity_id` alone goes (the unique
(activity_id, inbox_url) serves lookups by activity)

The key means what it meant (one object, one inbox), so workers of the release before this one
order rows the same way. Its new form puts an activity's rows side by side in
`ix_deliveries_order_key`: a relay to 99 servers dirtied 99 scattered pages of that index per
post, and of the activity_id index too (issue 13 item 8). Pending rows get their key in the
new form here, so what is queued keeps its order with what is queued after the upgrade.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

"""

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_activity_id", table_name="deliveries")
    _rekey(lambda about, inbox: _digest(about, 8) + _digest(inbox, 8))


def downgrade() -> None:
    _rekey(lambda about, inbox: _digest(f"{about} {inbox}", 16))
    op.create_index("ix_deliveries_activity_id", "deliveries", ["activity_id"], unique=False)


def _digest(value: str, size: int) -> str:
    return hashlib.blake2b(value.encode(), digest_size=size).hexdigest()


def _rekey(key: Callable[[str, str], str]) -> None:
    """The pending rows' `order_key` in another form, from their activity's body (rows queued
    before keys existed keep none)."""
    bind = op.get_bind()
    pending = bind.execute(sa.text(
        "SELECT d.id, d.inbox_url, o.body FROM deliveries AS d"
        " JOIN outbound_activities AS o ON o.id = d.activity_id"
        " WHERE d.state = 'pending' AND d.order_key IS NOT NULL"
    )).all()
    abouts: dict[str, str | None] = {}
    keys = []
    for row_id, inbox, body in pending:
        if body not in abouts:
            abouts[body] = _object_key(json.loads(body))
        about = abouts[body]
        keys.append({"row": row_id, "key": None if about is None else key(about, inbox)})
    if keys:
        bind.execute(sa.text("UPDATE deliveries SET order_key = :key WHERE id = :row"), keys)


# fedi.delivery.enqueue.object_key as of this revision (a migration does not import the app).
def _object_key(activity: Any) -> str | None:
    if isinstance(activity, str):
        return activity
    if not isinstance(activity, dict):
        return None
    kind, inner = activity.get("type"), activity.get("object")
    if kind in ("Create", "Update", "Delete"):
        return _id(inner) or _id(activity)
    if kind in ("Announce", "Undo") and isinstance(inner, dict) and "object" in inner:
        return _object_key(inner)
    if kind == "Undo" and isinstance(inner, str):
        return inner
    return _id(activity)


def _id(value: Any) -> str | None:
    found = value.get("id") if isinstance(value, dict) else value
    return found if isinstance(found, str) and found else None
