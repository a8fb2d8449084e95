"""Each way a command can meet the wrong database, run as the CLI is run (a process, another
working directory): one line saying what to fix, exit 2, and nothing created or changed.

Only `fedi serve`, `fedi init` and `fedi migrate` create or migrate a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.support import (
    assert_one_line,
    clean_env,
    fedi,
    previous_revision,
    query,
    upgrade_to,
)
from tests.support.databases import using_postgres

BASE = "http://fedi.test"


def _touch(path: Path) -> None:
    path.touch()

# Read-only and writing commands alike, the worker too.
COMMANDS = [
    ("create-user", "alice"),
    ("post", "--as", "alice", "--group", "cats", "hello"),
    ("worker",),
    ("mod", "pending", "cats"),
    ("admin", "audit"),
    ("admin", "deliveries"),
    ("admin", "queue"),
    ("circle", "show", "--as", "alice", "friends"),
]


def test_a_command_run_elsewhere_creates_no_database(tmp_path: Path) -> None:
    """No FEDI_DATABASE_URL in a directory without the server's fedi.db: it says so."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in COMMANDS:
        result = fedi(elsewhere, *args, env=clean_env(FEDI_BASE_URL=BASE))
        assert_one_line(result, f"no database at {elsewhere / 'fedi.db'}: run `fedi init` "
                        "(or `fedi migrate`) first, or set FEDI_DATABASE_URL/--config to "
                        "the server's")
    assert list(elsewhere.iterdir()) == []


def test_a_missing_sqlite_path_is_not_created_nor_its_directory(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "fedi.db"
    env = clean_env(FEDI_BASE_URL=BASE, FEDI_DATABASE_URL=f"sqlite+aiosqlite:///{missing}")
    for args in COMMANDS:
        assert_one_line(fedi(tmp_path, *args, env=env), f"no database at {missing}")
    assert list(tmp_path.iterdir()) == []


async def test_only_serve_init_and_migrate_migrate(database_url: str, tmp_path: Path) -> None:
    before, head = previous_revision()
    await upgrade_to(database_url, before)
    env = clean_env(FEDI_BASE_URL=BASE, FEDI_DATABASE_URL=database_url)
    for args in COMMANDS:
        result = fedi(tmp_path, *args, env=env)
        assert_one_line(result, f"the database is at revision {before} and this fedi needs "
                        f"{head}: run `fedi migrate`")
    assert await query(database_url, "SELECT version_num FROM alembic_version") == [(before,)]
    assert await query(database_url, "SELECT uri FROM actors") == []  # no instance actor

    migrated = fedi(tmp_path, "migrate", env=env)
    assert migrated.returncode == 0 and f"revision {head} (was {before})" in migrated.stdout
    made = fedi(tmp_path, "create-user", "alice", env=env)
    assert (made.returncode, made.stdout) == (0, f"{BASE}/users/alice\n"), made.stderr


async def test_an_empty_database_asks_for_fedi_init(database_url: str, tmp_path: Path) -> None:
    if not using_postgres():  # a SQLite file that exists but holds nothing
        _touch(Path(database_url.split(":///", 1)[1]))
    env = clean_env(FEDI_BASE_URL=BASE, FEDI_DATABASE_URL=database_url)
    _, head = previous_revision()
    for args in COMMANDS:
        assert_one_line(fedi(tmp_path, *args, env=env),
                        f"the database is empty and this fedi needs {head}: run `fedi migrate`")
    assert await query(database_url, "SELECT 1") == [(1,)]
    tables = "sqlite_master" if not using_postgres() else "pg_tables WHERE schemaname='public'"
    assert await query(database_url, f"SELECT * FROM {tables}") == []


async def test_init_creates_migrates_and_says_what_next(database_url: str,
                                                        tmp_path: Path) -> None:
    config = tmp_path / "fedi.toml"
    config.write_text(f'base_url = "{BASE}"\ndatabase_url = "{database_url}"\n')
    first = fedi(tmp_path, "--config", str(config), "init")
    assert first.returncode == 0, first.stderr
    assert "is ready" in first.stdout and f"for {BASE}" in first.stdout
    assert f"fedi --config {config} serve" in first.stdout
    assert f"fedi --config {config} create-user NAME --admin" in first.stdout
    actors = await query(database_url, "SELECT uri FROM actors")
    assert len(actors) == 1  # the instance actor, with its keys
    again = fedi(tmp_path, "--config", str(config), "init")
    assert again.returncode == 0, again.stderr
    assert await query(database_url, "SELECT uri FROM actors") == actors


async def test_another_base_url_in_a_config_file_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    right = tmp_path / "fedi.toml"
    right.write_text(f'base_url = "{BASE}"\ndatabase_url = "{database_url}"\n')
    assert fedi(tmp_path, "--config", str(right), "init").returncode == 0
    assert fedi(tmp_path, "--config", str(right), "create-user", "alice").returncode == 0
    actors = await query(database_url, "SELECT uri FROM actors ORDER BY id")

    wrong = tmp_path / "other.env"
    wrong.write_text(f"FEDI_BASE_URL=https://other.example\nFEDI_DATABASE_URL={database_url}\n")
    for args in [("create-user", "bob"), ("mod", "pending", "cats"), ("worker",),
                 ("admin", "audit")]:
        result = fedi(tmp_path, "--config", str(wrong), *args)
        assert_one_line(result, f"this database belongs to the instance at {BASE}, but "
                        f"FEDI_BASE_URL is https://other.example; set FEDI_BASE_URL={BASE}")
    assert await query(database_url, "SELECT uri FROM actors ORDER BY id") == actors


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        (None, "", "the config file {path} does not exist; fix --config or FEDI_CONFIG"),
        ("fedi.toml", 'base_url = "http://fedi.test"\nworkers = 4\n',
         "{path}: workers: unknown setting"),
        ("fedi.env", "FEDI_BASE_URL=http://fedi.test\n# x\nFEDI_INBOX_HOST_RATE=fast\n",
         "{path} line 3: FEDI_INBOX_HOST_RATE='fast' is not a whole number"),
    ],
)
@pytest.mark.parametrize("how", ["--config", "FEDI_CONFIG"])
def test_a_bad_config_file_stops_every_command_in_one_line(
    tmp_path: Path, name: str | None, text: str, says: str, how: str
) -> None:
    path = tmp_path / (name or "absent.toml")
    if name:
        path.write_text(text)
    run = tmp_path / "run"
    run.mkdir()
    for args in [("serve",), ("worker",), ("init",), ("migrate",), ("create-user", "alice"),
                 ("admin", "audit")]:
        if how == "--config":
            result = fedi(run, "--config", str(path), *args)
        else:
            result = fedi(run, *args, env=clean_env(FEDI_CONFIG=str(path)))
        assert_one_line(result, says.format(path=path))
    assert list(run.iterdir()) == []
