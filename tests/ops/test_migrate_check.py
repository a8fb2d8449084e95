"""`fedi migrate --check`: exit 0 at head, 1 with "run `fedi migrate`" when behind, and it
never migrates (nor creates a database)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fedi.store.migrate import head_revision
from tests.ops.support import assert_clean, fedi
from tests.support.databases import using_postgres

BASE = "http://fedi.test"


def _file_of(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


async def _version(url: str, set_to: str | None = None) -> str:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            if set_to is not None:
                await conn.execute(text("UPDATE alembic_version SET version_num = :v"),
                                   {"v": set_to})
            return str((await conn.execute(text("SELECT version_num FROM alembic_version")))
                       .scalar_one())
    finally:
        await engine.dispose()


async def test_migrate_check_says_whether_a_migration_is_due(
    database_url: str, tmp_path: Path
) -> None:
    def check():  # type: ignore[no-untyped-def]
        result = fedi(tmp_path, BASE, database_url, "migrate", "--check")
        assert_clean(result)
        return result

    if not using_postgres():  # no file yet: due, and still no file
        fresh = check()
        assert fresh.returncode == 1 and "run `fedi migrate`" in fresh.stdout
        assert not _file_of(database_url).exists()
    else:  # an empty database: due
        empty = check()
        assert empty.returncode == 1 and "run `fedi migrate`" in empty.stdout

    assert fedi(tmp_path, BASE, database_url, "migrate").returncode == 0
    at_head = check()
    assert at_head.returncode == 0 and head_revision() in at_head.stdout
    assert "no migration is due" in at_head.stdout

    await _version(database_url, set_to="0001")
    behind = check()
    assert behind.returncode == 1
    assert "revision 0001" in behind.stdout and "run `fedi migrate`" in behind.stdout
    assert await _version(database_url) == "0001"  # --check changed nothing

    await _version(database_url, set_to="9999")
    newer = check()
    assert newer.returncode == 2 and newer.stderr.count("\n") == 1
    assert "a newer fedi migrated it" in newer.stderr
