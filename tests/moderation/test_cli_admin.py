"""`fedi admin`: every command explains itself, every change is audited, bad input exits 2
with a reason and changes nothing, and the CSV round-trips."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fedi.cli import main
from tests.support.databases import create_database, drop_database

ROOT = "http://fedi.test/users/root"


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[str]:
    url = asyncio.run(create_database(tmp_path, "admin"))
    monkeypatch.setenv("FEDI_DATABASE_URL", url)
    monkeypatch.setenv("FEDI_BASE_URL", "http://fedi.test")
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0  # as an admin does before any other command
    capsys.readouterr()
    yield url
    asyncio.run(drop_database(url))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return out


def sql(url: str, statement: str, **params: Any) -> list[Any]:
    async def go() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(go())


def add_reports(url: str) -> None:
    """A remote account on spam.example with two open reports about it."""
    sql(url, "INSERT INTO actors (uri, type, local, username, domain, inbox, shared_inbox, "
        "manually_approves_followers, fetched_at, key_refreshed_at, created_at) VALUES "
        "('https://spam.example/users/x', 'Person', false, 'x', 'spam.example', "
        "'https://spam.example/users/x/inbox', 'https://spam.example/inbox', false, 0, 0, 0)")
    target = sql(url, "SELECT id FROM actors WHERE username = 'x'")[0][0]
    for comment in ("first", "second"):
        sql(url, "INSERT INTO reports (target_id, post_uris, comment, state, created_at) "
            "VALUES (:target, '[]', :comment, 'open', 0)", target=target, comment=comment)


def test_every_admin_command_that_changes_something_is_audited(
    env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ok(capsys, "create-user", "root", "--admin")
    add_reports(env)
    csv_file = tmp_path / "blocks.csv"
    csv_file.write_text("#domain,#severity\nimported.example,silence\n")
    admin = ("admin", "--as", "root")
    ok(capsys, *admin, "report-forward", "1")
    ok(capsys, *admin, "domain-block", "add", "spam.example", "--severity", "suspend",
       "--reject-media", "--reason", "spam", "--private-reason", "seen in reports",
       "--expires-in-days", "30")
    ok(capsys, *admin, "domain-block", "add", "loud.example", "--severity", "silence")
    ok(capsys, *admin, "domain-block", "remove", "loud.example")
    assert "import 1 applied" in ok(capsys, *admin, "domain-block", "import", str(csv_file),
                                    "--apply")
    ok(capsys, *admin, "domain-block", "undo-import")
    ok(capsys, *admin, "federation-mode", "allowlist")
    ok(capsys, *admin, "allow", "friends.example")
    ok(capsys, *admin, "disallow", "friends.example")
    ok(capsys, *admin, "federation-mode", "blocklist")
    ok(capsys, *admin, "report-resolve", "1", "--action", "none", "--note", "forwarded")
    ok(capsys, "admin", "report-resolve", "2", "--action", "none", "--note", "duplicate")

    entries = sql(env, "SELECT who, action, target, reason, at, details FROM audit_log ORDER BY id")
    assert [(who, action, target) for who, action, target, *_ in entries] == [
        (ROOT, "report.forward", "report 1"),
        (ROOT, "domain_block.add", "spam.example"),
        (ROOT, "domain_block.add", "loud.example"),
        (ROOT, "domain_block.remove", "loud.example"),
        (ROOT, "domain_block.import", "import 1"),
        (ROOT, "domain_block.undo_import", "import 1"),
        (ROOT, "federation.mode", "allowlist"),
        (ROOT, "domain_allow.add", "friends.example"),
        (ROOT, "domain_allow.remove", "friends.example"),
        (ROOT, "federation.mode", "blocklist"),
        (ROOT, "report.resolve", "report 1"),
        ("admin (cli)", "report.resolve", "report 2"),
    ]
    assert entries[1][3] == "seen in reports"  # why
    assert all(at > 0 for *_, at, _ in entries)  # when
    assert json.loads(entries[1][5])["severity"] == "suspend"  # what exactly
    assert entries[10][3] == "forwarded"

    listed = ok(capsys, "admin", "audit")
    assert listed.splitlines()[0].split("\t")[2] == "report.resolve"  # newest first
    assert "domain_block.add\tspam.example\tseen in reports" in listed


def test_a_non_admin_cannot_act(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "create-user", "bob")
    code, out, err = run(capsys, "admin", "--as", "bob", "domain-block", "add", "x.example",
                         "--severity", "silence")
    assert code == 2 and out == "" and "bob is not an instance admin" in err
    assert sql(env, "SELECT count(*) FROM domain_blocks")[0][0] == 0


BAD_CSV = (
    "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n"
    "good.example,suspend,false,false,,false\n"
    "also-good.example,silence,false,false,,false\n"
    "worse.example,banish,false,false,,false\n"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["domain-block", "add", "not a domain", "--severity", "suspend"],
         "is not a valid domain"),
        (["domain-block", "add", "fedi.test", "--severity", "suspend"], "own domain"),
        (["domain-block", "add", "x.example", "--severity", "suspend", "--expires-in-days", "0"],
         "--expires-in-days must be more than 0"),
        (["domain-block", "remove", "never.example"], "never.example is not blocked"),
        (["domain-block", "import", "bad.csv"], "line 4: severity must be suspend, silence or "
                                                "noop, not 'banish'"),
        (["domain-block", "import", "bad.csv", "--apply"], "line 4"),
        (["domain-block", "import", "missing.csv"], "cannot read missing.csv"),
        (["domain-block", "undo-import"], "there is no applied blocklist import to undo"),
        (["disallow", "never.example"], "never.example is not on the allowlist"),
        (["report-resolve", "99", "--action", "none", "--note", "x"], "there is no report 99"),
        (["report-resolve", "1", "--action", "ban", "--note", "x"],
         "not about a post in a local group"),
        (["report-forward", "99"], "there is no report 99"),
        (["audit", "--group", "nope"], "there is no local group 'nope'"),
    ],
)
def test_bad_input_exits_2_with_a_reason_and_changes_nothing(
    env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "bad.csv").write_text(BAD_CSV)
    ok(capsys, "admin", "domain-block", "add", "kept.example", "--severity", "silence")
    add_reports(env)
    before = ok(capsys, "admin", "domain-block", "export")
    audited = sql(env, "SELECT count(*) FROM audit_log")[0][0]
    code, out, err = run(capsys, "admin", *args)
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("fedi: error: ") and message in err
    assert ok(capsys, "admin", "domain-block", "export") == before
    assert sql(env, "SELECT count(*) FROM audit_log")[0][0] == audited
    assert sql(env, "SELECT count(*) FROM blocklist_imports")[0][0] == 0


def test_an_export_round_trips_through_an_import_preview(
    env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ok(capsys, "admin", "domain-block", "add", "Bücher.Example.", "--severity", "suspend",
       "--reason", "spam, and worse", "--reject-media", "--reject-reports")
    ok(capsys, "admin", "domain-block", "add", "loud.example", "--severity", "silence")
    ok(capsys, "admin", "domain-block", "add", "media.example", "--severity", "noop",
       "--reject-media")
    exported = ok(capsys, "admin", "domain-block", "export")
    assert exported == (
        "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n"
        "loud.example,silence,false,false,,false\n"
        "media.example,noop,true,false,,false\n"
        'xn--bcher-kva.example,suspend,true,true,"spam, and worse",false\n'
    )
    (tmp_path / "export.csv").write_text(exported)
    preview = ok(capsys, "admin", "domain-block", "import", "export.csv")
    rows = [line.split("\t") for line in preview.splitlines() if line.startswith("line ")]
    assert [row[1] for row in rows] == ["unchanged"] * 3
    assert "0 new, 0 changed, 3 unchanged" in preview
    assert "Nothing was changed" in preview


def test_a_long_import_shows_progress_and_prints_its_id(
    env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "long.csv").write_text("".join(f"d{i}.example\n" for i in range(250)))
    code, out, err = run(capsys, "admin", "domain-block", "import", "long.csv")
    assert code == 0 and "250 new" in out
    assert sql(env, "SELECT count(*) FROM domain_blocks")[0][0] == 0  # a preview changes nothing
    code, out, err = run(capsys, "admin", "domain-block", "import", "long.csv", "--apply")
    assert code == 0
    assert out.startswith("import 1 applied: 250 new")
    assert "fedi: import: 100/250 domains" in err and "fedi: import: 250/250 domains" in err
    assert sql(env, "SELECT count(*) FROM domain_blocks WHERE import_id = 1")[0][0] == 250
    assert "import 1 undone: restored 250 domains" in ok(
        capsys, "admin", "domain-block", "undo-import")
    assert sql(env, "SELECT count(*) FROM domain_blocks")[0][0] == 0


@pytest.mark.parametrize(
    "command",
    [
        ["domain-block", "add"], ["domain-block", "list"], ["domain-block", "remove"],
        ["domain-block", "import"], ["domain-block", "export"], ["domain-block", "undo-import"],
        ["federation-mode"], ["allow"], ["disallow"], ["audit"], ["reports"],
        ["report-resolve"], ["report-forward"],
    ],
)
def test_every_command_explains_itself(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["admin", *command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fedi admin {' '.join(command)}")
    description = out.split("\n\n")[1]
    assert len(description.split()) >= 5


def test_reports_are_listed_for_admins(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "migrate")
    add_reports(env)
    listed = ok(capsys, "admin", "reports").splitlines()
    assert [line.split("\t")[0] for line in listed] == ["#1", "#2"]
    assert "about https://spam.example/users/x" in listed[0] and listed[0].endswith("first")
    ok(capsys, "admin", "report-resolve", "1", "--action", "suspend-domain", "--note", "bots")
    assert [line.split("\t")[0] for line in ok(capsys, "admin", "reports").splitlines()] == ["#2"]
    everything = ok(capsys, "admin", "reports", "--all")
    assert "resolved:suspend-domain" in everything
    blocks = ok(capsys, "admin", "domain-block", "list")
    assert blocks.startswith("spam.example\tsuspend\t")
    assert "report 1: bots" in blocks
    # Nothing goes to a suspended domain, reports included.
    code, _, err = run(capsys, "admin", "report-forward", "2")
    assert code == 2 and "spam.example is suspended" in err
