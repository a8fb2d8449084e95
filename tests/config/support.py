"""`fedi` run as an admin runs it: a process of its own, in a directory of the test's
choosing, with no FEDI_* setting but those the test gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from fedi.store.migrate import alembic_config


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDI_")}
    return {**env, **settings}


def fedi(cwd: Path, *args: str, env: dict[str, str] | None = None,
         **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedi", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120,
                          env=clean_env() if env is None else env, **kwargs)


def assert_one_line(result: subprocess.CompletedProcess[str], says: str, code: int = 2) -> None:
    """Exit `code`, nothing on stdout, exactly one line on stderr: `fedi: error: …says…`."""
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedi: error: "), result.stderr
    assert says in lines[0], lines[0]


def previous_revision() -> tuple[str, str]:
    """(the revision before head, head)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    assert head is not None
    before = scripts.get_revision(head).down_revision
    assert isinstance(before, str)
    return before, head


async def upgrade_to(url: str, revision: str) -> None:
    def upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade)
    finally:
        await engine.dispose()


async def query(url: str, sql: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()
