"""One configuration file, found the same way by `init`, the admin commands, `serve` (and
each of its `--workers N` processes) and `worker`, from any working directory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.config.support import clean_env, fedi
from tests.support.ports import port_of, reserve_port


def _wait_for_line(process: subprocess.Popen[str], starts: str, timeout: float = 60) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(starts):
            return line
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no line starting {starts!r}; exit {process.poll()}")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def test_every_command_reads_the_same_config_file(database_url: str,
                                                        tmp_path: Path) -> None:
    listener = reserve_port()
    base = f"http://127.0.0.1:{port_of(listener)}"
    etc, home, srv = tmp_path / "etc", tmp_path / "home", tmp_path / "srv"
    for directory in (etc, home, srv):
        directory.mkdir()
    config = etc / "fedi.toml"
    config.write_text(f'base_url = "{base}"\ndatabase_url = "{database_url}"\n'
                      'allow_private_addresses = true\ninstance_name = "From the file"\n')
    by_flag = ("--config", str(config))
    by_env = clean_env(FEDI_CONFIG=str(config))

    assert fedi(home, *by_flag, "init").returncode == 0
    made = fedi(home, "create-user", "alice", "--admin", env=by_env)
    assert made.stdout == f"{base}/users/alice\n", made.stderr
    group = fedi(srv, *by_flag, "create-group", "cats", "--owner", "alice")
    assert group.stdout == f"{base}/groups/cats\n", group.stderr

    # Two server processes: each builds its app from the same file.
    fd = listener.fileno()
    server = subprocess.Popen(  # noqa: ASYNC220 - a server the test talks to
        [sys.executable, "-m", "fedi", *by_flag, "serve", "--fd", str(fd), "--workers", "2",
         "--no-worker"], cwd=srv, env=clean_env(), pass_fds=(fd,), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        assert f"as {base}" in _wait_for_line(server, "fedi: listening on")
        names: set[str] = set()
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(20):  # new connections: both processes take some
                found = await client.get("/.well-known/webfinger", headers={"Connection": "close"},
                                         params={"resource": f"acct:cats@{base[7:]}"})
                assert found.status_code == 200, found.text
                assert found.json()["subject"] == f"acct:cats@{base[7:]}"
                info = await client.get("/nodeinfo/2.1", headers={"Connection": "close"})
                names.add(info.json()["metadata"]["nodeName"])
        assert names == {"From the file"}
    finally:
        _stop(server)
        listener.close()

    worker = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "fedi", "worker"], cwd=home, env=by_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_line(worker, "fedi: worker running")
    finally:
        _stop(worker)
    # No command made a database of its own where it ran.
    assert not list(home.glob("*.db*")) and not list(srv.glob("*.db*"))
