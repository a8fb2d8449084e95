"""The security test map (docs/SECURITY-TESTS.md) is complete and names real tests.

Every item of the SECURITY checklist (1–23) and of issue 12 (items 1–9 with each case, and
the tests it requires) must have a row naming at least one test, and every named test must
exist. Tests are found by reading the test files with `ast`, not by running pytest.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAP = ROOT / "docs" / "SECURITY-TESTS.md"

# SECURITY.md items 1–23.
SECURITY_ITEMS = [f"S{n}" for n in range(1, 24)]
# Issue 12: each numbered item and each case in it, and the tests the issue requires.
ISSUE_ITEMS = [
    "I1.1",  # Announce(Update) of a local user's post
    "I1.2",  # Announce(Update) of another server's post
    "I1.3",  # Announce(Delete) of a local members-only post
    "I1.4",  # embedded third-party post not fetched from its origin
    "I2.1",  # JSON nested 10,000 levels, signed or not
    "I2.2",  # an integer with 5,000 digits
    "I2.3",  # huge integers in paths
    "I2.4",  # UTF-16 body and lone surrogate accepted, then lost
    "I3.1",  # javascript: actor url linked
    "I3.2",  # javascript://<actor host>/… post id
    "I3.3",  # Content-Security-Policy
    "I4.1",  # IPv4-mapped IPv6 spelling of a suspended host
    "I4.2",  # signed GET from a suspended domain
    "I5.1",  # another base URL on an existing database
    "I5.2",  # failure paths scanned for secrets
    "I6",  # counts that leak
    "I7.1",  # 429/503 with Retry-After past a queue depth or age
    "I7.2",  # per-remote-host rate limits
    "I7.3",  # every 202 processed
    "I7.4",  # a benchmark prints the queue's peak and the refused count
    "I8.1",  # a hanging host delays only itself
    "I8.2",  # SIGKILL of serve or worker mid-processing or mid-fan-out
    "I8.3",  # 500, 429, 410 and hanging inboxes backed off; backoff survives a restart
    "I8.4",  # PostgreSQL restart during a fan-out
    "I8.5",  # clock jump of an hour
    "I9.1",  # WebFinger for a hidden group
    "I9.2",  # idle and slow connections
    "I9.3",  # SSRF-refused deliveries fail at once
    "I9.4",  # deliveries to a gone host closed, with the reason
    "T1",  # fuzz tests (Hypothesis and atheris)
    "T2",  # this map
    "T3",  # no flaky ports
]
REQUIRED = SECURITY_ITEMS + ISSUE_ITEMS

ROW = re.compile(r"^\|\s*([A-Z]\d+(?:\.\d+)?)\s*\|(.*)\|\s*$")
TEST_ID = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def rows() -> dict[str, str]:
    """Item → its Tests cell."""
    found: dict[str, str] = {}
    for line in MAP.read_text().splitlines():
        match = ROW.match(line)
        if match:
            item, rest = match.groups()
            assert item not in found, f"{item} has two rows"
            found[item] = rest.rsplit("|", 1)[-1].strip()
    return found


def defined_tests(path: Path) -> set[str]:
    """Test functions at module level and in Test classes (as Class::name, and as name)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for inner in node.body:
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(inner.name)
    return {name for name in names if name.startswith("test")}


def test_every_item_has_a_test() -> None:
    table = rows()
    missing = [item for item in REQUIRED if item not in table]
    todo = [item for item in REQUIRED if item in table and
            ("TODO" in table[item] or not TEST_ID.search(table[item]))]
    unknown = sorted(set(table) - set(REQUIRED))
    assert not missing, f"items with no row in {MAP.name}: {missing}"
    assert not unknown, f"rows for items that are not required: {unknown}"
    assert not todo, f"items with no test yet (TODO): {todo}"


def test_every_named_test_exists() -> None:
    absent: list[str] = []
    for item, cell in rows().items():
        for path, name in TEST_ID.findall(cell):
            file = ROOT / path
            if not file.is_file() or name not in defined_tests(file):
                absent.append(f"{item}: {path}::{name}")
    assert not absent, "named tests that do not exist:\n" + "\n".join(absent)
