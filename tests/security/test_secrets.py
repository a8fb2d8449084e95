"""Secrets never printed (issue 12 item 5, SECURITY 23).

Runs the failure paths of the real `fedi` command and server (a database made under another
base URL, unreachable and wrong databases, bad settings, a port in use, a broken key, hostile
inbox requests) and read-only commands, and scans everything they print and log for key
material taken from the database, "PRIVATE KEY" and "Traceback".
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.config import Settings
from fedi.logs import RedactingFormatter
from fedi.store.db import make_engine
from fedi.store.migrate import migrate
from tests.support.databases import create_database, drop_database, using_postgres
from tests.support.instance import FediInstance, eventually
from tests.support.ports import port_of, reserve_port
from tests.support.remote import FakeRemote

pytestmark = pytest.mark.federation


async def private_keys(instance: FediInstance) -> list[str]:
    rows = await instance.query(
        "SELECT private_key_pem FROM actors WHERE private_key_pem IS NOT NULL"
    )
    return [row[0] for row in rows]


def _body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def key_fragments(pem: str, size: int = 16) -> set[str]:
    """Every `size`-character run of the key's base64 body, but for the ASN.1 prefix every
    RSA key shares with its public key (which is published, so not a leak)."""
    body = _body(pem)
    fragments = {body[i : i + size] for i in range(len(body) - size + 1)}
    return {f for f in fragments if f not in _PUBLIC_PREFIX}


# The start of any RSA PKCS#8 private key and SPKI public key: an algorithm identifier.
_PUBLIC_PREFIX = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"


def leaks(text: str, pems: list[str]) -> list[str]:
    """What in `text` is a secret: markers, or 16+ characters of a stored private key."""
    found = [marker for marker in ("PRIVATE KEY", "Traceback") if marker in text]
    # Keys show up with real newlines, escaped ones ("\\n" in a repr) or none.
    flat = text.replace("\\n", "").replace("\n", "")
    for pem in pems:
        hits = [f for f in key_fragments(pem) if f in flat]
        if hits:
            found.append(f"{len(hits)} fragments of a stored private key, e.g. {hits[0]!r}")
    return found


def assert_clean(result: subprocess.CompletedProcess[str], pems: list[str]) -> None:
    output = result.stdout + result.stderr
    assert not leaks(output, pems), f"{leaks(output, pems)} in:\n{output}"


def assert_one_line_error(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("fedi: error:")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def run_fedi(
    instance: FediInstance, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`fedi ARGS` in the instance's directory, with its environment changed by `env`;
    `serve` gets a socket of its own unless told a --port (the instance holds its own)."""
    with reserve_port() as sock:
        fds: tuple[int, ...] = ()
        if args[:1] == ("serve",) and "--port" not in args:
            args, fds = (*args, "--fd", str(sock.fileno())), (sock.fileno(),)
        return subprocess.run(
            [sys.executable, "-m", "fedi", *args], cwd=instance.workdir, capture_output=True,
            text=True, timeout=120, env={**instance.env, **(env or {})}, pass_fds=fds,
        )


@pytest.fixture
async def instance(instances: list[FediInstance]) -> AsyncIterator[FediInstance]:
    """An instance with a user, a group and its keys made."""
    a = instances[0]
    a.cli("create-user", "alice", "--admin")
    a.cli("create-group", "cats", "--owner", "alice")
    yield a


async def test_another_base_url_on_an_existing_database_stops_with_one_line(
    instance: FediInstance,
) -> None:
    pems = await private_keys(instance)
    for args in (["create-user", "bob"], ["worker"], ["serve", "--no-worker"],
                 ["admin", "deliveries"]):
        result = run_fedi(instance, *args, env={"FEDI_BASE_URL": "http://127.0.0.1:1"})
        assert result.returncode == 2, result.stderr
        assert_one_line_error(result, f"belongs to the instance at {instance.base_url}")
        assert f"set FEDI_BASE_URL={instance.base_url}" in result.stderr
        assert_clean(result, pems)
    # Nothing was written under the wrong address: no second instance actor, no user.
    rows = await instance.query("SELECT uri FROM actors WHERE local")
    assert all(uri.startswith(instance.base_url + "/") for (uri,) in rows)


async def test_database_and_setting_failures_print_one_line_without_secrets(
    instance: FediInstance, tmp_path: Path
) -> None:
    pems = await private_keys(instance)
    closed = reserve_port()  # bound, never listening: a database server that is down
    cases = [
        # Only serve, init and migrate create a SQLite file; the others say where none is.
        ({"FEDI_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/missing/dir/fedi.db"},
         "no database at"),
        ({"FEDI_DATABASE_URL": f"postgresql+asyncpg://fedi:s3cretpw@127.0.0.1:{port_of(closed)}/x"},
         "cannot open the database"),
        ({"FEDI_DATABASE_URL": "mysql://root:s3cretpw@127.0.0.1/fedi"}, "is not supported"),
        ({"FEDI_DELIVERY_CONCURRENCY": "many"}, "is not a whole number"),
        ({"FEDI_BASE_URL": "ftp://example"}, "must be an absolute http(s) URL"),
    ]
    if using_postgres():
        cases.append(({"FEDI_DATABASE_URL": instance.database_url + "_no_such_db"},
                      "does not exist"))
    try:
        for env, says in cases:
            result = run_fedi(instance, "create-user", "bob", env=env)
            assert result.returncode == 2, result.stderr
            assert_one_line_error(result, says)
            assert "s3cretpw" not in result.stderr
            assert_clean(result, pems)
    finally:
        closed.close()


async def test_serving_on_a_port_in_use_is_one_line(instance: FediInstance) -> None:
    pems = await private_keys(instance)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_fedi(instance, "serve", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert_one_line_error(result, "cannot listen on 127.0.0.1:")
    assert_clean(result, pems)


async def cut_keys(instance: FediInstance, kinds: str) -> None:
    """Cut the stored private keys of actors of these types short: still mostly real key
    material, no longer loadable."""
    engine = make_engine(Settings(database_url=instance.database_url))
    try:
        async with engine.begin() as conn:
            rows = (await conn.execute(text(
                "SELECT id, private_key_pem, type FROM actors WHERE private_key_pem IS NOT NULL"
            ))).all()
            for id_, pem, kind in rows:
                if kind in kinds.split():
                    await conn.execute(
                        text("UPDATE actors SET private_key_pem = :cut WHERE id = :id"),
                        {"cut": pem[: len(pem) // 2], "id": id_},
                    )
    finally:
        await engine.dispose()


async def test_broken_keys_fail_in_one_line_without_the_key(instance: FediInstance) -> None:
    pems = await private_keys(instance)
    remote = FakeRemote(publish_shared_inbox=False)
    eve = remote.add_actor("eve")
    await remote.start()
    try:
        # A group's broken key: its Accept cannot be signed; the server says so in a line.
        await cut_keys(instance, "Group Person")
        instance.start()
        inbox = f"{instance.base_url}/inbox"
        follow = json.dumps({
            "@context": "https://www.w3.org/ns/activitystreams", "type": "Follow",
            "id": f"{remote.base_url}/follows/1", "actor": eve.uri,
            "object": f"{instance.base_url}/groups/cats",
        }).encode()
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(inbox, content=follow,
                                          headers=remote.signed(eve, inbox, follow))
        assert response.status_code == 202, response.text
        await eventually(lambda: "delivery" in instance.log(), what="the failed delivery")
        instance.stop()
        assert not leaks(instance.log(), pems), instance.log()

        # The instance's broken key: every command, `fedi serve` too, stops in one line
        # before anything is signed (it was a 500 on the first inbox POST).
        await cut_keys(instance, "Application")
        for args in (["follow", "--as", "alice", eve.uri], ["serve", "--no-worker"]):
            result = run_fedi(instance, *args)
            assert result.returncode == 2
            assert_one_line_error(result, "private key in the database cannot be loaded")
            assert_clean(result, pems)
    finally:
        instance.stop()
        await remote.stop()


async def test_read_only_commands_print_no_secrets(instance: FediInstance) -> None:
    instance.cli("mod", "invite", "cats", "--as", "alice", check=False)
    pems = await private_keys(instance)
    for args in (
        ["admin", "deliveries"], ["admin", "audit"], ["admin", "reports", "--all"],
        ["admin", "domain-block", "list"], ["mod", "pending", "cats", "--as", "alice"],
        ["mod", "log", "cats", "--as", "alice"], ["migrate"],
    ):
        result = instance.cli(*args, check=False)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert_clean(result, pems)


async def test_hostile_requests_leave_no_secret_or_traceback_in_the_server_log(
    instance: FediInstance,
) -> None:
    remote = FakeRemote(publish_shared_inbox=False)
    eve = remote.add_actor("eve")
    await remote.start()
    instance.start()
    try:
        inbox = f"{instance.base_url}/inbox"
        follow = json.dumps({
            "@context": "https://www.w3.org/ns/activitystreams", "type": "Follow",
            "id": f"{remote.base_url}/follows/1", "actor": eve.uri,
            "object": f"{instance.base_url}/groups/cats",
        }).encode()
        bodies: list[tuple[bytes, dict[str, str]]] = [
            (follow, remote.signed(eve, inbox, follow)),  # valid
            (follow, {"Content-Type": "application/activity+json"}),  # unsigned
            (b"{not json", remote.signed(eve, inbox, b"{not json")),
            (b"[]", remote.signed(eve, inbox, b"[]")),
            (follow, remote.signed(eve, inbox, b"other body")),  # digest mismatch
        ]
        async with httpx.AsyncClient(timeout=30) as client:
            for body, headers in bodies:
                response = await client.post(inbox, content=body, headers=headers)
                assert response.status_code < 500, response.text
            for path in ("/actor", "/groups/cats", "/users/alice", "/inbox"):
                response = await client.get(
                    instance.base_url + path, headers={"Accept": "application/activity+json"}
                )
                assert response.status_code < 500
                assert not leaks(response.text, await private_keys(instance)), path
    finally:
        instance.stop()
        await remote.stop()
    log = instance.log()
    assert not leaks(log, await private_keys(instance)), log


async def test_database_errors_never_carry_sql_parameters(tmp_path: Path) -> None:
    url = await create_database(tmp_path, "params")
    engine: AsyncEngine = make_engine(Settings(database_url=url))
    secret = "-----BEGIN PRIVATE KEY-----\nMIIEvAbCdEfGh1234567890XyZ\n-----END PRIVATE KEY-----"
    try:
        await migrate(engine)
        insert = (
            "INSERT INTO actors (uri, type, local, username, domain, private_key_pem, "
            "manually_approves_followers, fetched_at, key_refreshed_at, created_at) "
            "VALUES (:uri, 'Person', true, 'x', 'd', :pem, false, 0, 0, 0)"
        )
        async with engine.begin() as conn:
            await conn.execute(text(insert), {"uri": "http://d/1", "pem": secret})
        with pytest.raises(IntegrityError) as failure:
            async with engine.begin() as conn:
                await conn.execute(text(insert), {"uri": "http://d/1", "pem": secret})
        assert "MIIEv" not in str(failure.value) and "PRIVATE KEY" not in str(failure.value)
    finally:
        await engine.dispose()
        await drop_database(url)


def test_log_lines_and_tracebacks_are_redacted() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    try:
        raise ValueError(f"bad row ({pem!r}, '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA')")
    except ValueError:
        record = logging.LogRecord(
            "fedi.test", logging.ERROR, __file__, 1,
            "failed with token=%s and Authorization: Bearer %s", ("tok123", "AbCdEf123456"),
            sys.exc_info(),
        )
    line = RedactingFormatter("%(message)s").format(record)
    assert "Traceback" in line  # still useful for debugging ...
    for secret in ("PRIVATE KEY", "MIIEv", "argon2id", "tok123", "AbCdEf123456"):
        assert secret not in line  # ... but without the secrets
    # Ordinary URLs and words survive.
    kept = RedactingFormatter("%(message)s").format(logging.LogRecord(
        "fedi", logging.INFO, __file__, 1, "fetched http://127.0.0.1:8000/groups/cats/posts/12",
        None, None))
    assert kept.endswith("http://127.0.0.1:8000/groups/cats/posts/12")
