"""Remote fetches of an inbox batch happen between its transactions, never inside one.

A batch is one transaction (fedi.federation.processor). Waiting on a remote server inside it
held SQLite's write lock for the whole fetch (a Follow from a new server asks its NodeInfo; an
unknown author's actor is fetched), up to the fetch timeout: every other write of the instance
(the inbox storing a key it fetched, a person posting) waited or failed with "database is
locked" — and a server that answers slowly on purpose could hold it at will. On PostgreSQL the
batch's locks and connection were held as long.

So while a batch runs, the resolver does not wait on the network: it raises `FetchLater` with
the fetch to make. The processor rolls back that item's savepoint, commits the items before it,
makes the fetch with no transaction open, and runs the item again in a new transaction, where
the resolver answers from what was fetched (or raises the fetch's own error again).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

Fetch = Callable[[], Awaitable[Any]]


class FetchLater(Exception):
    """The item needs `fetch` made outside the batch's transaction; not a FediError, so no
    handler takes it for a failed fetch."""

    def __init__(self, key: tuple[str, str], fetch: Fetch) -> None:
        super().__init__(f"{key[0]} {key[1]} is fetched outside the transaction")
        self.key = key
        self.fetch = fetch


class Fetched:
    """What was fetched for a batch: a result, or the FetchError the fetch raised."""

    def __init__(self) -> None:
        self._results: dict[tuple[str, str], Any] = {}

    @property
    def made(self) -> int:
        return len(self._results)

    async def make(self, later: FetchLater) -> None:
        token = _batch.set(None)  # this is the fetch itself, made now
        try:
            self._results[later.key] = await later.fetch()
        except Exception as exc:  # raised again to the item's handler, as if it had waited
            self._results[later.key] = _Failed(exc)
        finally:
            _batch.reset(token)

    def answer(self, key: tuple[str, str]) -> tuple[bool, Any]:
        if key not in self._results:
            return False, None
        found = self._results[key]
        if isinstance(found, _Failed):
            raise found.error.with_traceback(None)  # as it was raised, status and all
        return True, found


class _Failed:
    def __init__(self, error: Exception) -> None:
        self.error = error


_batch: ContextVar[Fetched | None] = ContextVar("fetched outside the batch", default=None)


@contextlib.contextmanager
def fetching_between_transactions() -> Iterator[Fetched]:
    """While this is open (the processor's batch), `network` raises FetchLater."""
    fetched = Fetched()
    token = _batch.set(fetched)
    try:
        yield fetched
    finally:
        _batch.reset(token)


async def network(key: tuple[str, str], fetch: Fetch) -> Any:
    """`fetch()`'s result: made now outside a batch; inside one, what was fetched for it
    between its transactions, or FetchLater."""
    fetched = _batch.get()
    if fetched is None:
        return await fetch()
    known, result = fetched.answer(key)
    if known:
        return result
    raise FetchLater(key, fetch)
