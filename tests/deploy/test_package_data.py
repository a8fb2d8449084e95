"""Every template the code names is package data (found through importlib.resources)."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import fedi

PACKAGE = Path(fedi.__file__).parent
NAMED = re.compile(r"""["']([\w-]+\.html)["']""")


def test_every_named_template_ships_inside_the_package() -> None:
    sources = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.html")]
    named = {name for source in sources for name in NAMED.findall(source.read_text())}
    assert {"base.html", "invite.html"} <= named, "the scan finds no template names"
    shipped = {entry.name for entry in (files("fedi") / "templates").iterdir()}
    assert named <= shipped, f"templates outside fedi/templates/: {sorted(named - shipped)}"
    # Nothing reads a templates/ directory next to the package any more.
    assert not (PACKAGE.parent / "templates").exists()
