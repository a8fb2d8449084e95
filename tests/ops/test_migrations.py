"""Migrations forward from every earlier schema, with data in it, on SQLite and PostgreSQL.

For each revision before head (taken from Alembic's own script directory, so a new
migration is covered without touching this file): migrate an empty database to it, insert a
small but realistic instance with plain SQL (actors with keys, a group, a membership, a post,
a queued delivery, a processed inbox item), migrate to head, and check that every row is
intact and that the app serves the group and the post from it.
"""

from __future__ import annotations

import ast
import json
import textwrap
import time
from inspect import getsource as inspect_source
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from fedi.activitypub.keys import generate_rsa_keypair
from fedi.store.migrate import alembic_config
from tests.support.app import BASE_URL, running_app

SCRIPTS = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPTS.get_current_head()
EARLIER = [rev.revision for rev in reversed(list(SCRIPTS.walk_revisions()))
           if rev.revision != HEAD]

NOW = time.time()
REMOTE = "https://remote.example"
INSTANCE, ALICE, CATS = f"{BASE_URL}/actor", f"{BASE_URL}/users/alice", f"{BASE_URL}/groups/cats"
BOB = f"{REMOTE}/users/bob"
POST = f"{BASE_URL}/posts/first"


def _actor(row_id: int, uri: str, kind: str, name: str, *, local: bool,
           keys: tuple[str, str]) -> dict[str, Any]:
    private_pem, public_pem = keys
    return {
        "id": row_id, "uri": uri, "type": kind, "local": local, "username": name,
        "domain": uri.split("/")[2], "name": name.title(), "summary": None,
        "inbox": f"{uri}/inbox", "shared_inbox": uri.rsplit("/", 2)[0] + "/inbox",
        "outbox": f"{uri}/outbox", "followers_url": f"{uri}/followers", "url": uri,
        "key_id": f"{uri}#main-key", "public_key_pem": public_pem,
        "private_key_pem": private_pem if local else None,
        "manually_approves_followers": False, "fetched_at": NOW, "key_refreshed_at": 0.0,
        "created_at": NOW,
    }


def seed_rows() -> dict[str, list[dict[str, Any]]]:
    """One small instance, as the first schema stores it (table → rows, in insert order)."""
    note = {
        "@context": "https://www.w3.org/ns/activitystreams", "id": POST, "type": "Note",
        "attributedTo": ALICE, "audience": CATS, "name": "Hello", "content": "<p>Hello cats</p>",
        "to": ["https://www.w3.org/ns/activitystreams#Public"], "cc": [CATS],
        "published": "2026-01-01T00:00:00Z",
    }
    announce = {"id": f"{BASE_URL}/activities/a1", "type": "Announce", "actor": CATS,
                "object": {"type": "Create", "actor": ALICE, "object": note}}
    follow = {"id": f"{REMOTE}/follows/1", "type": "Follow", "actor": BOB, "object": CATS}
    return {
        "actors": [
            _actor(1, INSTANCE, "Application", "instance.actor", local=True,
                   keys=generate_rsa_keypair()),
            _actor(2, ALICE, "Person", "alice", local=True, keys=generate_rsa_keypair()),
            _actor(3, CATS, "Group", "cats", local=True, keys=generate_rsa_keypair()),
            _actor(4, BOB, "Person", "bob", local=False, keys=generate_rsa_keypair()),
        ],
        "users": [{"actor_id": 2, "is_admin": True, "created_at": NOW}],
        "groups": [{"actor_id": 3, "owner_id": 2, "join_policy": "open",
                    "rules": '["be kind"]', "privacy": "public", "reply_policy": "members",
                    "premoderation": False, "report_threshold": 0, "questions": "[]",
                    "created_at": NOW}],
        "group_roles": [{"id": 1, "group_id": 3, "actor_id": 2, "role": "owner",
                         "created_at": NOW}],
        "follows": [{"id": 1, "follower_id": 4, "target_id": 3, "state": "accepted",
                     "activity_uri": follow["id"], "answers": None, "wants_all_replies": False,
                     "created_at": NOW, "updated_at": NOW}],
        "posts": [{"id": 1, "uri": POST, "type": "Note", "author_id": 2, "group_id": 3,
                   "in_reply_to": None, "thread_id": 1, "context": f"{POST}/context",
                   "name": "Hello", "summary": None, "content": "<p>Hello cats</p>",
                   "visibility": "public", "local": True, "published": NOW, "updated": None,
                   "deleted_at": None, "pinned_at": None, "locked_at": None,
                   "reply_policy": "members", "circle_id": None, "held": None,
                   "boost_uri": None, "copy_uri": None, "like_count": 0, "reply_count": 0,
                   "document": json.dumps(note), "activity": json.dumps(announce["object"])}],
        "outbound_activities": [{"id": 1, "uri": announce["id"], "actor_id": 3,
                                 "body": json.dumps(announce), "created_at": NOW}],
        "deliveries": [{"id": 1, "activity_id": 1, "inbox_url": f"{REMOTE}/inbox",
                        "host": "remote.example", "state": "pending", "attempts": 2,
                        "next_attempt_at": NOW + 600, "claimed_until": 0.0,
                        "last_status": 503, "last_error": "HTTP 503", "created_at": NOW,
                        "done_at": None}],
        "inbox_items": [{"id": 1, "activity_uri": follow["id"], "actor_uri": BOB,
                         "recipient": f"{CATS}/inbox", "body": json.dumps(follow),
                         "state": "done", "attempts": 1, "claimed_until": 0.0, "error": None,
                         "received_at": NOW, "processed_at": NOW}],
        "hosts": [{"host": "remote.example", "failures": 2, "down_until": 0.0, "gone": False,
                   "last_success_at": NOW - 60, "last_failure_at": NOW,
                   "software": "mastodon", "software_checked_at": NOW}],
    }


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _columns(connection: Connection, table: str) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns(table)}


def _insert(connection: Connection, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Plain SQL, with the columns this revision has (every seeded table must exist)."""
    for table, table_rows in rows.items():
        present = _columns(connection, table)
        for row in table_rows:
            values = {k: v for k, v in row.items() if k in present}
            names = ", ".join(values)
            marks = ", ".join(f":{k}" for k in values)
            connection.execute(text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), values)
    if connection.dialect.name == "postgresql":  # ids were given: move the sequences on
        for table, table_rows in rows.items():
            if "id" in table_rows[0]:
                connection.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))


def _read(connection: Connection, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The seeded columns of every seeded table, as stored."""
    found: dict[str, Any] = {}
    for table, table_rows in rows.items():
        names = [k for k in table_rows[0] if k in _columns(connection, table)]
        order = "id" if "id" in names else names[0]
        result = connection.execute(text(f"SELECT {', '.join(names)} FROM {table} "
                                         f"ORDER BY {order}"))
        found[table] = [
            {k: (bool(v) if isinstance(table_rows[0][k], bool) else v)
             for k, v in zip(names, row, strict=True)}
            for row in result.all()
        ]
    return found


@pytest.mark.parametrize("revision", EARLIER)
async def test_upgrade_to_head_keeps_data_and_the_app_works(
    database_url: str, revision: str
) -> None:
    rows = seed_rows()
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, revision)
            await conn.run_sync(_insert, rows)
            before = await conn.run_sync(_read, rows)
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, "head")
        async with engine.connect() as conn:
            after = await conn.run_sync(_read, rows)
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))) \
                .scalar_one()
    finally:
        await engine.dispose()
    assert version == HEAD
    assert after == before  # every seeded value of every row, unchanged

    # The app runs on the upgraded database: the group's actor (with the same key), its
    # post as ActivityPub and as a page, WebFinger, and a new local write.
    async with running_app(database_url) as app:
        actor = await app.http.get("/groups/cats",
                                   headers={"Accept": "application/activity+json"})
        assert actor.status_code == 200
        assert actor.json()["publicKey"]["publicKeyPem"] == rows["actors"][2]["public_key_pem"]
        note = await app.http.get("/posts/first",
                                  headers={"Accept": "application/activity+json"})
        assert note.status_code == 200 and note.json()["id"] == POST
        page = await app.http.get("/posts/first", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "Hello cats" in page.text
        finger = await app.http.get("/.well-known/webfinger",
                                    params={"resource": "acct:cats@fedi.test"})
        assert finger.status_code == 200
        followers = await app.http.get("/groups/cats/followers",
                                       headers={"Accept": "application/activity+json"})
        assert followers.status_code == 200 and followers.json()["totalItems"] == 1


def test_every_revision_is_covered() -> None:
    """The list above comes from the scripts: the first schema and every later one but head."""
    assert EARLIER[0] == "0001"
    assert len(EARLIER) == len(list(SCRIPTS.walk_revisions())) - 1


# Operations that break the release before a migration (deploy/README.md "Rolling"): they
# belong in a later release, once no released code uses what they remove or change.
CONTRACTING = {"drop_column", "drop_table", "drop_constraint", "rename_table", "alter_column"}


def _contracting(source: str) -> list[str]:
    """The calls in `source` that remove, rename or tighten what old code uses; a column
    added NOT NULL without a server default breaks old code's inserts too."""
    found = []
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr in CONTRACTING:
            if node.func.attr == "drop_constraint" and _keyword(node, "type_") == "foreignkey":
                continue  # a check less: what old code writes still goes in
            found.append(node.func.attr)
        elif node.func.attr == "add_column":
            words = {k.arg: k.value for c in ast.walk(node) if isinstance(c, ast.Call)
                     for k in c.keywords}
            strict = isinstance(words.get("nullable"), ast.Constant) and \
                words["nullable"].value is False  # type: ignore[union-attr]
            if strict and "server_default" not in words:
                found.append("add_column NOT NULL without server_default")
    return found


def _keyword(call: ast.Call, name: str) -> object:
    return next((k.value.value for k in call.keywords
                 if k.arg == name and isinstance(k.value, ast.Constant)), None)


def test_the_expand_check_sees_contracting_operations() -> None:
    assert _contracting("def upgrade():\n    op.drop_column('actors', 'x')\n") == \
        ["drop_column"]
    # A unique constraint dropped changes what old code may rely on; a foreign key does not.
    assert _contracting(
        "def upgrade():\n    op.drop_constraint('u', 'deliveries', type_='unique')\n"
    ) == ["drop_constraint"]
    assert _contracting(
        "def upgrade():\n    op.drop_constraint('f', 'deliveries', type_='foreignkey')\n"
    ) == []
    assert _contracting(
        "def upgrade():\n    b.add_column(sa.Column('x', sa.Text(), nullable=False))\n"
    ) == ["add_column NOT NULL without server_default"]
    assert _contracting(
        "def upgrade():\n    op.create_table('t', sa.Column('x', sa.Text(), nullable=False))\n"
        "    b.add_column(sa.Column('y', sa.Text(), nullable=False, server_default='a'))\n"
    ) == []


@pytest.mark.parametrize("revision", [rev.revision for rev in SCRIPTS.walk_revisions()])
def test_migrations_only_expand_so_the_previous_release_keeps_working(revision: str) -> None:
    """Rolling upgrades migrate while the previous release still serves: after the first
    schema, a migration's upgrade() may add but not drop, rename or tighten (a migration
    that must contract says so with a `# contract: REASON` line, and its release notes
    must ask for stop, migrate, start)."""
    script = SCRIPTS.get_revision(revision)
    assert script is not None and script.module is not None
    source = inspect_source(script.module.upgrade)
    if script.down_revision is None or "# contract:" in source:
        return
    found = _contracting(source)
    assert not found, f"migration {revision} contracts the schema ({', '.join(found)})"


def _downgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def _keys(connection: Connection) -> dict[int, str | None]:
    found = connection.execute(text("SELECT id, order_key FROM deliveries"))
    return {row_id: key for row_id, key in found}


def _indexes(connection: Connection) -> set[str]:
    return {index["name"] for index in inspect(connection).get_indexes("deliveries")}


async def test_0010_rekeys_what_is_queued_so_it_keeps_its_order(database_url: str) -> None:
    """Pending deliveries keyed the 0008 way (one digest of object and inbox) get the key
    enqueue now gives them (the object's digest, then the inbox's), so an Update queued after
    the upgrade still waits for a Create queued before it; sent rows are left alone; and the
    downgrade gives the old keys back."""
    from hashlib import blake2b

    from fedi.delivery.enqueue import order_key

    def old_key(about: str, inbox: str) -> str:
        return blake2b(f"{about} {inbox}".encode(), digest_size=16).hexdigest()

    rows = seed_rows()
    inbox, other, sent = (f"{REMOTE}/inbox", f"{REMOTE}/users/carol/inbox",
                          f"{REMOTE}/users/dan/inbox")
    rows["deliveries"] = [
        {"id": n, "activity_id": 1, "inbox_url": url, "host": "remote.example",
         "state": state, "attempts": 0, "next_attempt_at": 0.0, "claimed_until": 0.0,
         "created_at": NOW, "order_key": old_key(POST, url)}
        for n, url, state in ((1, inbox, "pending"), (2, other, "pending"), (3, sent, "done"))
    ]
    sent_key = old_key(POST, sent)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, "0009")
            await conn.run_sync(_insert, rows)
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, "0010")
        async with engine.connect() as conn:
            upgraded = await conn.run_sync(_keys)
            upgraded_indexes = await conn.run_sync(_indexes)
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "0009")
        async with engine.connect() as conn:
            downgraded = await conn.run_sync(_keys)
            downgraded_indexes = await conn.run_sync(_indexes)
    finally:
        await engine.dispose()
    assert upgraded == {1: order_key(POST, inbox), 2: order_key(POST, other), 3: sent_key}
    assert upgraded[1] != upgraded[2] and upgraded[1][:16] == upgraded[2][:16]
    assert "ix_deliveries_activity_id" not in upgraded_indexes
    assert downgraded == {1: old_key(POST, inbox), 2: old_key(POST, other), 3: sent_key}
    assert "ix_deliveries_activity_id" in downgraded_indexes


def _activity_foreign_keys(connection: Connection) -> list[list[str]]:
    return [fk["constrained_columns"] for fk in inspect(connection).get_foreign_keys("deliveries")]


async def test_0012_drops_the_activity_check_on_postgres_and_keeps_the_rows(
    database_url: str,
) -> None:
    """PostgreSQL loses the per-row trigger of deliveries.activity_id (and gets it back on
    downgrade); SQLite keeps its constraint; the queued row is untouched either way."""
    rows = seed_rows()
    engine = create_async_engine(database_url)
    postgres = engine.dialect.name == "postgresql"
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, "0011")
            await conn.run_sync(_insert, rows)
            before = await conn.run_sync(_activity_foreign_keys)
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, "0012")
        async with engine.connect() as conn:
            upgraded = await conn.run_sync(_activity_foreign_keys)
            kept = await conn.run_sync(_read, {"deliveries": rows["deliveries"]})
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "0011")
        async with engine.connect() as conn:
            downgraded = await conn.run_sync(_activity_foreign_keys)
    finally:
        await engine.dispose()
    assert before == [["activity_id"]]
    assert upgraded == ([] if postgres else [["activity_id"]])
    assert downgraded == [["activity_id"]]
    assert kept == {"deliveries": rows["deliveries"]}
