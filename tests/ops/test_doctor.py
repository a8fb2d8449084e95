"""`fedi doctor` against a running instance, a stopped one, a wrong configuration, a
stalled worker, damaged keys and bad TLS: one line per check, what to fix, no traceback."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fedi import doctor
from fedi.config import Settings
from fedi.store.migrate import head_revision
from tests.ops.support import assert_clean, fedi
from tests.support.databases import using_postgres
from tests.support.instance import FediInstance

pytestmark = pytest.mark.federation

CHECKS = ["config", "database", "migrations", "keys", "worker", "queue", "webfinger",
          "nodeinfo", "tls", "clock"]


def _lines(output: str) -> dict[str, str]:
    """check name → its whole line."""
    found = {}
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        name = rest.strip().split(":", 1)[0]
        assert status in ("OK", "WARN", "FAIL"), line
        found[name] = line
    return found


def test_doctor_is_all_ok_against_a_running_instance(instances: list[FediInstance]) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    a.cli("create-group", "cats", "--owner", "alice")
    a.start()
    result = a.cli("doctor", check=False)
    assert_clean(result)
    lines = _lines(result.stdout)
    assert list(lines) == CHECKS
    assert all(line.startswith("OK ") for line in lines.values()), result.stdout
    assert result.returncode == 0
    assert f"answers for {a.base_url}/actor" in lines["webfinger"]
    assert "3 local actors" in lines["keys"]  # the instance, alice and cats


async def test_doctor_says_what_to_fix_when_the_instance_is_down_or_misconfigured(
    instances: list[FediInstance], tmp_path: Path
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    a.start()
    a.stop()

    down = a.cli("doctor", check=False)
    assert_clean(down)
    assert down.returncode == 1
    lines = _lines(down.stdout)
    assert lines["webfinger"].startswith("FAIL ")
    assert "does not answer" in lines["webfinger"] and "start `fedi serve`" in lines["webfinger"]
    assert lines["database"].startswith("OK ") and lines["keys"].startswith("OK ")
    assert "no worker runs" in lines["worker"]

    # Another address than the database's: the identity check and the URL both fail.
    wrong = fedi(tmp_path, "http://127.0.0.1:9", a.database_url, "doctor")
    assert_clean(wrong)
    assert wrong.returncode == 1
    lines = _lines(wrong.stdout)
    assert lines["identity"].startswith("FAIL ") and f"FEDI_BASE_URL={a.base_url}" in \
        lines["identity"]
    assert lines["webfinger"].startswith("FAIL ")

    # A database that is not there: said, and (SQLite) not created.
    if using_postgres():
        missing_url = a.database_url.rsplit("/", 1)[0] + "/fedi_no_such_database"
    else:
        missing_url = f"sqlite+aiosqlite:///{tmp_path / 'nothing.db'}"
    missing = fedi(tmp_path, a.base_url, missing_url, "doctor")
    assert_clean(missing)
    assert missing.returncode == 1
    assert _lines(missing.stdout)["database"].startswith("FAIL ")
    assert "FEDI_DATABASE_URL" in _lines(missing.stdout)["database"]
    assert not (tmp_path / "nothing.db").exists()

    # A schema behind the code: run `fedi migrate`.
    assert head_revision() != "0001"
    await _execute(a, "UPDATE alembic_version SET version_num = '0001'")
    behind = a.cli("doctor", check=False)
    assert behind.returncode == 1
    assert "run `fedi migrate`" in _lines(behind.stdout)["migrations"]


async def _execute(instance: FediInstance, sql: str, **params: object) -> None:
    engine = create_async_engine(instance.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


async def test_doctor_finds_a_missing_worker_and_damaged_keys(
    instances: list[FediInstance],
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    a.start(["--no-worker"])
    # A delivery due for ten minutes, and no worker anywhere.
    then = time.time() - 600
    await _execute(a, "INSERT INTO outbound_activities (uri, actor_id, body, created_at) "
                   "VALUES ('http://x.example/a/1', 1, '{}', :t)", t=then)
    await _execute(
        a, "INSERT INTO deliveries (activity_id, inbox_url, host, state, attempts, "
        "next_attempt_at, claimed_until, created_at) SELECT id, 'https://x.example/inbox', "
        "'x.example', 'pending', 0, :t, 0, :t FROM outbound_activities", t=then,
    )
    stalled = a.cli("doctor", check=False)
    assert_clean(stalled)
    assert stalled.returncode == 1
    worker = _lines(stalled.stdout)["worker"]
    assert worker.startswith("FAIL ") and "1 items are due" in worker
    assert "start `fedi worker`" in worker

    # A damaged private key: named by its actor, never shown.
    await _execute(a, "UPDATE actors SET private_key_pem = :pem WHERE username = 'alice'",
                   pem="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    damaged = a.cli("doctor", check=False)
    assert_clean(damaged)
    keys = _lines(damaged.stdout)["keys"]
    assert keys.startswith("FAIL ") and f"{a.base_url}/users/alice" in keys
    assert "import-keys" in keys


# -- TLS and clock, on their own ---------------------------------------------------------------

@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[int]:
    """A TLS server on loopback with a certificate no one trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # kept until the test ends: no one else gets the port
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


async def test_tls_check_fails_on_an_untrusted_certificate(self_signed_server: int) -> None:
    settings = Settings(base_url=f"https://127.0.0.1:{self_signed_server}")
    check = await doctor.check_tls(settings)
    assert check.status == "FAIL"
    assert "is not valid" in check.detail and "renew it" in check.detail


@pytest.mark.parametrize(("days", "status"), [(5, "WARN"), (90, "OK")])
async def test_tls_check_warns_before_the_certificate_expires(
    monkeypatch: pytest.MonkeyPatch, days: int, status: str
) -> None:
    expires = time.time() + days * 86400
    not_after = time.strftime("%b %d %H:%M:%S %Y GMT", time.gmtime(expires))
    monkeypatch.setattr(doctor, "_peer_certificate", lambda host, port: {"notAfter": not_after})
    check = await doctor.check_tls(Settings(base_url="https://groups.example"))
    assert check.status == status, check.detail
    assert "groups.example" in check.detail


@pytest.mark.parametrize(("http", "db", "status"), [
    (0.0, None, "OK"), (0.0, 0.4, "OK"), (45.0, None, "WARN"), (-400.0, 0.0, "FAIL"),
    (0.0, 900.0, "FAIL"), (None, None, "WARN"),
])
def test_clock_check(http: float | None, db: float | None, status: str) -> None:
    check = doctor.check_clock(http, db)
    assert check.status == status
    if status == "FAIL":
        assert "chrony" in check.detail
