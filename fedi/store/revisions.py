"""This code's migration revisions, read from the migration files without loading Alembic.

`fedi serve` and `fedi worker` only ask whether the database is at this code's head; Alembic
(with Mako and Pygments) costs each process about 7 MB of memory for that question, so the
answer comes from the files' `revision`/`down_revision` lines. Alembic is loaded only when
a migration has to run (fedi.store.migrate). tests/ops/test_revisions.py checks the answers
against Alembic's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

VERSIONS = Path(__file__).parent / "migrations" / "versions"

_ASSIGNMENT = r"^{name}\s*(?::[^=\n]*)?=\s*(?P<value>None|['\"](?P<id>[^'\"]+)['\"])"
_REVISION = re.compile(_ASSIGNMENT.format(name="revision"), re.MULTILINE)
_DOWN = re.compile(_ASSIGNMENT.format(name="down_revision"), re.MULTILINE)


@dataclass(frozen=True)
class Revisions:
    known: frozenset[str]
    head: str | None  # None: no migrations at all


class RevisionsError(Exception):
    """The migration files do not form one line of revisions (a packaging fault)."""


@cache
def revisions(directory: Path = VERSIONS) -> Revisions:
    parents: dict[str, str | None] = {}
    for path in sorted(directory.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        found, down = _REVISION.search(source), _DOWN.search(source)
        if found is None or found["id"] is None or down is None:
            raise RevisionsError(f"{path.name} has no revision/down_revision line")
        parents[found["id"]] = down["id"]
    children = {parent for parent in parents.values() if parent is not None}
    heads = [revision for revision in parents if revision not in children]
    if len(heads) > 1:
        raise RevisionsError(f"the migrations have more than one head: {sorted(heads)}")
    return Revisions(frozenset(parents), heads[0] if heads else None)
