"""A built wheel, installed into a fresh venv, serves every page from an empty directory.

`pip install .` and a container install the wheel, not the source tree: templates, the
stylesheet and the migrations must travel inside it as package data. The test builds the
wheel from a copy of exactly what the package declares (so nothing of this checkout can
help), installs it with `--no-deps` into a new venv, and runs `fedi` there from an empty
working directory.

Dependencies: the new venv sees the test venv's site-packages through a `.pth` line. That
keeps the test offline and fast (no second download of uvicorn, SQLAlchemy …) while fedi
itself still comes only from the wheel: a path line in a `.pth` adds the directory but does
not run the `.pth` files inside it, so the checkout's editable-install hook stays inert, and
the venv's own site-packages comes first on sys.path anyway. The test asserts both.
The wheel and the venv are made in conftest.py (the guide's test uses them too).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import create_database, drop_database
from tests.support.ports import port_of, reserve_port

REPO = Path(__file__).resolve().parents[2]
HTML = {"Accept": "text/html"}
AP = {"Accept": "application/activity+json"}


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[str]:
    url = await create_database(tmp_path)
    yield url
    await drop_database(url)


class Installed:
    """The wheel's `fedi` command, run from an empty directory as an admin would."""

    def __init__(self, venv: Path, workdir: Path, database_url: str):
        self.command = venv / "bin" / "fedi"
        self.python = venv / "bin" / "python"
        self.workdir = workdir
        self.listener = reserve_port()
        self.base_url = f"http://127.0.0.1:{port_of(self.listener)}"
        # Only what the process needs: no PYTHONPATH or venv of the test run leaks in.
        self.env = {
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            "FEDI_BASE_URL": self.base_url,
            "FEDI_DATABASE_URL": database_url,
            "FEDI_ALLOW_PRIVATE_ADDRESSES": "1",
            "FEDI_INSTANCE_NAME": "wheel",
        }
        self.log = workdir.parent / f"{workdir.name}-serve.log"

    def run(self, *args: str) -> str:
        result = subprocess.run([str(self.command), *args], cwd=self.workdir, env=self.env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"fedi {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout.strip()

    def python_says(self, code: str) -> str:
        return subprocess.run([str(self.python), "-c", code], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, check=True).stdout.strip()

    @contextlib.contextmanager
    def serve(self) -> Iterator[None]:
        fd = self.listener.fileno()
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [str(self.command), "serve", "--fd", str(fd)], cwd=self.workdir, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, pass_fds=(fd,), start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, f"fedi serve exited:\n{self.log.read_text()}"
                try:
                    if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"no start:\n{self.log.read_text()}"
                time.sleep(0.1)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
            self.listener.close()


def test_wheel_serves_every_page_from_an_empty_directory(
    venv: Path, tmp_path: Path, database: str
) -> None:
    workdir = tmp_path / "empty"
    workdir.mkdir()
    fedi = Installed(venv, workdir, database)

    # fedi comes from the wheel in the new venv, not from this checkout.
    site = fedi.python_says("import sysconfig; print(sysconfig.get_paths()['purelib'])")
    location = Path(fedi.python_says("import fedi; print(fedi.__file__)"))
    assert location.is_relative_to(site), location
    assert not location.is_relative_to(REPO)
    installed = Path(site) / "fedi"
    for shipped in ("templates/base.html", "templates/invite.html", "static/fedi.css",
                    "static/live.js", "templates/_live_post.html",
                    "store/migrations/env.py", "store/migrations/script.py.mako"):
        assert (installed / shipped).is_file(), f"{shipped} missing from the wheel"
    assert list((installed / "store/migrations/versions").glob("*.py"))

    fedi.run("migrate")
    fedi.run("create-user", "alice", "--admin")
    group = fedi.run("create-group", "club", "--owner", "alice", "--title", "Wheel Club")
    post = fedi.run("post", "--as", "alice", "--group", "club", "--title", "First thread",
                    "Hello from a wheel")
    invite = fedi.run("mod", "invite", "club")
    user = f"{fedi.base_url}/users/alice"
    assert group.startswith(fedi.base_url) and post.startswith(fedi.base_url)
    assert invite.startswith(fedi.base_url)

    with fedi.serve():
        with httpx.Client(timeout=10) as http:
            pages = {
                "index": (f"{fedi.base_url}/", "Wheel Club"),
                "group": (group, "First thread"),
                "user": (user, "First thread"),  # a person's threads are listed by title
                "post": (post, "Hello from a wheel"),
                "invite": (invite, "Wheel Club"),
            }
            for kind, (url, text) in pages.items():
                page = http.get(url, headers=HTML)
                assert page.status_code == 200, (kind, page.status_code, page.text[:300])
                assert page.headers["content-type"].startswith("text/html"), kind
                assert text in page.text and page.text.rstrip().endswith("</html>"), kind
                assert 'href="/static/fedi.css"' in page.text, kind

            css = http.get(f"{fedi.base_url}/static/fedi.css")
            assert css.status_code == 200
            assert css.headers["content-type"].startswith("text/css")
            assert css.content == (REPO / "fedi/static/fedi.css").read_bytes()
            script = http.get(f"{fedi.base_url}/static/live.js")
            assert script.status_code == 200
            assert script.content == (REPO / "fedi/static/live.js").read_bytes()

            links = http.get(f"{fedi.base_url}/.well-known/nodeinfo").json()["links"]
            nodeinfo = http.get(links[0]["href"])
            assert nodeinfo.status_code == 200
            assert nodeinfo.json()["software"]["name"] == "fedi"

            domain = fedi.base_url.removeprefix("http://")
            finger = http.get(f"{fedi.base_url}/.well-known/webfinger",
                              params={"resource": f"acct:club@{domain}"})
            assert finger.status_code == 200
            assert group in {link.get("href") for link in finger.json()["links"]}

            actor = http.get(group, headers=AP)
            assert actor.status_code == 200
            assert actor.headers["content-type"].startswith("application/activity+json")
            assert actor.json()["id"] == group and actor.json()["type"] == "Group"
    assert "Traceback" not in fedi.log.read_text()
