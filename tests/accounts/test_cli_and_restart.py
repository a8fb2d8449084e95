"""Against a running `fedi serve` over real HTTP: set-password from stdin (never argv), the
admin's registration commands, invites, reset links, and sessions that survive a restart."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.instance import FediInstance

pytestmark = pytest.mark.federation
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def fedi(instance: FediInstance, *args: str, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedi", *args], input=stdin if stdin is not None else "",
        env=instance.env, cwd=instance.workdir, capture_output=True, text=True, timeout=120)


def post(client: httpx.Client, page: str, action: str | None = None, **fields: str
         ) -> httpx.Response:
    shown = client.get(page)
    token = CSRF.search(shown.text)
    assert token, shown.text
    return client.post(action or page, data={"csrf": token.group(1), **fields})


def login(instance: FediInstance, name: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=instance.base_url, timeout=30)
    post(client, "/login", username=name, password=password)
    return client


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> FediInstance:
    instance = FediInstance("acc", database_url, tmp_path)
    instance.start()
    yield instance  # type: ignore[misc]
    instance.stop()


def test_set_password_from_stdin_never_argv_and_sessions_survive_restart(
    server: FediInstance,
) -> None:
    assert fedi(server, "create-user", "ann").returncode == 0
    on_argv = fedi(server, "set-password", "ann", "password-on-argv")
    assert on_argv.returncode == 2
    assert "standard input" in on_argv.stderr and "password-on-argv" not in on_argv.stderr
    short = fedi(server, "set-password", "ann", stdin="short\n")
    assert short.returncode == 2 and "too short" in short.stderr
    nobody = fedi(server, "set-password", "nobody", stdin=PASSWORD + "\n")
    assert nobody.returncode == 2 and "no local user 'nobody'" in nobody.stderr
    refused = login(server, "ann", "password-on-argv")
    assert refused.get("/settings", follow_redirects=False).status_code == 303
    refused.close()
    done = fedi(server, "set-password", "ann", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr and "argon2" not in done.stdout

    browser = login(server, "ann")
    assert browser.get("/settings").status_code == 200
    server.stop()
    server.start()
    # The session lives in the database: the restarted server still knows it.
    assert browser.get("/settings").status_code == 200
    # A new password from the CLI ends every session.
    assert fedi(server, "set-password", "ann", stdin="another long password\n").returncode == 0
    assert browser.get("/settings", follow_redirects=False).status_code == 303
    browser.close()
    assert PASSWORD not in server.log() and "another long password" not in server.log()
    assert "Traceback" not in server.log()


def test_registration_modes_queue_invites_and_reset_links(server: FediInstance) -> None:
    assert fedi(server, "admin", "registrations").stdout.strip() == "registrations: closed"
    bad = fedi(server, "admin", "registrations", "sometimes")
    assert bad.returncode == 2
    client = httpx.Client(base_url=server.base_url, timeout=30)
    closed = post(client, "/login", "/signup", username="ann", password=PASSWORD)
    assert closed.status_code == 400 and "closed" in closed.text

    assert fedi(server, "admin", "registrations", "approval").returncode == 0
    assert post(client, "/signup", username="ann", password=PASSWORD,
                reason="I run the knitting circle").status_code == 303
    assert post(client, "/signup", username="spam", password=PASSWORD,
                reason="buy now").status_code == 303
    pending = fedi(server, "admin", "registrations", "pending").stdout
    assert "ann" in pending and "I run the knitting circle" in pending and "spam" in pending
    waiting = login(server, "ann")
    assert waiting.get("/settings", follow_redirects=False).status_code == 303
    waiting.close()
    assert fedi(server, "admin", "registrations", "approve", "ann").returncode == 0
    assert fedi(server, "admin", "registrations", "reject", "spam").returncode == 0
    again = fedi(server, "admin", "registrations", "approve", "ann")
    assert again.returncode == 2 and "not waiting" in again.stderr
    assert fedi(server, "admin", "registrations", "approve").returncode == 2
    approved = login(server, "ann")
    assert approved.get("/settings").status_code == 200
    approved.close()
    assert "spam" not in fedi(server, "admin", "registrations", "pending").stdout
    audit = fedi(server, "admin", "audit").stdout
    assert "registration-approve" in audit and "registration-reject" in audit

    assert fedi(server, "admin", "registrations", "invite").returncode == 0
    made = fedi(server, "admin", "invite-user", "--max-uses", "1", "--expires-in-days", "2")
    assert made.returncode == 0
    code = re.search(r"invite code: (\S+)", made.stdout)
    assert code and f"/signup?invite={code.group(1)}" in made.stdout
    invited = httpx.Client(base_url=server.base_url, timeout=30)
    page = invited.get(f"/signup?invite={code.group(1)}")
    assert code.group(1) in page.text
    assert post(invited, "/signup", username="bob", password=PASSWORD,
                invite=code.group(1)).status_code == 303
    used = post(invited, "/signup", username="carl", password=PASSWORD, invite=code.group(1))
    assert used.status_code == 400 and "used up" in used.text

    reset = fedi(server, "admin", "reset-password", "bob")
    assert reset.returncode == 0
    link = re.search(re.escape(server.base_url) + r"(/reset/\S+)", reset.stdout)
    assert link
    assert post(invited, link.group(1), new="bob's new password").status_code == 303
    bob = login(server, "bob", "bob's new password")
    assert bob.get("/settings").status_code == 200
    bob.close()
    reused = post(invited, "/login", link.group(1), new="a third password!")
    assert reused.status_code == 400
    assert fedi(server, "admin", "reset-password", "nobody").returncode == 2
    client.close()
    invited.close()
    # Reset tokens and invite codes travel in paths: the access log names routes, not paths.
    assert link.group(1).rsplit("/", 1)[1] not in server.log()
    assert code.group(1) not in server.log()
    assert "Traceback" not in server.log()
