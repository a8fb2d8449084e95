"""`fedi admin export-keys` / `import-keys`: moving the instance's and local actors' keys to
another host, all or nothing, and never for actors that are not there."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.ops.support import assert_clean, fedi
from tests.support.databases import create_database, drop_database

BASE = "http://fedi.test"
KEYS = ("SELECT uri, key_id, public_key_pem, private_key_pem, assertion_key_id, "
        "assertion_public_key, assertion_private_pem FROM actors WHERE local ORDER BY uri")


async def _rows(url: str, sql: str = KEYS) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql))).all()]
    finally:
        await engine.dispose()


async def test_keys_move_to_a_new_host(database_url: str, tmp_path: Path) -> None:
    def old(*args: str):  # type: ignore[no-untyped-def]
        return fedi(tmp_path, BASE, database_url, *args)

    old("init")  # only init, migrate and serve make a database
    old("create-user", "alice")
    old("create-group", "cats", "--owner", "alice")
    exported = old("admin", "export-keys", str(tmp_path / "keys.json"))
    assert_clean(exported)
    assert exported.returncode == 0 and "3 local actors" in exported.stdout
    key_file = tmp_path / "keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    body = json.loads(key_file.read_text())
    assert {entry["uri"] for entry in body["actors"]} == {
        f"{BASE}/actor", f"{BASE}/users/alice", f"{BASE}/groups/cats"}
    assert all(entry["assertion_private_pem"] for entry in body["actors"])

    # The new host: the same actors made again (with new keys), then the old keys imported.
    new_url = await create_database(tmp_path, "new")
    try:
        def new(*args: str):  # type: ignore[no-untyped-def]
            return fedi(tmp_path, BASE, new_url, *args)

        new("init")  # only init, migrate and serve make a database
        new("create-user", "alice")
        new("create-group", "cats", "--owner", "alice")
        assert await _rows(new_url) != await _rows(database_url)
        imported = new("admin", "import-keys", str(key_file))
        assert_clean(imported)
        assert imported.returncode == 0 and "3 local actors" in imported.stdout
        assert await _rows(new_url) == await _rows(database_url)
    finally:
        await drop_database(new_url)

    again = old("admin", "export-keys", str(key_file))
    assert again.returncode == 2 and "already exists" in again.stderr


async def test_import_refuses_unknown_actors_other_addresses_and_damaged_keys(
    database_url: str, tmp_path: Path
) -> None:
    def run(*args: str, base: str = BASE):  # type: ignore[no-untyped-def]
        return fedi(tmp_path, base, database_url, *args)

    run("init")  # only init, migrate and serve make a database
    run("create-user", "alice")
    run("create-group", "cats", "--owner", "alice")
    key_file = tmp_path / "keys.json"
    run("admin", "export-keys", str(key_file))
    exported = json.loads(key_file.read_text())
    before = await _rows(database_url)

    def refused(body: dict[str, object], message: str, base: str = BASE) -> None:
        path = tmp_path / "edited.json"
        path.unlink(missing_ok=True)
        path.write_text(json.dumps(body))
        result = run("admin", "import-keys", str(path), base=base)
        assert_clean(result)
        assert result.returncode == 2, result.stdout
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr

    # An actor that does not exist here: the whole file is refused.
    ghost = dict(exported["actors"][1], uri=f"{BASE}/users/ghost",
                 key_id=f"{BASE}/users/ghost#main-key")
    refused(dict(exported, actors=[*exported["actors"], ghost]), "does not exist here")
    # Keys of another instance's actors.
    refused(exported, "not under FEDI_BASE_URL", base="http://other.test")
    # A private key that is not the public key's other half.
    swapped = [dict(exported["actors"][0], private_key_pem=exported["actors"][1]
                    ["private_key_pem"]), *exported["actors"][1:]]
    refused(dict(exported, actors=swapped), "do not match")
    # Not a key file at all.
    refused({"hello": "world"}, "is not a fedi key file")
    assert await _rows(database_url) == before  # nothing changed by any of them
