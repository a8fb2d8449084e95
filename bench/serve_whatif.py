"""`fedi` with experimental changes patched in at run time, to measure a fix before making it.

    python -m bench.serve_whatif [--pool-size N] [--max-overflow M] [--store orm|core|batch]
                                 serve --no-worker ...

Nothing under fedi/ is edited: this process imports fedi, replaces a few functions, then runs
the ordinary `fedi` command line. Used by `python -m bench.inbox --whatif-...`.

- --pool-size/--max-overflow: the SQLAlchemy pool fedi.store.db.make_engine builds (fedi uses
  10 + 20 overflow; overflow connections are closed when returned, then reopened).
- --store core: Receiver._store as one SQLAlchemy Core INSERT on a pooled connection, without
  an ORM session.
- --store batch: group commit. Concurrent requests' rows are written by one multi-row INSERT
  in one transaction; each request still answers only after its row is committed.
  --flushers K lets K such transactions be in flight at once (default 1).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import sys
import time
from typing import Any, ClassVar, cast

from sqlalchemy import Table

import fedi.store.db as fedi_db
from fedi.cli import main as fedi_main
from fedi.federation.receive import InboxRequest, Receiver
from fedi.store.models import InboxItem, now

MAX_BATCH = 500


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
    if receiver._postgres:
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


class GroupCommit:
    """Rows wait while `flushers` transactions are being committed, then go in the next one
    together."""

    flushers = 1
    instances: ClassVar[list[GroupCommit]] = []

    def __init__(self, receiver: Receiver) -> None:
        self._engine = receiver._sessionmaker.kw["bind"]
        self._statement = _insert(receiver)
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self.durations: list[float] = []
        self.sizes: list[int] = []
        GroupCommit.instances.append(self)

    async def add(self, row: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if len(self._running) < self.flushers:
            task = asyncio.create_task(self._flush())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            started = time.perf_counter()
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(self._statement, [row for row, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
            self.durations.append(time.perf_counter() - started)
            self.sizes.append(len(batch))

    def summary(self) -> str:
        if not self.durations:
            return "no transactions"
        ordered = sorted(self.durations)
        mid, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
        return (f"{len(self.sizes)} transactions, {sum(self.sizes) / len(self.sizes):.1f} rows "
                f"each on average, transaction time p50 {mid * 1000:.1f} ms, "
                f"p99 {p99 * 1000:.1f} ms")


def _report_group_commit() -> None:
    for batcher in GroupCommit.instances:
        print(f"serve_whatif: group commit: {batcher.summary()}", flush=True)


def patch_store_batch() -> None:
    async def _store(self: Receiver, activity: Any, request: InboxRequest) -> None:
        batcher = vars(self).get("_whatif_batcher")
        if batcher is None:
            batcher = vars(self).setdefault("_whatif_batcher", GroupCommit(self))
        await batcher.add(_row(activity, request))
        if self._on_stored is not None:
            self._on_stored()

    Receiver._store = _store  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_whatif", add_help=True)
    parser.add_argument("--pool-size", type=int, default=None)
    parser.add_argument("--max-overflow", type=int, default=None)
    parser.add_argument("--store", choices=("orm", "core", "batch"), default="orm")
    parser.add_argument("--flushers", type=int, default=1,
                        help="with --store batch: transactions in flight at once")
    args, rest = parser.parse_known_args()
    patch_pool(args.pool_size, args.max_overflow)
    if args.store == "core":
        patch_store_core()
    elif args.store == "batch":
        GroupCommit.flushers = max(1, args.flushers)
        patch_store_batch()
        atexit.register(_report_group_commit)
    print(f"serve_whatif: pool_size={args.pool_size} max_overflow={args.max_overflow} "
          f"store={args.store} flushers={args.flushers}", flush=True)
    sys.exit(fedi_main(rest))


if __name__ == "__main__":
    main()
