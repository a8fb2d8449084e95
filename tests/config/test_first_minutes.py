"""The first minutes: `scripts/serve.sh` says what it does and installs only when something
changed; `fedi serve` says where it listens once the port is bound, and a port in use is one
line."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tests.config.support import clean_env
from tests.support.ports import port_of, reserve_port

ROOT = Path(__file__).parents[2]

FAKE_PYTHON = """#!/bin/sh
# Stands in for .venv/bin/python: pip is recorded (and may fail), the rest is real Python.
if [ "$1 $2 $3" = "-m pip install" ]; then
  echo "pip $*" >> "$(dirname "$0")/../pip.log"
  echo "Requirement already satisfied: something"
  echo "Collecting something-new"
  [ -f "$(dirname "$0")/../pip-fails" ] && { echo "ERROR: no network" >&2; exit 1; }
  exit 0
fi
exec PYTHON "$@"
"""


def _project(tmp_path: Path) -> Path:
    """A copy of serve.sh in a project whose .venv is a stand-in (no real install)."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "serve.sh", project / "scripts" / "serve.sh")
    (project / "pyproject.toml").write_text('[project]\nname = "fedi"\n')
    bin_dir = project / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(FAKE_PYTHON.replace("PYTHON", sys.executable))
    (bin_dir / "fedi").write_text('#!/bin/sh\necho "fake fedi $*"\n')
    for tool in ("python", "fedi"):
        (bin_dir / tool).chmod(0o755)
    return project


def _serve_sh(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(project / "scripts" / "serve.sh"), "--port", "8123"],
                          capture_output=True, text=True, timeout=60, env=clean_env())


def _pip_runs(project: Path) -> int:
    log = project / ".venv" / "pip.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_serve_sh_installs_once_and_again_only_when_pyproject_changes(tmp_path: Path) -> None:
    project = _project(tmp_path)
    first = _serve_sh(project)
    assert first.returncode == 0, first.stderr
    assert "serve.sh: installing fedi and its dependencies" in first.stderr
    assert "Collecting something-new" in first.stdout  # pip's progress is shown
    assert "Requirement already satisfied" not in first.stdout  # its noise is not
    assert "fake fedi serve --port 8123" in first.stdout
    assert _pip_runs(project) == 1

    second = _serve_sh(project)
    assert second.returncode == 0, second.stderr
    assert "skipping the install" in second.stderr
    assert "fake fedi serve --port 8123" in second.stdout
    assert _pip_runs(project) == 1

    with (project / "pyproject.toml").open("a") as changed:
        changed.write('dependencies = ["something-new"]\n')
    third = _serve_sh(project)
    assert "serve.sh: installing" in third.stderr and _pip_runs(project) == 2


def test_serve_sh_stops_on_a_failed_install_and_tries_again_next_time(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / ".venv" / "pip-fails").touch()
    failed = _serve_sh(project)
    assert failed.returncode != 0
    assert "fake fedi" not in failed.stdout  # not started on a broken install
    (project / ".venv" / "pip-fails").unlink()
    again = _serve_sh(project)
    assert "serve.sh: installing" in again.stderr and _pip_runs(project) == 2
    assert "fake fedi serve" in again.stdout


def test_serve_says_where_it_listens_once_it_answers(tmp_path: Path) -> None:
    held = reserve_port()
    port = port_of(held)
    held.close()  # free again for `fedi serve --port`
    env = clean_env(FEDI_BASE_URL=f"http://127.0.0.1:{port}",
                    FEDI_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'fedi.db'}")
    server = subprocess.Popen(
        [sys.executable, "-m", "fedi", "serve", "--port", str(port), "--no-worker"],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert server.stdout is not None
        line = next(line for line in server.stdout if line.startswith("fedi: "))
        assert line.startswith(f"fedi: listening on http://127.0.0.1:{port}"), line
        # Printed only once bound and migrated: a connection made now is accepted.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert (tmp_path / "fedi.db").is_file()
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_port_in_use_is_one_line_and_no_listening_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "fedi", "serve", "--port", str(port)], cwd=tmp_path,
            capture_output=True, text=True, timeout=60,
            env=clean_env(FEDI_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'fedi.db'}"),
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (f"fedi: error: cannot listen on 127.0.0.1:{port} (Address already "
                             "in use); another server uses it; stop it or choose another "
                             "--port\n")
    assert not (tmp_path / "fedi.db").exists()  # stopped before touching the database
