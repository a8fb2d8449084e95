"""What `fedi serve` and `fedi worker` load (issue 13 item 9: serve + worker within 200 MB).

Each module here costs every long-running process memory for work it does not do: Alembic
(with Mako and Pygments) only runs migrations, httpx (with click) only `fedi doctor`, and
asyncpg only talks to PostgreSQL; the worker serves no web pages. Each is imported where its
work happens."""

from __future__ import annotations

import subprocess
import sys

NOT_IN_EITHER = ("alembic", "mako", "pygments", "httpx", "asyncpg")
NOT_IN_THE_WORKER = (*NOT_IN_EITHER, "click", "starlette", "jinja2", "uvicorn")


def loaded_by(*modules: str) -> set[str]:
    script = (f"import sys, {', '.join(modules)}\n"
              "print(' '.join({m.split('.')[0] for m in sys.modules}))")
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True).stdout.split()
    assert "fedi" in found and "sqlalchemy" in found, found
    return set(found)


def test_the_server_leaves_out_what_it_does_not_use() -> None:
    assert loaded_by("fedi.cli", "fedi.app").intersection(NOT_IN_EITHER) == set()


def test_the_worker_leaves_out_what_it_does_not_use() -> None:
    # `fedi worker` imports the CLI and the services; fedi.app only for `fedi serve`.
    assert loaded_by("fedi.cli", "fedi.services").intersection(NOT_IN_THE_WORKER) == set()
