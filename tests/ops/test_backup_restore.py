"""Backup while serving, restore into a new database, and the fediverse does not notice.

A second fedi that followed a group before the backup must still take the restored group's
next post: it verifies the post's signature with the key it already holds, so the restore
must bring back the very same keys, follows and ids.
"""

from __future__ import annotations

import asyncio
import json
import stat
import tarfile
from pathlib import Path

import pytest

from tests.ops.support import assert_clean, fedi
from tests.support.databases import create_database, drop_database, using_postgres
from tests.support.instance import FediInstance, eventually

pytestmark = pytest.mark.federation

KEYS = ("SELECT uri, key_id, public_key_pem, private_key_pem, assertion_public_key, "
        "assertion_private_pem FROM actors WHERE local ORDER BY uri")


async def _accepted(follower: FediInstance, group: str) -> bool:
    rows = await follower.query(
        "SELECT f.state FROM follows f JOIN actors t ON t.id = f.target_id WHERE t.uri = :uri",
        uri=group,
    )
    return rows == [("accepted",)]


async def _stored(instance: FediInstance, post_id: str) -> bool:
    return bool(await instance.query("SELECT id FROM posts WHERE uri = :uri", uri=post_id))


def _sqlite_file(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


async def test_backup_while_serving_then_restore_keeps_followers_verifying(
    instances: list[FediInstance], tmp_path: Path
) -> None:
    a, b, _ = instances
    a.cli("create-user", "alice", "--admin")
    a.cli("create-group", "cats", "--owner", "alice")
    b.cli("create-user", "bob")
    a.start()
    b.start()
    group = f"{a.base_url}/groups/cats"
    b.cli("follow", "--as", "bob", f"@cats@{a.domain}")
    await eventually(lambda: _accepted(b, group), what="bob's membership accepted")
    first = a.cli("post", "--as", "alice", "--group", "cats", "before the backup").stdout.strip()
    await eventually(lambda: _stored(b, first), what="first post on B")
    keys = await a.query(KEYS)
    known_on_b = await b.query(
        "SELECT public_key_pem, key_refreshed_at FROM actors WHERE uri = :uri", uri=group
    )
    assert known_on_b[0][0] == next(row[2] for row in keys if row[0] == group)

    # The backup runs while the server serves and a post is being written.
    archive = tmp_path / "a.fedi-backup"
    writing = asyncio.create_task(asyncio.to_thread(
        a.cli, "post", "--as", "alice", "--group", "cats", "during the backup"
    ))
    made = await asyncio.to_thread(a.cli, "admin", "backup", str(archive))
    await writing
    assert_clean(made)
    assert f"backed up {a.base_url}" in made.stdout
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["base_url"] == a.base_url
    assert manifest["dialect"] == ("postgresql" if using_postgres() else "sqlite")
    assert manifest["schema_revision"] and manifest["fedi_version"] and manifest["created_at"]
    assert manifest["database"] in names and manifest["files"] == []

    # The host is lost: a new, empty database, the same address, the same port.
    a.stop()
    original = a.database_url
    restored = await create_database(tmp_path, "restored")
    try:
        a.database_url = restored
        done = a.cli("admin", "restore", str(archive))
        assert_clean(done)
        assert f"restored {a.base_url}" in done.stdout
        assert await a.query(KEYS) == keys  # the same RSA and Ed25519 keys, byte for byte
        # What was committed before the backup is in it, even if it was still in the WAL.
        assert await a.query("SELECT uri FROM posts WHERE uri = :uri", uri=first) == [(first,)]
        assert await a.query(
            "SELECT f.state FROM follows f JOIN actors x ON x.id = f.follower_id "
            "WHERE x.uri = :uri", uri=f"{b.base_url}/users/bob") == [("accepted",)]
        a.start()

        # The restored group's next post reaches the follower, verified with the key it
        # already had: no refetch, no new key.
        after = a.cli("post", "--as", "alice", "--group", "cats", "after the restore")
        post_id = after.stdout.strip()
        await eventually(lambda: _stored(b, post_id), what="post after the restore on B")
        assert await b.query(
            "SELECT public_key_pem, key_refreshed_at FROM actors WHERE uri = :uri", uri=group
        ) == known_on_b
        bodies = [json.loads(body) for body, state in await b.query(
            "SELECT body, state FROM inbox_items WHERE state = 'done'")]
        assert any(body.get("type") == "Announce" and body["actor"] == group
                   and body["object"]["object"]["id"] == post_id for body in bodies)
        assert "Traceback" not in a.log()
    finally:
        a.stop()
        a.database_url = original  # the fixture drops this one
        await drop_database(restored)


async def test_restore_refuses_a_non_empty_database_or_another_address(
    instances: list[FediInstance], tmp_path: Path
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    archive = tmp_path / "backup.tar.gz"
    assert_clean(a.cli("admin", "backup", str(archive)))
    before = await a.query(KEYS)

    # Into the database it came from (not empty): refused in one line, nothing changed.
    into_itself = a.cli("admin", "restore", str(archive), check=False)
    assert into_itself.returncode == 2
    assert into_itself.stderr.count("\n") == 1
    assert "is not empty" in into_itself.stderr and "new, empty database" in into_itself.stderr
    assert await a.query(KEYS) == before

    # Under another base URL: refused before any database is touched.
    target = await create_database(tmp_path, "elsewhere")
    try:
        other = fedi(tmp_path, "http://127.0.0.1:9", target, "admin", "restore", str(archive))
        assert other.returncode == 2 and other.stderr.count("\n") == 1
        assert f"set FEDI_BASE_URL={a.base_url}" in other.stderr
        assert_clean(other)
        if not using_postgres():
            assert not _sqlite_file(target).exists()

        # A backup made on one dialect does not go into the other.
        wrong_kind = ("sqlite+aiosqlite:///" + str(tmp_path / "x.db") if using_postgres()
                      else "postgresql+asyncpg://postgres@127.0.0.1:1/none")
        crossed = fedi(tmp_path, a.base_url, wrong_kind, "admin", "restore", str(archive))
        assert crossed.returncode == 2 and "is not supported" in crossed.stderr
        assert not (tmp_path / "x.db").exists()
    finally:
        await drop_database(target)

    # A damaged file: one line, no traceback.
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a backup")
    damaged = a.cli("admin", "restore", str(junk), check=False)
    assert damaged.returncode == 2 and "is not a fedi backup" in damaged.stderr
    assert_clean(damaged)


async def test_backup_never_overwrites_and_needs_a_database(
    instances: list[FediInstance], tmp_path: Path
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    archive = tmp_path / "b.tar.gz"
    archive.write_text("an older backup")
    again = a.cli("admin", "backup", str(archive), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert archive.read_text() == "an older backup"
    if using_postgres():  # without pg_dump: one line saying what to install
        no_tools = fedi(tmp_path, a.base_url, a.database_url, "admin", "backup",
                        str(tmp_path / "c.tar.gz"), PATH=str(tmp_path / "empty-bin"))
        assert no_tools.returncode == 2 and no_tools.stderr.count("\n") == 1
        assert "pg_dump is not installed" in no_tools.stderr
        assert "apt install postgresql-client" in no_tools.stderr
        assert not (tmp_path / "c.tar.gz").exists()
    else:
        missing = tmp_path / "nothing-here.db"
        none = fedi(tmp_path, a.base_url, f"sqlite+aiosqlite:///{missing}", "admin", "backup",
                    str(tmp_path / "c.tar.gz"))
        assert none.returncode == 2 and "does not exist" in none.stderr
        assert not missing.exists() and not (tmp_path / "c.tar.gz").exists()
