"""Two real fedi processes: bob on B moderates a group on A from B's thread pages. A applies
his removal and his lock, audits both under bob's actor id and relays them (B's copies show
them); the same activities from someone on B who does not moderate the group are refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.accounts.support import PASSWORD, token_in
from tests.support.instance import FediInstance, eventually

pytestmark = pytest.mark.federation

FAST = {"FEDI_PASSWORD_TIME_COST": "1", "FEDI_PASSWORD_MEMORY_KIB": "1024"}


def set_password(instance: FediInstance, name: str) -> None:
    subprocess.run([sys.executable, "-m", "fedi", "set-password", name], input=PASSWORD + "\n",
                   env={**instance.env, **FAST}, cwd=instance.workdir, check=True,
                   capture_output=True, text=True, timeout=120)


async def execute(instance: FediInstance, sql: str, **params: object) -> None:
    engine = create_async_engine(instance.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


async def one(instance: FediInstance, sql: str, **params: object) -> object:
    rows = await instance.query(sql, **params)
    return rows[0][0] if rows else None


async def moderate(http: httpx.AsyncClient, post_id: int, action: str) -> httpx.Response:
    """What a browser does: open the thread page and press the button."""
    page = await http.get(f"/remote/posts/{post_id}")
    assert page.status_code == 200, page.text[:500]
    assert f'action="/posts/{post_id}/remote-moderation"' in page.text
    assert re.search(rf'name="action" value="{action}"', page.text)
    return await http.post(f"/posts/{post_id}/remote-moderation",
                           data={"csrf": token_in(page), "action": action,
                                 "reason": "off topic" if action == "remove" else ""})


async def test_a_moderator_on_b_removes_and_locks_in_a_group_on_a(
    instances: list[FediInstance],
) -> None:
    a, b, _ = instances
    a.cli("create-user", "alice", "--admin")
    a.cli("create-group", "cats", "--owner", "alice")
    for name in ("bob", "eve"):
        b.cli("create-user", name)
        set_password(b, name)
    a.start()
    b.start()
    group = f"{a.base_url}/groups/cats"
    for name in ("bob", "eve"):
        b.cli("follow", "--as", name, f"@cats@{a.domain}")

    async def members_on_a() -> bool:
        rows = await a.query("SELECT count(*) FROM follows f JOIN actors t ON t.id = f.target_id "
                             "WHERE t.uri = :g AND f.state = 'accepted'", g=group)
        return rows == [(2,)]

    await eventually(members_on_a, what="bob and eve are members on A")
    bob, eve = f"{b.base_url}/users/bob", f"{b.base_url}/users/eve"
    a.cli("mod", "add-moderator", "cats", bob, "--as", "alice")

    # A tells its members; B learns that bob moderates the group.
    async def role_on_b() -> object:
        return await one(b, "SELECT r.role FROM group_roles r JOIN actors g ON g.id = r.group_id "
                         "JOIN actors p ON p.id = r.actor_id WHERE g.uri = :g AND p.uri = :p",
                         g=group, p=bob)

    assert await eventually(role_on_b, what="bob's role known on B") == "moderator"

    doomed = a.cli("post", "--as", "alice", "--group", "cats", "spam here").stdout.strip()
    thread = a.cli("post", "--as", "alice", "--group", "cats", "a heated thread").stdout.strip()

    async def ids_on_b() -> list[object]:
        rows = await b.query("SELECT uri, id FROM posts WHERE uri IN (:d, :t)", d=doomed, t=thread)
        return rows if len(rows) == 2 else []

    on_b = dict(await eventually(ids_on_b, what="both threads stored on B"))

    # eve does not moderate: no buttons for her, and B itself refuses her form.
    async with httpx.AsyncClient(base_url=b.base_url) as http:
        page = await http.get("/login")
        await http.post("/login", data={"csrf": token_in(page), "username": "eve",
                                        "password": PASSWORD})
        shown = await http.get(f"/remote/posts/{on_b[doomed]}")
        assert "remote-moderation" not in shown.text
        refused = await http.post(f"/posts/{on_b[doomed]}/remote-moderation",
                                  data={"csrf": token_in(shown), "action": "remove"})
        assert refused.status_code == 400 and "Nothing was changed" in refused.text

    async with httpx.AsyncClient(base_url=b.base_url) as http:
        page = await http.get("/login")
        await http.post("/login", data={"csrf": token_in(page), "username": "bob",
                                        "password": PASSWORD})
        for post, action in ((doomed, "remove"), (thread, "lock")):
            sent = await moderate(http, int(on_b[post]), action)
            assert sent.status_code == 303, sent.text[:500]

    async def applied_on_a() -> bool:
        removed = await one(a, "SELECT deleted_at FROM posts WHERE uri = :u", u=doomed)
        locked = await one(a, "SELECT locked_at FROM posts WHERE uri = :u", u=thread)
        return removed is not None and locked is not None

    await eventually(applied_on_a, what="removal and lock applied on A")
    audit = await a.query("SELECT who, action, target, reason FROM audit_log "
                          "WHERE action IN ('group.remove', 'group.lock') ORDER BY id")
    # Sent one after the other, but delivered in either order.
    assert sorted(audit) == sorted([(bob, "group.remove", doomed, "off topic"),
                                    (bob, "group.lock", thread, None)])

    # Relayed: B, which received both threads, shows the removal and the lock.
    async def relayed_to_b() -> bool:
        removed = await one(b, "SELECT deleted_at FROM posts WHERE uri = :u", u=doomed)
        locked = await one(b, "SELECT locked_at FROM posts WHERE uri = :u", u=thread)
        return removed is not None and locked is not None

    await eventually(relayed_to_b, what="removal and lock relayed to B")

    # The same activities from eve, sent by her server (B wrongly believing she moderates):
    # A refuses them and changes nothing.
    await execute(b, "INSERT INTO group_roles (group_id, actor_id, role, created_at) "
                  "SELECT g.id, p.id, 'moderator', 0 FROM actors g, actors p "
                  "WHERE g.uri = :g AND p.uri = :p", g=group, p=eve)
    await execute(a, "UPDATE posts SET locked_at = NULL WHERE uri = :u", u=thread)
    await execute(b, "UPDATE posts SET locked_at = NULL WHERE uri = :u", u=thread)
    third = a.cli("post", "--as", "alice", "--group", "cats", "one more").stdout.strip()

    async def third_on_b() -> object:
        return await one(b, "SELECT id FROM posts WHERE uri = :u", u=third)

    third_id = await eventually(third_on_b, what="third thread on B")
    async with httpx.AsyncClient(base_url=b.base_url) as http:
        page = await http.get("/login")
        await http.post("/login", data={"csrf": token_in(page), "username": "eve",
                                        "password": PASSWORD})
        for post_id, action in ((int(str(third_id)), "remove"), (int(on_b[thread]), "lock")):
            assert (await moderate(http, post_id, action)).status_code == 303

    async def refused_on_a() -> dict[str, str]:
        rows = await a.query("SELECT body, error FROM inbox_items WHERE actor_uri = :p "
                             "AND state = 'done'", p=eve)
        found = {json.loads(body)["type"]: error for body, error in rows}
        return found if {"Delete", "Lock"} <= found.keys() else {}

    errors = await eventually(refused_on_a, what="A refused eve's Delete and Lock")
    assert errors["Lock"].startswith(f"refused: {eve} is not a moderator"), errors
    assert errors["Delete"].startswith("refused: only the author or a moderator"), errors
    assert errors["Delete"].endswith(f"{eve} is neither"), errors
    assert await one(a, "SELECT deleted_at FROM posts WHERE uri = :u", u=third) is None
    assert await one(a, "SELECT locked_at FROM posts WHERE uri = :u", u=thread) is None
    assert await a.query("SELECT who FROM audit_log WHERE who = :p", p=eve) == []
