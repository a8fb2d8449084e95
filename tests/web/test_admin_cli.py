"""`fedi admin users|groups`: the CLI side of the admin pages, audited under --as USER."""

from __future__ import annotations

import pytest

from tests.test_cli import env, ready, run

__all__ = ["env", "ready"]  # fixtures


def test_users_and_groups_from_the_cli(ready: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["create-user", "root", "--admin"], ["create-user", "bob"],
                 ["create-group", "garden", "--owner", "root"]):
        assert run(capsys, *argv)[0] == 0
    code, out, _ = run(capsys, "admin", "users", "list", "--search", "bo")
    assert code == 0 and out.startswith("bob\t-\tactive")
    assert run(capsys, "admin", "--as", "root", "users", "make-admin", "bob")[0] == 0
    assert "bob\tadmin" in run(capsys, "admin", "users", "list")[1]
    code, out, _ = run(capsys, "admin", "--as", "root", "groups", "edit", "garden",
                       "--title", "Gardens", "--join", "approval", "--rules", "Be kind")
    assert code == 0 and out.strip() == "changed: title, rules, join_policy"
    assert run(capsys, "admin", "groups", "transfer", "garden", "bob")[0] == 0
    code, out, _ = run(capsys, "admin", "groups", "members", "garden")
    assert out.splitlines() == ["http://fedi.test/users/bob\towner",
                                "http://fedi.test/users/root\tmoderator"]
    assert "garden\tpublic\tapproval\towner bob" in run(capsys, "admin", "groups", "list")[1]
    audit = run(capsys, "admin", "audit")[1]
    assert "http://fedi.test/users/root\tgroup.edit" in audit
    assert "http://fedi.test/users/root\tuser.admin" in audit
    # Bad input: a clear reason, exit 2.
    code, _, err = run(capsys, "admin", "groups", "transfer", "garden", "nobody")
    assert code == 2 and "no local user 'nobody'" in err
