"""The SQLite file holds every private key: the commands that create it make it readable by
its owner only, and SQLite's -wal and -shm files follow the database file's mode."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.config.support import clean_env, fedi


@pytest.mark.parametrize("command", [["init"], ["migrate"]])
def test_a_new_sqlite_database_is_private(tmp_path: Path, command: list[str]) -> None:
    env = clean_env(FEDI_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/fedi.db",
                    FEDI_BASE_URL="http://127.0.0.1:9")
    done = fedi(tmp_path, *command, env=env)
    assert done.returncode == 0, done.stderr
    assert fedi(tmp_path, "create-user", "alice", env=env).returncode == 0
    files = sorted(tmp_path.glob("fedi.db*"))
    assert tmp_path / "fedi.db" in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
