"""`fedi admin …`: instance federation policy, reports and the audit log from the command line.

Every command that changes something runs in one transaction and writes an audit entry in
it; bad input exits 2 with `fedi: error: <reason>` and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.actors.local import find_local
from fedi.admin import acting
from fedi.admin import reports as admin_reports
from fedi.admin.acting import Admin
from fedi.cli_accounts import build_accounts_admin_parser
from fedi.cli_admin_people import build_people_parser
from fedi.cli_common import with_services
from fedi.cli_instance import build_instance_parser
from fedi.cli_ops import build_ops_parser
from fedi.config import Settings
from fedi.delivery import queue as delivery_queue
from fedi.errors import FediError, ValidationError
from fedi.moderation import audit, blocks, imports, reports
from fedi.moderation.blocklist_csv import CsvBlock, format_blocklist, parse_blocklist
from fedi.moderation.blocks import BlockSettings
from fedi.moderation.policy import get_mode
from fedi.privacy.domains import MODES, normalise_domain
from fedi.services import Services
from fedi.store.models import Actor, now

# Imports at least this long report progress on stderr.
PROGRESS_FROM = 200

SEVERITY_HELP = (
    "suspend: no traffic in or out (the inbox refuses it before fetching any key, nothing is "
    "delivered or fetched), follows and memberships with it are severed, its queued "
    "deliveries dropped and its posts removed. silence: its content stays out of public "
    "listings; members still see it. noop: neither (to carry only --reject-media or "
    "--reject-reports, or to exempt a subdomain of a blocked domain)"
)


Work = Callable[[Services, AsyncSession, Admin, argparse.Namespace], Awaitable[None]]


def build_admin_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    admin = commands.add_parser(
        "admin", help="instance federation policy (domain blocks, allowlist), reports, audit log",
        description="Instance administration: which domains this server federates with, what "
        "happens to reports, and the audit log. Domains are normalised (IDNA, lower case, no "
        "trailing dot); a block covers all subdomains. A bare host covers it on every port; "
        "host:port covers only that port. Every change is recorded in the audit log.",
    )
    admin.add_argument("--as", dest="admin_user", default=None, metavar="USER",
                       help="the local admin user acting (recorded in the audit log; "
                       f"default {audit.CLI_ADMIN!r})")
    actions = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")

    def command(
        parent: argparse._SubParsersAction, name: str, help_text: str, work: Work,  # type: ignore[type-arg]
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(
            name, help=help_text, description=description or help_text
        )
        parser.set_defaults(run=lambda settings, args: _run(settings, args, work))
        return parser

    block = actions.add_parser(
        "domain-block", help="block, silence, list, import and export domains",
        description="Instance domain blocks (Mastodon's severities). A block covers the domain "
        "and all its subdomains; the most specific block wins.",
    )
    block_actions = block.add_subparsers(dest="block_command", required=True, metavar="ACTION")
    add = command(
        block_actions, "add", "block or silence a domain (or change its block)", _block_add,
        "Block a domain, or change how it is blocked. " + SEVERITY_HELP + ".",
    )
    add.add_argument("domain", metavar="DOMAIN", help="example.com, or host:port")
    add.add_argument("--severity", required=True, choices=("suspend", "silence", "noop"),
                     help=SEVERITY_HELP)
    add.add_argument("--reject-media", action="store_true",
                     help="refuse the domain's media files (recorded now; takes effect when "
                     "media support lands)")
    add.add_argument("--reject-reports", action="store_true",
                     help="ignore reports (Flag) sent by the domain")
    add.add_argument("--reason", default=None, help="public reason (exported with the CSV)")
    add.add_argument("--private-reason", default=None, help="reason for admins only")
    add.add_argument("--expires-in-days", type=float, default=None, metavar="N",
                     help="the block lifts itself after N days (severed follows stay severed)")
    command(block_actions, "list", "list domain blocks (domain, severity, flags, expiry, "
            "reasons)", _block_list)
    remove = command(block_actions, "remove", "lift a domain block (severed follows and "
                     "removed posts are not restored)", _block_remove)
    remove.add_argument("domain", metavar="DOMAIN")
    imp = command(
        block_actions, "import", "import a Mastodon domain-block CSV (dry run unless --apply)",
        _block_import,
        "Import Mastodon's domain-block CSV (#domain,#severity,#reject_media,#reject_reports,"
        "#public_comment,#obfuscate). Without --apply, print per domain whether it is new, "
        "changed or unchanged and how many memberships and follows a suspension would sever, "
        "and change nothing. With --apply, apply it all in one transaction and print the "
        "import id; `undo-import` reverts it in one step. A file with any bad row is refused "
        "whole, naming each bad line.",
    )
    imp.add_argument("file", metavar="FILE", help="the CSV file ('-' for standard input)")
    imp.add_argument("--apply", action="store_true", help="apply the import (default: preview)")
    command(block_actions, "export", "print all domain blocks as Mastodon CSV on stdout",
            _block_export)
    command(
        block_actions, "undo-import", "undo the last applied import in one step", _block_undo,
        "Put every domain the last applied import added or changed back as it was before "
        "(blocks changed by hand since are left alone). Severed follows are not restored.",
    )

    mode = command(
        actions, "federation-mode", "federate with everyone but blocked domains (blocklist) "
        "or only with allowed ones (allowlist)", _mode,
        "blocklist (default): federate with every domain that is not suspended. allowlist: "
        "federate only with the domains added with `fedi admin allow`; everything else is "
        "refused at the inbox, in delivery and in fetches. Existing follows are kept, so "
        "switching back restores them.",
    )
    mode.add_argument("mode", choices=MODES, metavar="MODE", help="blocklist or allowlist")
    allow = command(actions, "allow", "put a domain (and its subdomains) on the allowlist",
                    _allow)
    allow.add_argument("domain", metavar="DOMAIN")
    disallow = command(actions, "disallow", "take a domain off the allowlist", _disallow)
    disallow.add_argument("domain", metavar="DOMAIN")

    audit_parser = command(actions, "audit", "show the audit log, newest first (who, what, "
                           "target, when, why)", _audit)
    audit_parser.add_argument("--group", default=None, metavar="GROUP",
                              help="only entries about this local group")
    audit_parser.add_argument("--limit", type=int, default=200, help="how many (default 200)")

    queue = command(
        actions, "deliveries", "show the delivery queue: counts by state and the newest "
        "deliveries, each with why it is waiting or why it failed", _deliveries,
    )
    queue.add_argument("--state", choices=delivery_queue.STATES, default=None,
                       help="only deliveries in this state")
    queue.add_argument("--host", default=None, help="only deliveries to this host (host:port)")
    queue.add_argument("--limit", type=int, default=50, help="how many rows (default 50)")
    hosts = command(
        actions, "queue", "show the delivery queue by host (due, in flight, failing, paused, "
        "gone), or retry a host now", _queue,
        "Show the delivery queue: pending deliveries (due now, in flight), then one line per "
        "remote host that has pending deliveries or is failing, paused by the circuit breaker "
        "or gone, with its last error. --retry HOST makes that host's pending deliveries due "
        "now and clears its backoff, circuit breaker and gone mark (deliveries already closed "
        "stay closed); a running worker sends them within a second.",
    )
    hosts.add_argument("--retry", default=None, metavar="HOST",
                       help="retry this host now (host or host:port, as listed)")
    hosts.add_argument("--limit", type=int, default=100, help="how many hosts (default 100)")

    reports_parser = command(actions, "reports", "list open reports (with --all, resolved "
                             "ones too)", _reports)
    reports_parser.add_argument("--all", action="store_true", help="include resolved reports")
    reports_parser.add_argument("--group", default=None, metavar="GROUP",
                                help="only reports about posts in this local group")
    resolve = command(
        actions, "report-resolve", "close a report with an action and a note", _resolve,
        "Close a report. --action none: no action. ban: ban the reported account from the "
        "group the report is about (its server is told). remove: take the reported posts down "
        "here. suspend-domain: suspend the reported account's whole domain.",
    )
    resolve.add_argument("report_id", type=int, metavar="REPORT_ID")
    resolve.add_argument("--action", required=True, choices=reports.ACTIONS,
                         help="what is done about it")
    resolve.add_argument("--note", required=True, help="why (kept with the report and audited)")
    forward = command(
        actions, "report-forward", "send a report about remote content to its server",
        _forward,
        "Send the report to the reported account's server as an ActivityPub Flag from this "
        "instance's actor (the reporter is not named), to its shared inbox if it has one.",
    )
    forward.add_argument("report_id", type=int, metavar="REPORT_ID")
    build_ops_parser(actions)
    build_accounts_admin_parser(actions)
    build_instance_parser(actions)
    build_people_parser(actions)


def _run(settings: Settings, args: argparse.Namespace, work: Work) -> int:
    async def run(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            await work(services, session, await _admin(session, args.admin_user), args)
        services.domain_policy.invalidate()
        return 0

    return with_services(settings, run)


async def _admin(session: AsyncSession, name: str | None) -> Admin:
    return await acting.named(session, name)


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _own(services: Services) -> str:
    return services.settings.domain


# -- domain blocks ----------------------------------------------------------------------------

async def _block_add(services: Services, session: AsyncSession, admin: Admin,
                     args: argparse.Namespace) -> None:
    days = args.expires_in_days
    if days is not None and days <= 0:
        raise ValidationError("--expires-in-days must be more than 0")
    settings = BlockSettings(
        severity=args.severity, reject_media=args.reject_media,
        reject_reports=args.reject_reports, public_comment=args.reason,
        private_comment=args.private_reason,
        expires_at=now() + days * 86400 if days is not None else None,
    )
    result = await blocks.add_block(session, args.domain, settings, who=admin.who,
                                    own_domain=_own(services))
    verb = "blocked" if result.created else "changed the block of"
    line = f"{verb} {result.domain} ({args.severity})"
    if result.severed is not None:
        s = result.severed
        dropped = _plural(s.deliveries, "queued delivery", "queued deliveries")
        line += (f"; severed {_plural(s.memberships, 'membership')} and "
                 f"{_plural(s.follows, 'follow')}, dropped {dropped}, "
                 f"removed {_plural(s.posts, 'post')}")
    print(line)


async def _block_list(services: Services, session: AsyncSession, admin: Admin,
                      args: argparse.Namespace) -> None:
    found = await blocks.list_blocks(session)
    if not found:
        print("no domain blocks")
    for block in found:
        flags = [name.replace("_", "-") for name in ("reject_media", "reject_reports", "obfuscate")
                 if getattr(block, name)]
        expiry = f"expires {_when(block.expires_at)}" if block.expires_at else "no expiry"
        print("\t".join([
            block.domain, block.severity, ",".join(flags) or "-", expiry,
            block.public_comment or "-", block.private_comment or "-",
        ]))


async def _block_remove(services: Services, session: AsyncSession, admin: Admin,
                        args: argparse.Namespace) -> None:
    removed = await blocks.remove_block(session, args.domain, who=admin.who)
    print(f"unblocked {removed.domain}")


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "stdin"
    try:
        return Path(path).read_text(encoding="utf-8-sig"), Path(path).name
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{path} is not UTF-8 text") from None


def _progress(total: int) -> imports.Progress | None:
    if total < PROGRESS_FROM:
        return None

    def report(done: int, of: int) -> None:
        print(f"fedi: import: {done}/{of} domains", file=sys.stderr, flush=True)

    return report


async def _block_import(services: Services, session: AsyncSession, admin: Admin,
                        args: argparse.Namespace) -> None:
    text, source = _read(args.file)
    rows: list[CsvBlock] = parse_blocklist(text)
    progress = _progress(len(rows))
    if not args.apply:
        planned = await imports.preview(session, rows, own_domain=_own(services),
                                        progress=progress)
        for row in planned.rows:
            before = f"was {row.before}" if row.before else "-"
            severs = (f"severs {_plural(row.memberships, 'membership')}, "
                      f"{_plural(row.follows, 'follow')}")
            print(f"line {row.line}\t{row.change}\t{row.domain}\t{row.severity}\t{before}\t"
                  f"{severs}")
        print(f"dry run: {planned.count('new')} new, {planned.count('changed')} changed, "
              f"{planned.count('unchanged')} unchanged; suspensions would sever "
              f"{_plural(planned.memberships, 'membership')} and "
              f"{_plural(planned.follows, 'follow')}. Nothing was changed; run again with "
              "--apply to apply.")
        return
    applied = await imports.apply_import(session, rows, who=admin.who, source=source,
                                         own_domain=_own(services), progress=progress)
    planned, severed = applied.preview, applied.severed
    print(f"import {applied.record.id} applied: {planned.count('new')} new, "
          f"{planned.count('changed')} changed, {planned.count('unchanged')} unchanged; "
          f"severed {_plural(severed.memberships, 'membership')} and "
          f"{_plural(severed.follows, 'follow')}. Undo with: fedi admin domain-block undo-import")


async def _block_export(services: Services, session: AsyncSession, admin: Admin,
                        args: argparse.Namespace) -> None:
    rows = [
        CsvBlock(0, b.domain, b.severity, b.reject_media, b.reject_reports,  # type: ignore[arg-type]
                 b.public_comment, b.obfuscate)
        for b in await blocks.list_blocks(session)
    ]
    sys.stdout.write(format_blocklist(rows))


async def _block_undo(services: Services, session: AsyncSession, admin: Admin,
                      args: argparse.Namespace) -> None:
    undone = await imports.undo_import(session, who=admin.who)
    print(f"import {undone.record.id} undone: restored {_plural(len(undone.restored), 'domain')}")
    for domain in undone.skipped:
        print(f"left {domain} as it is: it was changed after the import", file=sys.stderr)


# -- federation mode and allowlist --------------------------------------------------------------

async def _mode(services: Services, session: AsyncSession, admin: Admin,
                args: argparse.Namespace) -> None:
    allowed = await blocks.set_federation_mode(session, args.mode, who=admin.who)
    print(f"federation mode: {args.mode}")
    if args.mode == "allowlist" and allowed == 0:
        print("warning: the allowlist is empty; no other server can talk to this one "
              "(fedi admin allow DOMAIN)", file=sys.stderr)


async def _allow(services: Services, session: AsyncSession, admin: Admin,
                 args: argparse.Namespace) -> None:
    created = await blocks.allow(session, args.domain, who=admin.who)
    mode = await get_mode(session)
    domain = normalise_domain(args.domain)
    print(f"{domain} {'allowed' if created else 'was already allowed'}"
          + ("" if mode == "allowlist" else " (takes effect in allowlist mode)"))


async def _disallow(services: Services, session: AsyncSession, admin: Admin,
                    args: argparse.Namespace) -> None:
    await blocks.disallow(session, args.domain, who=admin.who)
    print(f"{normalise_domain(args.domain)} removed from the allowlist")


# -- audit and reports --------------------------------------------------------------------------

async def _local_group(session: AsyncSession, name: str) -> Actor:
    group = await find_local(session, name)
    if group is None or group.type != "Group":
        raise FediError(f"there is no local group {name!r}")
    return group


async def _audit(services: Services, session: AsyncSession, admin: Admin,
                 args: argparse.Namespace) -> None:
    group_id = (await _local_group(session, args.group)).id if args.group else None
    entries = await audit.for_admins(session, group_id=group_id, limit=args.limit)
    if not entries:
        print("the audit log is empty")
    for entry in entries:
        print("\t".join([_when(entry.at), entry.who, entry.action, entry.target,
                         entry.reason or "-", entry.details]))


async def _deliveries(services: Services, session: AsyncSession, admin: Admin,
                      args: argparse.Namespace) -> None:
    if args.limit < 0:
        raise ValidationError("--limit must be 0 or more")
    view = await delivery_queue.queue_view(session, state=args.state, host=args.host,
                                           limit=args.limit)
    print("deliveries: " + ", ".join(f"{state} {view.counts.get(state, 0)}"
                                     for state in delivery_queue.STATES))
    moment = now()
    for row in view.rows:
        if row.state != "pending":
            when = "-"
        elif row.host_gone:
            when = "host gone"
        elif row.host_down_until > moment:
            when = f"host paused until {_when(row.host_down_until)}"
        elif row.next_attempt_at > moment:
            when = f"next attempt {_when(row.next_attempt_at)}"
        else:
            when = "due now"
        print("\t".join([
            f"#{row.id}", row.state, row.host, row.inbox_url, f"attempts {row.attempts}", when,
            (row.last_error or (f"HTTP {row.last_status}" if row.last_status else "-"))
            .replace("\n", " "),
        ]))


async def _queue(services: Services, session: AsyncSession, admin: Admin,
                 args: argparse.Namespace) -> None:
    moment = now()
    if args.retry is not None:
        try:
            done = await admin_reports.retry_host(session, admin, args.retry)
        except ValidationError as exc:
            raise ValidationError(f"{exc.reason} (see `fedi admin queue`)") from None
        rows = _plural(done.rows, "pending delivery", "pending deliveries")
        line = f"retrying {done.host} now: {rows} due now, backoff and circuit breaker cleared"
        if done.was_gone:
            line += "; it is no longer marked gone (deliveries closed before stay failed)"
        print(line)
        return
    if args.limit < 0:
        raise ValidationError("--limit must be 0 or more")
    health = await delivery_queue.queue_health(session, moment)
    view = await delivery_queue.queue_view(session, limit=0)
    print(f"deliveries: pending {health.pending} (due now {health.due}, in flight "
          f"{health.in_flight}), " + ", ".join(f"{state} {view.counts.get(state, 0)}"
                                               for state in delivery_queue.STATES[1:]))
    print(f"hosts: {health.hosts_failing} failing, {health.hosts_paused} paused, "
          f"{health.hosts_gone} gone")
    for host in await delivery_queue.host_summaries(session, moment, limit=args.limit):
        if host.gone:
            state = "gone"
        elif host.down_until > moment:
            state = f"paused until {_when(host.down_until)}"
        elif host.failures:
            state = "failing"
        else:
            state = "ok"
        print("\t".join([
            host.host, state, f"pending {host.pending}", f"due {host.due}",
            f"in flight {host.in_flight}", f"failures {host.failures}",
            (host.last_error or "-").replace("\n", " ")[:200],
        ]))


async def _reports(services: Services, session: AsyncSession, admin: Admin,
                   args: argparse.Namespace) -> None:
    group_id = (await _local_group(session, args.group)).id if args.group else None
    views = await reports.list_reports(session, include_resolved=args.all, group_id=group_id)
    if not views:
        print("no open reports" if not args.all else "no reports")
    for view in views:
        report = view.report
        state = report.state if report.state == "open" else f"{report.state}:{report.resolution}"
        print("\t".join([
            f"#{report.id}", state, _when(report.created_at),
            f"group {view.group.username}" if view.group else "instance",
            f"about {view.target.uri}",
            f"by {view.reporter.uri}" if view.reporter else "by -",
            " ".join(reports.post_uris(report)) or "-",
            (report.comment or "-").replace("\n", " "),
        ]))


async def _resolve(services: Services, session: AsyncSession, admin: Admin,
                   args: argparse.Namespace) -> None:
    done = await admin_reports.resolve(
        session, services.urls, admin, args.report_id, action=args.action, note=args.note,
        own_domain=_own(services))
    print(f"report {args.report_id} resolved: {done}")


async def _forward(services: Services, session: AsyncSession, admin: Admin,
                   args: argparse.Namespace) -> None:
    report = await reports.get_report(session, args.report_id)
    inbox = await reports.forward_report(session, services.urls, report, who=admin.who)
    print(f"report {report.id} forwarded to {inbox}")

