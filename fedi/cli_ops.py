"""Keep, restore, upgrade and check an instance: `fedi admin backup|restore|export-keys|
import-keys`, `fedi migrate --check` and `fedi doctor`.

None of these migrates or creates the instance: a backup or a check changes nothing, a
restore needs an empty database. Output names files, revisions and counts, never a key.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from fedi.cli_common import with_services
from fedi.config import Settings
from fedi.errors import ConfigError
from fedi.services import Services
from fedi.store import backup, keyfile
from fedi.store.db import make_engine, make_sessionmaker, missing_sqlite_file
from fedi.store.identity import check_connection, check_identity
from fedi.store.schema import schema_state

BACKUP_HELP = (
    "Write a consistent backup of the running instance to FILE (a new file, readable by you "
    "only): the database with every key (SQLite: online backup; PostgreSQL: pg_dump, which "
    "must be installed), uploaded files, and a manifest (fedi version, schema revision, base "
    "URL, database kind, time). The server may keep running."
)
RESTORE_HELP = (
    "Restore a backup made by `fedi admin backup` into the empty database FEDI_DATABASE_URL "
    "names (a SQLite file that does not exist yet, or a new PostgreSQL database). "
    "FEDI_BASE_URL must be the backup's; SQLite backups restore into SQLite, PostgreSQL ones "
    "into PostgreSQL (pg_restore). Stop fedi first."
)


def build_ops_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The keep-and-restore commands under `fedi admin`."""
    made = actions.add_parser("backup", help="back up the database, keys and files to FILE",
                              description=BACKUP_HELP)
    made.add_argument("file", metavar="FILE", type=Path)
    made.set_defaults(run=cmd_backup)
    restore = actions.add_parser("restore", help="restore a backup into an empty database",
                                 description=RESTORE_HELP)
    restore.add_argument("file", metavar="FILE", type=Path)
    restore.set_defaults(run=cmd_restore)
    export = actions.add_parser(
        "export-keys", help="write the instance's and local actors' keys to FILE (mode 0600)",
        description="Write the RSA and Ed25519 keys of the instance actor and every local "
        "user and group to FILE, a new file readable by you only, to move them to another "
        "host with `fedi admin import-keys`. Keep the file secret.",
    )
    export.add_argument("file", metavar="FILE", type=Path)
    export.set_defaults(run=cmd_export_keys)
    imp = actions.add_parser(
        "import-keys", help="give local actors their keys from an export-keys FILE",
        description="Replace the keys of existing local actors (matched by URI) with those in "
        "FILE. All or nothing: keys for actors that do not exist here or under another base "
        "URL, or keys that do not load, refuse the whole file. Restart fedi afterwards.",
    )
    imp.add_argument("file", metavar="FILE", type=Path)
    imp.set_defaults(run=cmd_import_keys)


def build_doctor_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor", help="check configuration, database, keys, public URL, TLS, clock, workers",
        description="Check this instance and print one line per check (OK, WARN or FAIL) "
        "with what to fix. Changes nothing. Exit status 1 if any check fails.",
    )
    doctor.set_defaults(run=cmd_doctor)


def _with_engine(
    settings: Settings, work: Callable[[AsyncEngine], Awaitable[int]], *, create: bool = False
) -> int:
    """Run `work` on the configured database, checked but not migrated (and a SQLite file
    not created unless `create`)."""
    missing = missing_sqlite_file(settings)
    if missing is not None and not create:
        raise ConfigError(f"the database file {missing} does not exist; fix FEDI_DATABASE_URL "
                          "(or run `fedi migrate` to create a new one)")

    async def runner() -> int:
        engine = make_engine(settings)
        try:
            if missing is None:  # else opening it would create it before the work does
                await check_connection(engine)
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(runner())


async def _at_head(engine: AsyncEngine) -> None:
    state = await schema_state(engine)
    if not state.at_head:
        raise ConfigError(state.advice())


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    async def work(engine: AsyncEngine) -> int:
        done = await backup.create_backup(engine, settings.base_url, args.file,
                                          Path(settings.media_dir))
        m = done.manifest
        print(f"fedi: backed up {m.base_url} ({m.dialect}, schema {m.schema_revision}, "
              f"{done.local_actors} local actors with {done.keys} keys, {len(m.files)} files) "
              f"to {args.file}; it holds private keys: keep it as safe as the server")
        return 0

    return _with_engine(settings, work)


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    # Checked before the database is touched (and before a SQLite file is created).
    manifest = backup.read_manifest(args.file)
    backup.check_restorable(manifest, settings.base_url,
                            "sqlite" if settings.is_sqlite else "postgresql")

    async def work(engine: AsyncEngine) -> int:
        done = await backup.restore_backup(engine, settings.base_url, args.file,
                                           Path(settings.media_dir))
        state = await schema_state(engine)
        then = "start fedi" if state.at_head else "run `fedi migrate`, then start fedi"
        print(f"fedi: restored {manifest.base_url} from {args.file} (made "
              f"{manifest.created_at} by fedi {manifest.fedi_version}, schema "
              f"{manifest.schema_revision}; {done.local_actors} local actors with "
              f"{done.keys} keys); {then}")
        return 0

    return _with_engine(settings, work, create=True)


def cmd_export_keys(settings: Settings, args: argparse.Namespace) -> int:
    async def work(engine: AsyncEngine) -> int:
        await _at_head(engine)
        await check_identity(engine, settings.base_url)
        async with make_sessionmaker(engine)() as session:
            count = await keyfile.export_keys(session, settings.base_url, args.file)
        print(f"fedi: wrote the keys of {count} local actors to {args.file} (mode 0600); "
              "keep it secret, and import it with `fedi admin import-keys`")
        return 0

    return _with_engine(settings, work)


def cmd_import_keys(settings: Settings, args: argparse.Namespace) -> int:
    entries = keyfile.read_key_file(args.file, settings.base_url)  # all checked up front

    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            count = await keyfile.import_keys(session, entries)
        print(f"fedi: imported the keys of {count} local actors; restart fedi so that it "
              "signs with them")
        return 0

    return with_services(settings, work)


def cmd_migrate_check(settings: Settings) -> int:
    """0 when the schema is at head, 1 (and what to run) when a migration is due."""
    async def work(engine: AsyncEngine) -> int:
        state = await schema_state(engine)
        if state.at_head:
            print(f"fedi: the database is at revision {state.head}; no migration is due")
            return 0
        if not state.known:
            raise ConfigError(state.advice())
        print(f"fedi: a migration is due: {state.advice()}")
        return 1

    missing = missing_sqlite_file(settings)
    if missing is not None:
        print(f"fedi: a migration is due: the database file {missing} does not exist yet; "
              "run `fedi migrate` to create it (or fix FEDI_DATABASE_URL)")
        return 1
    return _with_engine(settings, work)


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: its HTTP client (httpx, which pulls in click and pygments) would add
    # about 6 MB to every `fedi serve` and `fedi worker` process.
    from fedi.doctor import FAIL, run_checks

    checks = asyncio.run(run_checks(settings))
    for check in checks:
        print(check.line(), flush=True)
    failed = sum(check.status == FAIL for check in checks)
    if failed:
        print(f"fedi doctor: {failed} check{'s' if failed > 1 else ''} failed", file=sys.stderr)
    return 1 if failed else 0
