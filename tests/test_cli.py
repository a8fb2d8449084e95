"""The admin command line: exit codes, what it prints, and clear errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedi.cli import main
from tests.support.databases import create_database, drop_database


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = asyncio.run(create_database(tmp_path, "cli"))
    monkeypatch.setenv("FEDI_DATABASE_URL", url)
    monkeypatch.setenv("FEDI_BASE_URL", "http://fedi.test")
    monkeypatch.chdir(tmp_path)
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture
def ready(env: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The database made by `fedi init`, as an admin does before any other command."""
    assert main(["init"]) == 0
    capsys.readouterr()
    return env


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_is_idempotent(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "migrate")
    assert code == 0 and "(was None)" in out
    code, out, _ = run(capsys, "migrate")
    assert code == 0 and "already up to date" in out


def test_users_groups_and_posts(ready: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "create-user", "alice", "--admin")[1].strip() == "http://fedi.test/users/alice"
    code, out, _ = run(
        capsys, "create-group", "cats", "--owner", "alice", "--title", "Cats", "--summary", "Meow"
    )
    assert (code, out.strip()) == (0, "http://fedi.test/groups/cats")
    code, out, _ = run(capsys, "post", "--as", "alice", "--group", "cats", "hello")
    assert code == 0
    assert out.strip().startswith("http://fedi.test/posts/")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create-user", "Bad Name"], "is not a valid name"),
        (["create-user", "alice"], "already taken"),
        (["create-group", "alice", "--owner", "alice"], "already taken"),
        (["create-group", "dogs", "--owner", "nobody"], "no local user 'nobody'"),
        (["post", "--as", "nobody", "--group", "cats", "hi"], "no local user 'nobody'"),
        (["post", "--as", "alice", "--group", "nope", "hi"], "no local group 'nope'"),
        (["post", "--as", "alice", "--group", "cats", "   "], "the post is empty"),
    ],
)
def test_bad_input_exits_2_with_a_reason_and_writes_nothing(
    ready: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    run(capsys, "create-user", "alice")
    run(capsys, "create-group", "cats", "--owner", "alice")
    code, out, err = run(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("fedi: error: ") and message in err
    # Nothing half-written: the names are still free or still as before.
    code, _, _ = run(capsys, "create-user", "bob")
    assert code == 0


def test_bad_configuration_stops_with_the_fix(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDI_BASE_URL", "groups.example")
    code, _, err = run(capsys, "migrate")
    assert code == 2
    assert "FEDI_BASE_URL" in err and "http" in err


def test_help_lists_the_commands_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("serve", "worker", "migrate", "create-user", "create-group", "post",
                 "FEDI_BASE_URL", "FEDI_DATABASE_URL", "FEDI_ALLOW_PRIVATE_ADDRESSES"):
        assert word in out


def test_group_moderation_commands_are_audited(
    ready: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "create-user", "alice")
    run(capsys, "create-user", "bob")
    run(capsys, "create-group", "cats", "--owner", "alice")
    assert run(capsys, "mod", "add-moderator", "cats", "bob")[0] == 0
    code, out, _ = run(capsys, "mod", "settings", "cats", "--premoderation", "on",
                       "--report-threshold", "3")
    assert code == 0 and "premoderation on, report threshold 3" in out
    post = run(capsys, "post", "--as", "alice", "--group", "cats", "hello")[1].strip()
    assert run(capsys, "mod", "lock", "cats", post)[0] == 0
    assert run(capsys, "mod", "remove", "cats", post, "--reason", "test")[0] == 0
    code, out, _ = run(capsys, "mod", "log", "cats")
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert {who for _, who, *_ in lines} == {"admin (cli)"}
    assert sorted(action for _, _, action, *_ in lines) == sorted(
        ["group.add-moderator", "group.settings", "group.lock", "group.remove"])
    assert any(line[3] == post and line[4] == "test" for line in lines)
    # Reading the log or the queue writes nothing to it.
    run(capsys, "mod", "queue", "cats")
    assert len(run(capsys, "mod", "log", "cats")[1].strip().splitlines()) == 4
