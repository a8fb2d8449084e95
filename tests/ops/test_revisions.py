"""fedi.store.revisions reads the migration files without Alembic; its answers must be
Alembic's own, and the long-running processes must not load Alembic to check the schema
(issue 13 item 9: each process's memory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from fedi.store.migrate import alembic_config
from fedi.store.revisions import VERSIONS, RevisionsError, revisions


def test_the_files_read_alone_give_alembics_head_and_revisions() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    ours = revisions()
    assert ours.head == scripts.get_current_head()
    assert ours.known == {script.revision for script in scripts.walk_revisions()}
    assert len(ours.known) == len(list(VERSIONS.glob("*.py")))


def migration(revision: str, down: str | None) -> str:
    parent = "None" if down is None else f'"{down}"'
    return (f'"""a migration"""\nrevision: str = "{revision}"\n'
            f"down_revision: str | None = {parent}\n\ndef upgrade() -> None:\n    pass\n")


def write(directory: Path, *revisions_and_parents: tuple[str, str | None]) -> Path:
    directory.mkdir()
    for revision, down in revisions_and_parents:
        (directory / f"{revision}.py").write_text(migration(revision, down))
    return directory


def test_two_heads_or_a_file_without_its_revision_is_an_error(tmp_path: Path) -> None:
    assert revisions(write(tmp_path / "line", ("a", None), ("b", "a"))).head == "b"
    fork = write(tmp_path / "fork", ("a", None), ("b", "a"), ("c", "a"))
    with pytest.raises(RevisionsError, match="more than one head"):
        revisions(fork)
    broken = write(tmp_path / "broken")
    (broken / "x.py").write_text('"""no revision here"""\n')
    with pytest.raises(RevisionsError, match=r"x\.py"):
        revisions(broken)


def test_starting_on_a_database_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    """What `fedi serve` does as it starts (migrate) and what `fedi worker` checks
    (schema_state), on a database at head, in a fresh interpreter."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'fedi.db'}"
    script = f"""
import asyncio, sys
from fedi.config import Settings
from fedi.store.db import make_engine
from fedi.store.migrate import migrate
from fedi.store.schema import schema_state

async def main(first: bool) -> None:
    engine = make_engine(Settings(base_url="https://fedi.example", database_url={database!r}))
    before, after = await migrate(engine)
    state = await schema_state(engine)
    await engine.dispose()
    assert state.at_head and after == state.head, (before, after, state)
    print("alembic" in sys.modules)

asyncio.run(main(sys.argv[1] == "first"))
"""
    first = subprocess.run([sys.executable, "-c", script, "first"], capture_output=True,
                           text=True, check=True)
    assert first.stdout.strip() == "True", first  # an empty database: Alembic migrates it
    again = subprocess.run([sys.executable, "-c", script, "again"], capture_output=True,
                           text=True, check=True)
    assert again.stdout.strip() == "False", again.stdout + again.stderr
