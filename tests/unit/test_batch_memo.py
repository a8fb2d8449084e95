"""The batch memo drops an entry when a statement writes any table it was read from, and
nothing else."""

from __future__ import annotations

from fedi.store.memo import BatchMemo


def test_a_write_drops_the_entries_read_from_its_table_only() -> None:
    memo = BatchMemo()
    memo.put("members", ["m"], frozenset({"follows", "actors"}))
    memo.put("roster", ["r"], frozenset({"group_roles", "follows"}))
    memo.put("notify", (1,), frozenset({"person_relations"}))

    memo.saw("SELECT * FROM follows")
    memo.saw("SAVEPOINT sa_savepoint_1")
    assert memo.get("members") == (["m"],) and memo.get("roster") == (["r"],)

    memo.saw('INSERT INTO "actors" (uri) VALUES (?)')
    assert memo.get("members") is None
    assert memo.get("roster") == (["r"],) and memo.get("notify") == ((1,),)

    memo.saw("update follows set state = 'accepted'")
    assert memo.get("roster") is None and memo.get("notify") == ((1,),)

    memo.saw("DELETE FROM person_relations WHERE id = 1")
    assert memo.get("notify") is None


def test_an_entry_put_again_is_dropped_again() -> None:
    memo = BatchMemo()
    memo.put("members", 1, frozenset({"follows"}))
    memo.saw("INSERT INTO follows (id) VALUES (1)")
    memo.put("members", 2, frozenset({"follows"}))
    assert memo.get("members") == (2,)
    memo.saw("INSERT OR IGNORE INTO follows (id) VALUES (2)")
    assert memo.get("members") is None


def test_a_falsy_value_is_remembered_and_clear_forgets_everything() -> None:
    memo = BatchMemo()
    memo.put("nobody", (), frozenset({"follows"}))
    assert memo.get("nobody") == ((),)
    memo.clear()
    assert memo.get("nobody") is None
    memo.put("again", [], frozenset({"follows"}))
    memo.saw("INSERT INTO follows (id) VALUES (3)")
    assert memo.get("again") is None
