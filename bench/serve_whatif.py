"""`fedi` with experimental changes patched in at run time, to measure a fix before making it.

    python -m bench.serve_whatif [--pool-size N] [--max-overflow M] [--store orm|core]
                                 serve --no-worker ...

Nothing under fedi/ is edited: this process imports fedi, replaces a few functions, then runs
the ordinary `fedi` command line. Used by `python -m bench.inbox --whatif-...`.

- --pool-size/--max-overflow: the SQLAlchemy pool fedi.store.db.make_engine builds (fedi uses
  10 + 20 overflow; overflow connections are closed when returned, then reopened).
- --store core: Receiver._store as one Core INSERT and one commit per request, without the
  group commit fedi does (fedi.federation.inbox_store): what grouping saves.
  (The former `--store batch` what-if is that group commit, now part of fedi.)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, cast

from sqlalchemy import Table

import fedi.store.db as fedi_db
from fedi.cli import main as fedi_main
from fedi.federation.receive import InboxRequest, Receiver
from fedi.store.models import InboxItem, now


def patch_pool(pool_size: int | None, max_overflow: int | None) -> None:
    original = vars(fedi_db)["create_async_engine"]

    def create(url: str, **kwargs: Any) -> Any:
        if not url.startswith("sqlite"):
            if pool_size is not None:
                kwargs["pool_size"] = pool_size
            if max_overflow is not None:
                kwargs["max_overflow"] = max_overflow
        return original(url, **kwargs)

    vars(fedi_db)["create_async_engine"] = create  # the name make_engine calls


def _row(activity: Any, request: InboxRequest) -> dict[str, Any]:
    return {
        "activity_uri": activity.id, "actor_uri": activity.actor, "recipient": request.recipient,
        "body": json.dumps(activity.document), "state": "new", "attempts": 0,
        "claimed_until": 0.0, "received_at": now(), "error": None, "processed_at": None,
    }


def _insert(receiver: Receiver) -> Any:
    if receiver._sessionmaker.kw["bind"].dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    table = cast(Table, InboxItem.__table__)
    return insert(table).on_conflict_do_nothing(index_elements=["activity_uri"])


def patch_store_core() -> None:
    async def _store(self: Receiver, activity: Any, request: InboxRequest) -> None:
        statement = vars(self).setdefault("_whatif_insert", _insert(self))
        async with self._sessionmaker.kw["bind"].begin() as conn:
            await conn.execute(statement, _row(activity, request))
        if self._on_stored is not None:
            self._on_stored()

    Receiver._store = _store  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_whatif", add_help=True)
    parser.add_argument("--pool-size", type=int, default=None)
    parser.add_argument("--max-overflow", type=int, default=None)
    parser.add_argument("--store", choices=("orm", "core"), default="orm",
                        help="orm: fedi as it is (group commit)")
    args, rest = parser.parse_known_args()
    patch_pool(args.pool_size, args.max_overflow)
    if args.store == "core":
        patch_store_core()
    print(f"serve_whatif: pool_size={args.pool_size} max_overflow={args.max_overflow} "
          f"store={args.store}", flush=True)
    sys.exit(fedi_main(rest))


if __name__ == "__main__":
    main()
