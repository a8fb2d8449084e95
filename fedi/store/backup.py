"""Backups: one file with the database (and so every key), uploaded files and a manifest.

The file is a gzipped tar:

    manifest.json       what this is: fedi version, schema revision, base URL, dialect, time,
                        and the SHA-256 of each member
    database.sqlite3    SQLite: a consistent copy made with SQLite's online backup API
    database.pgdump     PostgreSQL: `pg_dump --format=custom` (restored with pg_restore)
    files/…             uploaded files: everything under FEDI_MEDIA_DIR (avatars…)

Both are taken while the server runs: SQLite's backup API copies one snapshot (WAL
included, since it reads through a connection), pg_dump one transaction. The instance and
actor keys are rows of `actors`, so they travel with the database; the file is written
0600 because of them. A restore goes into an empty database of the same dialect only, for
the same base URL: a fedi's ids are URLs under it, and remote servers know them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from urllib.request import pathname2url

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.errors import ConfigError, FediError
from fedi.store.identity import check_identity
from fedi.store.revisions import revisions

FORMAT = "fedi-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = "files"
MEMBERS = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
PG_CLIENT_HINT = (
    "install the PostgreSQL client tools (Debian/Ubuntu: apt install postgresql-client) of "
    "the server's major version or newer"
)


class BackupError(FediError):
    """A backup or restore could not be made; the reason says what to fix."""


@dataclass(frozen=True)
class Manifest:
    fedi_version: str
    schema_revision: str | None
    base_url: str
    dialect: str
    created_at: str
    database: str
    sha256: dict[str, str]
    files: list[str]

    def to_json(self) -> bytes:
        body = {"format": FORMAT, "format_version": FORMAT_VERSION, **self.__dict__}
        return json.dumps(body, indent=2, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            body = json.loads(raw)
        except ValueError:
            raise BackupError("the backup's manifest.json is not JSON; the file is damaged") \
                from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise BackupError("this file is not a fedi backup (its manifest is not fedi's)")
        if body.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"this backup has format version {body.get('format_version')!r}; this fedi "
                f"reads version {FORMAT_VERSION}: restore it with the fedi that made it"
            )
        try:
            manifest = cls(
                fedi_version=str(body["fedi_version"]),
                schema_revision=body["schema_revision"],
                base_url=str(body["base_url"]),
                dialect=str(body["dialect"]),
                created_at=str(body["created_at"]),
                database=str(body["database"]),
                sha256={str(k): str(v) for k, v in dict(body["sha256"]).items()},
                files=[str(name) for name in body["files"]],
            )
        except (KeyError, TypeError, ValueError):
            raise BackupError("the backup's manifest lacks a field; the file is damaged") \
                from None
        if manifest.dialect not in MEMBERS or manifest.database != MEMBERS[manifest.dialect]:
            raise BackupError(f"the backup names an unknown database kind {manifest.dialect!r}")
        return manifest


@dataclass(frozen=True)
class Outcome:
    manifest: Manifest
    local_actors: int
    keys: int


def fedi_version() -> str:
    try:
        return metadata.version("fedi")
    except metadata.PackageNotFoundError:
        return "unknown"


def _dialect(engine: AsyncEngine) -> str:
    name = engine.dialect.name
    if name not in MEMBERS:
        raise ConfigError(f"backups of {name} databases are not supported")
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _private_file(path: Path) -> int:
    """A new file only this user can read (the backup holds private keys)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{path} already exists; choose another file name") from None
    except OSError as exc:
        raise BackupError(f"cannot write {path} ({exc.strerror})") from None


# -- what the database holds ----------------------------------------------------------------

async def _tables(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'table' " \
                    "AND name NOT LIKE 'sqlite_%'"
        else:
            query = ("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                     "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
        return [row[0] for row in (await conn.execute(text(query))).all()]


async def _facts(engine: AsyncEngine) -> tuple[str | None, int, int]:
    """(schema revision, local actors, local actors with a private key)."""
    async with engine.connect() as conn:
        revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))) \
            .scalar_one_or_none()
        local, keys = (await conn.execute(text(
            "SELECT count(*), count(private_key_pem) FROM actors WHERE local"
        ))).one()
    return revision, int(local), int(keys)


# -- backup ---------------------------------------------------------------------------------

def _media_files(media_dir: Path | None) -> dict[str, Path]:
    """Every regular file under the media directory, by its name in the archive."""
    if media_dir is None or not media_dir.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(media_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[f"{FILES}/{path.relative_to(media_dir).as_posix()}"] = path
    return found


async def create_backup(
    engine: AsyncEngine, base_url: str, target: Path, media_dir: Path | None = None
) -> Outcome:
    """Write a backup of the database behind `engine`, and of the uploaded files under
    `media_dir`, to `target` (a new file, mode 0600)."""
    dialect = _dialect(engine)
    if not await _tables(engine):
        raise BackupError("the database is empty; there is nothing to back up")
    await check_identity(engine, base_url)  # the manifest names the database's own address
    revision, local, keys = await _facts(engine)
    if _exists(target):  # said now, not after a long dump
        raise BackupError(f"{target} already exists; choose another file name")
    with tempfile.TemporaryDirectory(prefix="fedi-backup-") as work:
        dump = Path(work) / MEMBERS[dialect]
        if dialect == "sqlite":
            revision = _sqlite_copy(_sqlite_path(engine, must_exist=True), dump)
        else:
            _pg_dump(engine.url, dump)
        media = _media_files(media_dir)
        manifest = Manifest(
            fedi_version=fedi_version(), schema_revision=revision, base_url=base_url,
            dialect=dialect, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            database=dump.name,
            sha256={dump.name: _sha256(dump), **{n: _sha256(p) for n, p in media.items()}},
            files=list(media),
        )
        _write_archive(target, manifest, dump, media)
    return Outcome(manifest, local, keys)


def _exists(path: Path) -> bool:
    return path.exists()


def _sqlite_path(engine: AsyncEngine, *, must_exist: bool) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise ConfigError("FEDI_DATABASE_URL names no SQLite file")
    path = Path(database)
    if must_exist and not path.is_file():
        raise ConfigError(f"the database file {path} does not exist; fix FEDI_DATABASE_URL")
    return path


def _sqlite_copy(source: Path, dump: Path) -> str | None:
    """Copy the live database with the online backup API; return the copy's revision."""
    # mode=rw: never creates a database that is not there.
    src = sqlite3.connect(f"file:{pathname2url(str(source.resolve()))}?mode=rw", uri=True,
                          timeout=30)
    dst = sqlite3.connect(dump)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst)  # all pages in one step: one read snapshot, however busy the server
        # The copy is one self-contained file (no -wal beside it).
        dst.execute("PRAGMA journal_mode=DELETE")
        if dst.execute("PRAGMA integrity_check").fetchone() != ("ok",):
            raise BackupError("the copy of the database failed SQLite's integrity check")
        row = dst.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the SQLite database ({exc})") from None
    finally:
        dst.close()
        src.close()
    return str(row[0]) if row else None


def _pg_env(url: URL) -> dict[str, str]:
    """libpq's environment for `url`: the password travels here, not on a command line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for name, value in (("PGHOST", url.host), ("PGPORT", url.port), ("PGUSER", url.username),
                        ("PGPASSWORD", url.password), ("PGDATABASE", url.database)):
        if value is not None:
            env[name] = str(value)
    ssl = url.query.get("ssl") or url.query.get("sslmode")
    if isinstance(ssl, str):
        env["PGSSLMODE"] = {"true": "require", "false": "disable"}.get(ssl.lower(), ssl)
    return env


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed, and fedi uses it for PostgreSQL backups; "
                          + PG_CLIENT_HINT)
    return found


def _run_pg(args: list[str], url: URL, what: str) -> None:
    try:
        done = subprocess.run(args, env=_pg_env(url), capture_output=True, text=True,  # noqa: S603
                              check=False)
    except OSError as exc:
        raise BackupError(f"cannot run {args[0]} ({exc.strerror})") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[0] if lines else f"exit status {done.returncode}"
        hint = f"; {PG_CLIENT_HINT}" if "version mismatch" in reason else ""
        raise BackupError(f"{what} failed: {reason[:300]}{hint}")


def _pg_dump(url: URL, dump: Path) -> None:
    _run_pg([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
             f"--file={dump}"], url, "pg_dump")


def _write_archive(
    target: Path, manifest: Manifest, dump: Path, media: dict[str, Path]
) -> None:
    """Write the archive beside `target`, then link it into place: the name appears only
    once the backup is complete, and never replaces another file."""
    partial = target.with_name(f".{target.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()  # left by a backup that was killed
    try:
        with os.fdopen(_private_file(partial), "wb") as raw, \
                tarfile.open(fileobj=raw, mode="w:gz") as archive:
            _add_bytes(archive, MANIFEST, manifest.to_json())
            archive.add(dump, arcname=manifest.database, filter=_plain)
            for name, path in media.items():
                archive.add(path, arcname=name, filter=_plain)
            raw.flush()
            os.fsync(raw.fileno())
        try:
            os.link(partial, target)
        except FileExistsError:
            raise BackupError(f"{target} already exists; choose another file name") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o600
    return info


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(time.time())
    archive.addfile(info, io.BytesIO(data))


# -- restore --------------------------------------------------------------------------------

@contextlib.contextmanager
def _opened(source: Path) -> Iterator[tarfile.TarFile]:
    try:
        archive = tarfile.open(source, mode="r:*")
    except FileNotFoundError:
        raise BackupError(f"{source} does not exist") from None
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{source} is not a fedi backup ({exc})") from None
    with archive:
        yield archive


def _member(archive: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    try:
        info = archive.getmember(name)
    except KeyError:
        raise BackupError(f"the backup has no {name}; the file is damaged or not a fedi "
                          "backup") from None
    if not info.isfile():
        raise BackupError(f"{name} in the backup is not a file; the file is damaged")
    return info


def read_manifest(source: Path) -> Manifest:
    with _opened(source) as archive:
        handle = archive.extractfile(_member(archive, MANIFEST))
        assert handle is not None  # a regular member
        return Manifest.from_json(handle.read(1 << 20))


def _extract(archive: tarfile.TarFile, manifest: Manifest, directory: Path) -> Path:
    """The database member, copied out by name (never extractall: no path tricks) and
    checked against the manifest's digest."""
    out = directory / manifest.database
    handle = archive.extractfile(_member(archive, manifest.database))
    assert handle is not None
    with handle, os.fdopen(_private_file(out), "wb") as copy:
        shutil.copyfileobj(handle, copy, 1 << 20)
    if _sha256(out) != manifest.sha256.get(manifest.database):
        raise BackupError("the database in the backup does not match its checksum; the file "
                          "is damaged")
    return out


def check_restorable(manifest: Manifest, base_url: str, dialect: str) -> None:
    """BackupError when this fedi, so configured, must not restore the backup."""
    if manifest.base_url != base_url:
        raise BackupError(
            f"this backup is of the instance at {manifest.base_url}, but FEDI_BASE_URL is "
            f"{base_url}; set FEDI_BASE_URL={manifest.base_url} (an instance keeps its "
            "address: remote servers know its ids)"
        )
    if manifest.dialect != dialect:
        names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
        raise BackupError(
            f"this is a {names[manifest.dialect]} backup and FEDI_DATABASE_URL is "
            f"{names.get(dialect, dialect)}; restore it into {names[manifest.dialect]} "
            "(moving between SQLite and PostgreSQL is not supported)"
        )
    if manifest.schema_revision is not None:
        if manifest.schema_revision not in revisions().known:
            raise BackupError(
                f"this backup has schema revision {manifest.schema_revision}, which this fedi "
                f"does not know (it was made by fedi {manifest.fedi_version}); restore it "
                "with that version or a newer one"
            )


def _media_target(media_dir: Path, name: str) -> Path:
    """Where an archived file goes: under the media directory, never outside it."""
    relative = PurePosixPath(name).relative_to(FILES)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise BackupError(f"the backup names a file outside the media directory: {name!r}")
    return media_dir.joinpath(*relative.parts)


def _check_media(manifest: Manifest, media_dir: Path | None) -> None:
    """Refuse, before anything is written, to overwrite a different file of the same name."""
    if not manifest.files:
        return
    if media_dir is None:
        raise BackupError("the backup holds uploaded files; set FEDI_MEDIA_DIR")
    for name in manifest.files:
        target = _media_target(media_dir, name)
        if target.exists() and _sha256(target) != manifest.sha256.get(name):
            raise BackupError(f"{target} exists with other content; restore into an empty "
                              "FEDI_MEDIA_DIR")


def _restore_media(source: Path, manifest: Manifest, media_dir: Path | None) -> None:
    if not manifest.files or media_dir is None:
        return
    with _opened(source) as archive:
        for name in manifest.files:
            target = _media_target(media_dir, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = archive.extractfile(_member(archive, name))
            assert handle is not None
            partial = target.with_name(f".{target.name}.partial")
            with handle, partial.open("wb") as copy:
                shutil.copyfileobj(handle, copy, 1 << 20)
            if _sha256(partial) != manifest.sha256.get(name):
                partial.unlink()
                raise BackupError(f"{name} in the backup does not match its checksum; the "
                                  "file is damaged")
            partial.replace(target)


async def restore_backup(
    engine: AsyncEngine, base_url: str, source: Path, media_dir: Path | None = None
) -> Outcome:
    """Restore `source` into the empty database behind `engine`, and its uploaded files
    into `media_dir`."""
    dialect = _dialect(engine)
    manifest = read_manifest(source)
    check_restorable(manifest, base_url, dialect)
    _check_media(manifest, media_dir)
    if dialect == "sqlite":
        await _restore_sqlite(engine, manifest, source)
    else:
        await _require_empty(engine)
        with _opened(source) as archive, tempfile.TemporaryDirectory(prefix="fedi-") as work:
            dump = _extract(archive, manifest, Path(work))
            # All or nothing: one transaction, stopped at the first error.
            _run_pg([_pg_tool("pg_restore"), "--no-owner", "--no-privileges",
                     "--exit-on-error", "--single-transaction",
                     f"--dbname={engine.url.database}", str(dump)],
                    engine.url, "pg_restore")
    _restore_media(source, manifest, media_dir)
    _, local, keys = await _facts(engine)
    return Outcome(manifest, local, keys)


async def _restore_sqlite(engine: AsyncEngine, manifest: Manifest, source: Path) -> None:
    target = _sqlite_path(engine, must_exist=False)
    if not target.parent.is_dir():
        raise ConfigError(f"the directory {target.parent} does not exist; create it or fix "
                          "FEDI_DATABASE_URL")
    if target.exists():
        await _require_empty(engine)
        await engine.dispose()  # no connection of ours keeps the old file open
    # Unpacked beside the target, so the final rename stays on one file system.
    with _opened(source) as archive, tempfile.TemporaryDirectory(
        prefix=".fedi-restore-", dir=target.parent
    ) as work:
        dump = _extract(archive, manifest, Path(work))
        _sqlite_replace(dump, target)


async def _require_empty(engine: AsyncEngine) -> None:
    tables = await _tables(engine)
    if tables:
        raise BackupError(
            f"the database FEDI_DATABASE_URL names is not empty ({len(tables)} tables); "
            "restore into a new, empty database (createdb, or a new SQLite file name)"
        )


def _sqlite_replace(dump: Path, target: Path) -> None:
    try:
        check = sqlite3.connect(dump)
        try:
            ok = check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            check.close()
    except sqlite3.Error as exc:
        raise BackupError(f"the database in the backup cannot be read ({exc})") from None
    if not ok:
        raise BackupError("the database in the backup fails SQLite's integrity check")
    # An empty target (and its WAL files) is replaced; the copy moves in in one rename.
    for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    os.replace(dump, target)
