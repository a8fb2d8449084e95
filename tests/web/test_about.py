"""The About page: description, rules, contact and sign-up mode as the admin set them
(`fedi admin instance`), public figures, and the source code under the AGPL."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from importlib.resources import files
from pathlib import Path

from fedi.accounts import instance, registration
from fedi.actors.local import create_group, create_user
from fedi.groups.posting import post_to_group
from tests.support.app import InProcess, running_app


async def _world(fedi: InProcess) -> None:
    """ann, a public group with a public and a members-only thread, and a hidden group."""
    urls = fedi.services.urls
    async with fedi.services.sessionmaker() as session, session.begin():
        ann = await create_user(session, urls, "ann")
        await create_user(session, urls, "bob")
        town = await create_group(session, urls, "town", owner="ann")
        await create_group(session, urls, "secret", owner="ann", privacy="hidden")
        await session.flush()
        await post_to_group(session, urls, ann, town, "Hello all", title="Welcome")
        await post_to_group(session, urls, ann, town, "Just us", title="Members",
                            visibility="members")


async def test_about_shows_what_the_admin_wrote_escaped(database_url: str) -> None:
    async with running_app(database_url, instance_name="Hill Town") as fedi:
        empty = await fedi.http.get("/about")
        assert empty.status_code == 200
        assert "<h1>About Hill Town</h1>" in empty.text
        assert "Sign-up is closed." in empty.text
        assert "has not published a contact" in empty.text
        async with fedi.services.sessionmaker() as session, session.begin():
            await instance.update(
                session, description="Neighbours of Hill Town.\n\nBe <b>nice</b>.",
                rules=("No spam", "  ", "Tag <script>alert(1)</script> spoilers"),
                contact="admin@hill.example")
            await registration.set_mode(session, "approval")
        page = await fedi.http.get("/about")
    assert "<p>Neighbours of Hill Town.</p><p>Be &lt;b&gt;nice&lt;/b&gt;.</p>" in page.text
    assert "<li>No spam</li><li>Tag &lt;script&gt;alert(1)&lt;/script&gt; spoilers</li>" in (
        page.text)
    assert page.text.count("<li>") == 2  # the blank rule was dropped
    assert '<a href="mailto:admin@hill.example">admin@hill.example</a>' in page.text
    assert "an admin approves each account" in page.text and 'href="/signup"' in page.text


async def test_figures_count_only_what_a_visitor_may_see(database_url: str) -> None:
    async with running_app(database_url) as fedi:
        await _world(fedi)
        page = await fedi.http.get("/about")
    # Two people, one listed group (the hidden one is not counted), one public post.
    assert "<dt>People</dt><dd>2</dd>" in page.text
    assert "<dt>Groups</dt><dd>1</dd>" in page.text
    assert "<dt>Public posts</dt><dd>1</dd>" in page.text


async def test_the_source_is_linked_and_the_running_code_downloadable(
    database_url: str,
) -> None:
    async with running_app(database_url) as fedi:
        page = await fedi.http.get("/about")
        assert "AGPL-3.0-or-later" in page.text and 'rel="license"' in page.text
        assert '<a href="/source.tar.gz">download it</a>' in page.text
        archive = await fedi.http.get("/source.tar.gz")
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
        shipped = tar.extractfile("fedi/web/about.py")
        assert shipped is not None
        assert shipped.read() == (files("fedi") / "web" / "about.py").read_bytes()
    assert "fedi/templates/about.html" in names and "fedi/static/fedi.css" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    async with running_app(database_url, source_url="https://code.example/fedi") as fedi:
        named = await fedi.http.get("/about")
    assert '<a href="https://code.example/fedi">https://code.example/fedi</a>' in named.text


def _fedi(database_url: str, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDI_BASE_URL": "http://127.0.0.1:9",
           "FEDI_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "fedi", *args], env=env, cwd=workdir,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_fedi_admin_instance_sets_what_the_page_shows(
    database_url: str, tmp_path: Path,
) -> None:
    assert _fedi(database_url, tmp_path, "migrate").returncode == 0
    done = _fedi(database_url, tmp_path, "admin", "instance", "--description", "A town.",
                 "--rules", "Be kind", "No ads", "--contact", "https://hill.example/contact")
    assert done.returncode == 0, done.stderr
    assert "rules:\n  1. Be kind\n  2. No ads\n" in done.stdout
    too_long = _fedi(database_url, tmp_path, "admin", "instance", "--contact", "x" * 300,
                     "--rules")
    assert too_long.returncode == 2
    assert "contact is longer than 255" in too_long.stderr
    cleared = _fedi(database_url, tmp_path, "admin", "instance", "--rules")
    assert cleared.returncode == 0 and "rules: -" in cleared.stdout
    shown = _fedi(database_url, tmp_path, "admin", "instance")
    assert "description: A town.\ncontact: https://hill.example/contact\n" in shown.stdout
    audit = _fedi(database_url, tmp_path, "admin", "audit")
    assert audit.stdout.count("instance-about") == 2, audit.stdout
