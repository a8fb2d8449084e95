"""Uploaded files travel with the backup (issue 11 item 4): `fedi admin backup` takes every
file under FEDI_MEDIA_DIR, `fedi admin restore` puts them back byte for byte, and refuses,
before touching anything, to overwrite a different file of the same name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.databases import create_database, drop_database


def fedi(database_url: str, media: Path, workdir: Path, *args: str,
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDI_BASE_URL": "http://127.0.0.1:9", "FEDI_DATABASE_URL": database_url,
           "FEDI_MEDIA_DIR": str(media)}
    return subprocess.run([sys.executable, "-m", "fedi", *args], env=env, cwd=workdir,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_uploaded_files_are_backed_up_and_restored(
    database_url: str, tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    (media / "avatars").mkdir(parents=True)
    avatar = os.urandom(5000)
    (media / "avatars" / "a1b2.png").write_bytes(avatar)
    assert fedi(database_url, media, tmp_path, "migrate").returncode == 0
    assert fedi(database_url, media, tmp_path, "create-user", "alice").returncode == 0
    made = fedi(database_url, media, tmp_path, "admin", "backup", str(tmp_path / "b.tgz"))
    assert made.returncode == 0, made.stderr
    assert "1 files" in made.stdout

    other = tmp_path / "other"
    other.mkdir()
    restored_db = await create_database(other, "restored")
    try:
        clash = other / "media"
        (clash / "avatars").mkdir(parents=True)
        (clash / "avatars" / "a1b2.png").write_bytes(b"someone else's file")
        refused = fedi(restored_db, clash, other, "admin", "restore", str(tmp_path / "b.tgz"))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "exists with other content" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert (clash / "avatars" / "a1b2.png").read_bytes() == b"someone else's file"

        fresh = other / "fresh-media"
        done = fedi(restored_db, fresh, other, "admin", "restore", str(tmp_path / "b.tgz"))
        assert done.returncode == 0, done.stderr
        assert (fresh / "avatars" / "a1b2.png").read_bytes() == avatar
    finally:
        await drop_database(restored_db)
