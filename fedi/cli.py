"""The `fedi` admin command (also `python -m fedi`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from fedi.actors.local import (
    JOIN_POLICIES,
    PRIVACIES,
    REPLY_POLICIES,
    create_group,
    create_user,
    find_local,
)
from fedi.cli_accounts import build_set_password_parser
from fedi.cli_admin import build_admin_parser
from fedi.cli_circle import build_circle_parser
from fedi.cli_common import (
    create_private_sqlite_file,
    listening_socket,
    serve,
    unexpected_error,
    with_services,
)
from fedi.cli_mod import build_mod_parser
from fedi.cli_ops import build_doctor_parser, cmd_migrate_check
from fedi.config import CONFIG_ENV, Settings, load_settings, without_password
from fedi.errors import FediError
from fedi.federation.following import follow_remote, unfollow_remote
from fedi.federation.reporting import report_post
from fedi.groups.membership import join_local_group, leave_local_group
from fedi.groups.posting import delete_post, edit_post, post_to_group
from fedi.groups.threads import find_post
from fedi.logs import configure as configure_logging
from fedi.logs import logging_config, redact
from fedi.metrics import multiprocess_dir
from fedi.runtime import settle_gc
from fedi.services import Services, build_services
from fedi.store.identity import check_connection
from fedi.store.migrate import migrate
from fedi.store.models import Actor
from fedi.store.schema import schema_state

ENVIRONMENT_HELP = """\
configuration: the environment's FEDI_* variables, over the config file named by
--config FILE or FEDI_CONFIG=FILE (FILE.toml: base_url = "https://...", one key per
setting, lower case, no FEDI_; any other name: FEDI_NAME=value lines, as in
deploy/fedi.env.example). Every command, serve and worker included, reads the same.
Only serve, init and migrate create or migrate the database.

environment:
  FEDI_BASE_URL                 public URL of this instance; ids, WebFinger and signatures
                                follow it (default http://127.0.0.1:8000)
  FEDI_DATABASE_URL             sqlite+aiosqlite:///fedi.db (default) or
                                postgresql+asyncpg://user@host/dbname
  FEDI_ALLOW_PRIVATE_ADDRESSES  1 allows fetching from and delivering to loopback and private
                                addresses (local development and tests only; default 0)
  FEDI_INSTANCE_NAME            shown on pages and in NodeInfo (default fedi)
  FEDI_DELIVERY_CONCURRENCY     deliveries in flight per worker (default 256)
  FEDI_DELIVERY_PER_HOST        most deliveries in flight per remote host; each host's
                                limit adapts from 8 up to this (default 64)
  FEDI_DELIVERY_LEASE_SECONDS   how long a worker owns claimed deliveries; a crashed
                                worker's rows are retried after this (default 300)
  FEDI_MAX_INBOX_BYTES          largest accepted inbox body (default 1048576)
  FEDI_AUTHORIZED_FETCH         1 requires an HTTP signature on every ActivityPub fetch
                                (default 0: unsigned fetches see public content only)
  FEDI_INBOX_MAX_QUEUE          activities waiting to be processed before the inbox answers
                                503 with Retry-After (default 10000)
  FEDI_INBOX_MAX_AGE_SECONDS    ... or once the oldest has waited this long (default 600)
  FEDI_INBOX_HOST_RATE          activities per second one remote host may send; more is
                                answered 429 with Retry-After (default 30)
  FEDI_INBOX_HOST_BURST         bursts one host may send above its rate (default 300)
  FEDI_INBOX_BATCH              inbox activities processed in one transaction (default 100)
  FEDI_HTTP_HEADER_TIMEOUT      seconds for a request's headers to arrive (default 10)
  FEDI_HTTP_BODY_TIMEOUT        seconds for a request's body to arrive (default 30)
  FEDI_HTTP_KEEPALIVE_TIMEOUT   seconds an idle kept-alive connection stays open (default 5)
  FEDI_LIVE_MAX_STREAMS         live-update streams one server process keeps open; more are
                                answered 503 (default 1000)
  FEDI_LOG_FORMAT               text (default) or json: one JSON object per log line
  FEDI_ACCESS_LOG               1 (default) logs one line per HTTP request; 0 does not
  FEDI_METRICS_TOKEN            bearer token that opens /metrics to non-loopback clients
  FEDI_MEDIA_DIR                where uploaded avatars are stored (default media)
  FEDI_SMTP_URL                 smtp://user:pass@host:port (or smtp+starttls://, smtps://) for
                                e-mail verification and password reset by mail
  FEDI_SMTP_FROM                From address of that mail (default fedi@HOST)
  FEDI_TRUSTED_PROXIES          proxies (addresses or networks) whose X-Forwarded-For gives
                                the client address for login limits (default: none)
  FEDI_PASSWORD_TIME_COST       argon2id passes per password hash (default 3)
  FEDI_PASSWORD_MEMORY_KIB      argon2id memory per password hash (default 65536)
  FEDI_SESSION_DAYS             how long a browser session lasts (default 30)
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = "INFO" if args.command in ("serve", "worker") else "WARNING"
    configure_logging(level)
    threading.excepthook = _thread_failed
    try:
        settings = load_settings(config_file=args.config)
        if settings.log_format != "text":
            configure_logging(level, settings.log_format)
        result: int = args.run(settings, args)
        return result
    except FediError as exc:
        print(f"fedi: error: {redact(exc.reason)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, never a traceback: it could carry SQL and keys
        print(f"fedi: error: {unexpected_error(exc)}", file=sys.stderr)
        return 1


def _thread_failed(failure: threading.ExceptHookArgs) -> None:
    """A helper thread's exception (e.g. a database driver's after the loop closed): one
    log line, like every other failure, instead of a traceback on stderr."""
    if failure.exc_value is not None:
        name = failure.thread.name if failure.thread is not None else "a thread"
        logging.getLogger("fedi").error("%s failed: %s", name,
                                        unexpected_error(failure.exc_value))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedi",
        description="fedi: federated community groups over ActivityPub.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="read settings from FILE (.toml, or an env file of FEDI_NAME=value "
                        "lines); FEDI_* variables set in the environment win over it "
                        "(default: $FEDI_CONFIG, else the environment only)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="migrate the database and run the web server (and a delivery worker)",
        description="Create or migrate the database, create the instance keys on first run, "
        "and serve HTTP. By default a delivery/processing worker runs in the same process.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=None,
                       help="port to listen on (default: the port of FEDI_BASE_URL, else 8000)")
    serve.add_argument("--no-worker", action="store_true",
                       help="do not run the worker here (run `fedi worker` separately)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="web server processes sharing the port (default 1); use about one "
                       "per core, with PostgreSQL")
    serve.add_argument("--fd", type=int, default=None, metavar="FD",
                       help="serve on this inherited, bound TCP socket instead of --host/--port "
                       "(socket activation, tests)")
    serve.set_defaults(run=cmd_serve)

    worker = commands.add_parser(
        "worker", help="run the delivery and inbox-processing worker on its own",
        description="Process received activities and deliver queued ones. Run several on "
        "PostgreSQL to share the queue.",
    )
    worker.set_defaults(run=cmd_worker)

    init = commands.add_parser(
        "init", help="create and migrate the database and the instance actor; say what next",
        description="Create the database (a SQLite file is created here and nowhere else but "
        "by serve and migrate), migrate it to this fedi's schema, create the instance actor "
        "and its keys, and print what to run next. Safe to run again.",
    )
    init.set_defaults(run=cmd_init)

    mig = commands.add_parser("migrate", help="apply database migrations (Alembic) up to head")
    mig.add_argument("--check", action="store_true",
                     help="only say whether a migration is due (exit 0: none, 1: run "
                     "`fedi migrate`)")
    mig.set_defaults(run=cmd_migrate)
    build_doctor_parser(commands)

    user = commands.add_parser("create-user", help="create a local user")
    user.add_argument("name", help="user name (becomes @NAME@host)")
    user.add_argument("--admin", action="store_true", help="make the user an instance admin")
    user.add_argument("--display-name", default=None)
    user.set_defaults(run=cmd_create_user)
    build_set_password_parser(commands)

    group = commands.add_parser("create-group", help="create a local group")
    group.add_argument("name", help="group name (becomes @NAME@host)")
    group.add_argument("--owner", required=True, help="local user who owns the group")
    group.add_argument("--title", default=None, help="display title")
    group.add_argument("--summary", default=None, help="short description")
    group.add_argument("--join", choices=JOIN_POLICIES, default=None,
                       help="who may join: open (Follow is accepted at once), approval (a "
                       "moderator decides) or invite (only with an invite link); default: "
                       "open for public groups, approval for private, invite for hidden")
    group.add_argument("--privacy", choices=PRIVACIES, default="public",
                       help="public: listed, posts public by default; private: members-only "
                       "posts, join by approval or invite; hidden: private and listed nowhere")
    group.add_argument("--replies", choices=REPLY_POLICIES, default="members",
                       help="who may reply by default (posts can set their own)")
    group.add_argument("--rule", action="append", default=[], metavar="TEXT",
                       help="a group rule, shown on its profile (repeat for several)")
    group.add_argument("--question", action="append", default=[], metavar="TEXT",
                       help="a question people answer when asking to join (repeatable)")
    group.set_defaults(run=cmd_create_group)

    post = commands.add_parser(
        "post", help="post into a group as a local user; prints the new post's id (URL)",
        description="Post or reply in a group. The group may be local (NAME) or on another "
        "server (@name@host or its URL) that the user has joined.",
    )
    post.add_argument("--as", dest="author", required=True, help="local user name")
    post.add_argument("--group", required=True, help="group: local NAME, @name@host or URL")
    post.add_argument("--reply-to", default=None, metavar="POST_ID",
                      help="the id (URL) of the post this answers")
    post.add_argument("--title", default=None, help="title of a new thread")
    post.add_argument("--visibility", default=None,
                      metavar="public|unlisted|members|moderators|mentioned|circle:NAME",
                      help="who may see it (default: public, or members in private groups); "
                      "a reply is never more visible than what it answers")
    post.add_argument("--replies", default=None, choices=REPLY_POLICIES,
                      help="who may reply (default: the group's rule)")
    post.add_argument("--mention", action="append", default=[], metavar="ACTOR",
                      help="mention someone (@name@host, URL or local name); repeatable")
    post.add_argument("text", help="the post's text (Markdown; @name and @name@host in it "
                      "mention people, and are the audience of a --visibility mentioned post)")
    post.set_defaults(run=cmd_post)

    edit = commands.add_parser("edit", help="edit one of a local user's posts")
    edit.add_argument("--as", dest="author", required=True, help="local user name")
    edit.add_argument("post_id", metavar="POST_ID", help="the post's id (URL)")
    edit.add_argument("text", help="the new text (Markdown)")
    edit.set_defaults(run=cmd_edit)

    remove = commands.add_parser("delete", help="delete one of a local user's posts")
    remove.add_argument("--as", dest="author", required=True, help="local user name")
    remove.add_argument("post_id", metavar="POST_ID", help="the post's id (URL)")
    remove.set_defaults(run=cmd_delete)

    build_mod_parser(commands)

    report = commands.add_parser(
        "report", help="a local user reports a post to its group's moderators and the admins",
    )
    report.add_argument("--as", dest="reporter", required=True, help="local user name")
    report.add_argument("post_id", metavar="POST_ID", help="the reported post's id (URL)")
    report.add_argument("--comment", default=None, help="what is wrong with it")
    report.set_defaults(run=cmd_report)
    build_admin_parser(commands)
    build_circle_parser(commands)

    follow = commands.add_parser(
        "follow", help="a local user follows (joins) a remote actor or group"
    )
    follow.add_argument("--as", dest="follower", required=True, help="local user name")
    follow.add_argument("target", help="@name@host or an actor URL")
    follow.add_argument("--answers", default=None, metavar="TEXT",
                        help="answers to the group's join questions (groups that approve)")
    follow.add_argument("--invite", default=None, metavar="LINK",
                        help="invite link for an invite-only group")
    follow.set_defaults(run=cmd_follow)

    unfollow = commands.add_parser(
        "unfollow", help="a local user unfollows (leaves) a remote actor"
    )
    unfollow.add_argument("--as", dest="follower", required=True, help="local user name")
    unfollow.add_argument("target", help="@name@host or an actor URL")
    unfollow.set_defaults(run=cmd_unfollow)
    return parser


_run = with_services


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from fedi.app import RUN_WORKER_ENV, create_app
    from fedi.web.connections import protocol

    port = args.port or urlsplit(settings.base_url).port or 8000
    # Deadlines for a request to arrive and for idle connections (slowloris).
    http = {"http": protocol(settings.http_header_timeout, settings.http_body_timeout),
            "timeout_keep_alive": settings.http_keepalive_timeout}

    # uvicorn's own loggers (and its worker processes) log through fedi's redacting handler.
    log_config = logging_config("INFO", settings.log_format)

    async def prepare(services: Services) -> int:
        return 0

    if args.workers < 1:
        raise FediError("--workers must be at least 1")
    listener = listening_socket(args.host, port, args.fd)  # a port in use: say so first
    # Migrations and instance keys before the first request.
    with_services(settings, prepare, migrating=True)
    host, port = listener.getsockname()[:2]
    print(f"fedi: listening on http://{host}:{port} as {settings.base_url}"
          f"{'' if args.no_worker else ' (with worker)'}"
          f"{f', {args.workers} processes' if args.workers > 1 else ''}", flush=True)
    if args.workers > 1:
        # Each process builds its own app from the same environment.
        os.environ[RUN_WORKER_ENV] = "0" if args.no_worker else "1"
        if settings.config_file:  # --config FILE: they read the same file
            os.environ[CONFIG_ENV] = settings.config_file
        # Their metrics add up through files in a directory of their own (fedi.metrics).
        with multiprocess_dir(args.workers):
            serve(listener, "fedi.app:app_from_environment", factory=True,
                  workers=args.workers, log_level="warning", access_log=False,
                  server_header=False, proxy_headers=False, log_config=log_config, **http)
        return 0
    app = create_app(settings, run_worker=not args.no_worker, tune_gc=True)
    # No proxy-header rewriting: fedi never uses the client address, and ids follow
    # FEDI_BASE_URL, not forwarded headers.
    serve(listener, app, workers=1, log_level="warning", access_log=False, server_header=False,
          proxy_headers=False, log_config=log_config, **http)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        settle_gc()
        print("fedi: worker running", flush=True)
        await services.run_workers(stop)
        return 0

    return _run(settings, work, long_running=True)


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    where = (f"the SQLite file {Path(make_url(settings.database_url).database or '').absolute()}"
             if settings.is_sqlite else without_password(settings.database_url))

    async def work(services: Services) -> int:
        state = await schema_state(services.engine)
        fedi = f"fedi --config {settings.config_file}" if settings.config_file else "fedi"
        same = ("" if settings.config_file else
                " with the same FEDI_* settings (or put them in a file and use --config FILE)")
        print(f"fedi: {where} is ready (schema {state.current}) for {settings.base_url}, with "
              "the instance actor and its keys.\n"
              f"next: run `{fedi} serve` here; then, in another terminal{same}:\n"
              f"  {fedi} create-user NAME --admin\n"
              f"  {fedi} create-group GROUP --owner NAME")
        return 0

    return with_services(settings, work, migrating=True)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    if args.check:
        return cmd_migrate_check(settings)
    create_private_sqlite_file(settings)

    async def runner() -> int:
        services = build_services(settings)
        try:
            await check_connection(services.engine)
            before, after = await migrate(services.engine)
        finally:
            await services.close()
        print(f"fedi: database at revision {after}" + (
            f" (was {before})" if before != after else " (already up to date)"))
        return 0

    return asyncio.run(runner())


def cmd_create_user(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            actor = await create_user(
                session, services.urls, args.name, admin=args.admin,
                display_name=args.display_name,
            )
        print(actor.uri)
        return 0

    return _run(settings, work)


def cmd_create_group(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            actor = await create_group(
                session, services.urls, args.name, owner=args.owner, title=args.title,
                summary=args.summary, join_policy=args.join, rules=args.rule,
                questions=args.question, privacy=args.privacy, reply_policy=args.replies,
            )
        print(actor.uri)
        return 0

    return _run(settings, work)


async def _local(services: Services, name: str, kind: str) -> Actor:
    async with services.sessionmaker() as session:
        actor = await find_local(session, name)
    if actor is None or actor.type != kind:
        what = "user" if kind == "Person" else "group"
        raise FediError(f"there is no local {what} {name!r}")
    return actor


async def _group(services: Services, session: AsyncSession, name: str) -> Actor:
    """A local group by name, or a remote one by @name@host or URL."""
    if "@" in name or "://" in name:
        group = await _remote(services, session, name)
        if group.type != "Group":
            raise FediError(f"{name} is not a group")
        return group
    found = await find_local(session, name)
    if found is None or found.type != "Group":
        raise FediError(f"there is no local group {name!r}")
    return found


def cmd_post(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        author = await _local(services, args.author, "Person")
        async with services.sessionmaker() as session, session.begin():
            group = await _group(services, session, args.group)
            author = await session.merge(author)
            mentions = [await _any_actor(services, session, ref) for ref in args.mention]
            published = await post_to_group(
                session, services.urls, author, group, args.text, reply_to=args.reply_to,
                title=args.title, visibility=args.visibility, replies=args.replies,
                mentions=mentions, resolver=services.resolver,
            )
        print(published.post.uri)
        if published.post.held:
            print(f"held for a moderator ({published.post.held})", file=sys.stderr)
        return 0

    return _run(settings, work)


async def _any_actor(services: Services, session: AsyncSession, ref: str) -> Actor:
    if "@" not in ref and "://" not in ref:
        found = await find_local(session, ref)
        if found is None:
            raise FediError(f"there is no local user {ref!r}")
        return found
    return await _remote(services, session, ref)


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        reporter = await _local(services, args.reporter, "Person")
        async with services.sessionmaker() as session, session.begin():
            post = await find_post(session, args.post_id)
            if post is None:
                raise FediError(f"there is no post {args.post_id}")
            filed = await report_post(
                session, await session.merge(reporter), post, args.comment
            )
        print(f"report {filed.id} filed")
        return 0

    return _run(settings, work)


def cmd_edit(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        author = await _local(services, args.author, "Person")
        async with services.sessionmaker() as session, session.begin():
            post = await edit_post(
                session, services.urls, await session.merge(author), args.post_id, args.text
            )
        print(post.uri)
        return 0

    return _run(settings, work)


def cmd_delete(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        author = await _local(services, args.author, "Person")
        async with services.sessionmaker() as session, session.begin():
            post = await delete_post(
                session, services.urls, await session.merge(author), args.post_id
            )
        print(f"{post.uri} deleted")
        return 0

    return _run(settings, work)


async def _remote(
    services: Services, session: AsyncSession, target: str, invite: str | None = None
) -> Actor:
    local = await _local_by_reference(services, session, target)
    if local is not None:
        return local
    if target.startswith(("http://", "https://")):
        return await services.resolver.actor(session, target)
    if invite:
        # The invite link carries the group's URI: hidden groups do not answer WebFinger.
        return await services.resolver.resolve_invite(session, target, invite)
    return await services.resolver.resolve_handle(session, target)


async def _local_by_reference(
    services: Services, session: AsyncSession, target: str
) -> Actor | None:
    """The local actor a handle (@name@this-host) or URL of this server names, if it is one."""
    if target.startswith(("http://", "https://")):
        if not services.urls.is_local(target):
            return None
        found = (await session.execute(
            select(Actor).where(Actor.uri == target.rstrip("/"), Actor.local)
        )).scalar_one_or_none()
    else:
        name, _, host = target.lstrip("@").partition("@")
        if host.lower() != services.settings.domain:
            return None
        found = await find_local(session, name)
    if found is None:
        raise FediError(f"there is no local user or group {target!r}")
    return found


def cmd_follow(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        follower = await _local(services, args.follower, "Person")
        async with services.sessionmaker() as session, session.begin():
            target = await _remote(services, session, args.target, args.invite)
            follower = await session.merge(follower)
            if target.local and target.type == "Group":
                # A group of this server: the same membership flow, without federation.
                row = await join_local_group(
                    session, services.urls, target, follower, invite=args.invite,
                    answers=args.answers,
                )
            else:
                row = await follow_remote(
                    session, services.urls, follower, target, invite=args.invite
                )
        print(f"{target.uri} {row.state}")
        return 0

    return _run(settings, work)


def cmd_unfollow(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        follower = await _local(services, args.follower, "Person")
        async with services.sessionmaker() as session, session.begin():
            target = await _remote(services, session, args.target)
            follower = await session.merge(follower)
            if target.local and target.type == "Group":
                undone = await leave_local_group(session, target, follower)
            else:
                undone = await unfollow_remote(session, services.urls, follower, target)
        if not undone:
            raise FediError(f"{args.follower} does not follow {target.uri}")
        print(f"{target.uri} unfollowed")
        return 0

    return _run(settings, work)
