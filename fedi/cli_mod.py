"""`fedi mod …`: group moderation from the command line, through the same use cases and
audit rows as the moderators' pages. `--as USER` names the acting moderator."""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.actors.local import JOIN_POLICIES, PRIVACIES, find_local
from fedi.admin import group_moderation
from fedi.cli_common import with_services
from fedi.config import Settings
from fedi.content import html_to_text
from fedi.errors import FediError
from fedi.groups import group_settings, moderation, modlog
from fedi.groups.invites import create_invite, invite_url, revoke
from fedi.groups.modlog import Moderator
from fedi.groups.threads import find_post
from fedi.moderation import audit, reports
from fedi.services import Services
from fedi.store.models import Actor, Post

# A command's work returns what the audit log names as its target, or None when it records
# nothing itself (read-only commands, and those whose use case audits, like resolve-report).
Work = Callable[[Services, AsyncSession, Actor, argparse.Namespace, Moderator],
                Awaitable[str | None]]


def build_mod_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    mod = commands.add_parser(
        "mod", help="moderate a local group: join requests, invites, bans, moderators, pins",
        description="Moderate a local group. ACTOR is an actor URL, @name@host, or a local "
        "user name. Each decision is federated to the servers concerned.",
    )
    actions = mod.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(
        name: str, help_text: str, work: Work, *, actor: bool = True
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(
            name, help=help_text, description=help_text
        )
        parser.add_argument("group", metavar="GROUP", help="local group name")
        if actor:
            parser.add_argument("actor", metavar="ACTOR_ID", help="actor URL, @name@host or name")
        parser.add_argument("--as", dest="as_user", default=None, metavar="USER",
                            help="the local moderator acting (named in the audit log; must "
                            f"moderate GROUP); default {audit.CLI_ADMIN!r}")
        parser.set_defaults(run=lambda settings, args: _run(settings, args, work, actor))
        return parser

    action("pending", "list join requests waiting for a decision, with their answers",
           _pending, actor=False)
    action("approve", "accept a join request (sends Accept)", _approve)
    reject = action("reject", "refuse a join request (sends Reject)", _reject)
    reject.add_argument("--reason", default=None, help="why (kept in the moderation log)")
    invite = action("invite", "make an invite link for the group (prints it)", _invite,
                    actor=False)
    invite.add_argument("--expires-in-days", type=float, default=None,
                        help="the link stops working after this many days")
    invite.add_argument("--max-uses", type=int, default=None, help="how many people it admits")
    revoke_parser = action("revoke-invite", "stop an invite link from working", _revoke,
                           actor=False)
    revoke_parser.add_argument("token", metavar="LINK", help="the invite link or its token")
    ban = action("ban", "ban a member: removed from the group, posts no longer relayed; "
                 "their server is told (Block)", _ban)
    ban.add_argument("--reason", default=None, help="why (sent to the member's server)")
    ban.add_argument("--days", type=positive_days, default=None,
                     help="lift the ban after this many days (default: until unbanned)")
    action("unban", "lift a ban (sends Undo Block)", _unban)
    action("add-moderator", "make someone a moderator (announced with Add)", _add_moderator)
    action("remove-moderator", "remove a moderator (announced with Remove)", _remove_moderator)
    pin = action("pin", "pin a thread (listed in the group's featured collection)", _pin,
                 actor=False)
    pin.add_argument("post_id", metavar="POST_ID")
    unpin = action("unpin", "unpin a thread", _unpin, actor=False)
    unpin.add_argument("post_id", metavar="POST_ID")
    remove = action("remove", "take a post down; the removal is announced to the members' "
                    "servers and its author's", _remove, actor=False)
    remove.add_argument("post_id", metavar="POST_ID")
    remove.add_argument("--reason", default=None, help="why (sent with the removal)")
    restore = action("restore", "show a removed post again (announced as Undo of the "
                     "removal)", _restore, actor=False)
    restore.add_argument("post_id", metavar="POST_ID")
    lock = action("lock", "lock a thread: no more replies are accepted", _lock, actor=False)
    lock.add_argument("post_id", metavar="POST_ID")
    unlock = action("unlock", "unlock a thread", _unlock, actor=False)
    unlock.add_argument("post_id", metavar="POST_ID")
    block = action("block-domain", "keep a whole server out of this group (its members "
                   "leave; its posts and follows are refused)", _block_domain, actor=False)
    block.add_argument("domain", metavar="DOMAIN")
    unblock = action("unblock-domain", "let a server back into this group", _unblock_domain,
                     actor=False)
    unblock.add_argument("domain", metavar="DOMAIN")
    options = action("settings", "change group options", _settings, actor=False)
    options.add_argument("--premoderation", choices=("on", "off"), default=None,
                         help="on: members' new posts wait in the queue for a moderator")
    options.add_argument("--report-threshold", type=int, default=None, metavar="N",
                         help="hide a post once N members reported it, until a moderator "
                         "looks (0 turns it off)")
    options.add_argument("--replies", default=None,
                         choices=("anyone", "members", "mentioned", "nobody", "approval"),
                         help="who may reply to new posts by default")
    options.add_argument("--title", default=None, help="the group's display name")
    options.add_argument("--description", default=None, help="what the group is about")
    options.add_argument("--rule", action="append", default=None, metavar="TEXT",
                         help="a rule (repeat for each; replaces the rules)")
    options.add_argument("--question", action="append", default=None, metavar="TEXT",
                         help="a question for people asking to join (repeat; replaces them)")
    options.add_argument("--join", choices=JOIN_POLICIES, default=None, help="join policy")
    options.add_argument("--privacy", choices=PRIVACIES, default=None, help="group privacy")
    options.add_argument("--dislikes", choices=("on", "off"), default=None,
                         help="on: members may dislike posts")
    options.add_argument("--icon", default=None, metavar="URL",
                         help="the group's icon (an https URL; empty removes it)")
    options.add_argument("--banner", default=None, metavar="URL",
                         help="the group's banner image (an https URL; empty removes it)")
    options.add_argument("--default-visibility", default=None, metavar="VISIBILITY",
                         help="what new posts are when their author does not say: public, "
                              "unlisted or members (empty: the widest allowed)")
    action("reports", "list open reports about posts in the group", _reports, actor=False)
    resolve = action("resolve-report", "close a report: remove the reported posts, ban their "
                     "author, or dismiss it", _resolve_report, actor=False)
    resolve.add_argument("report_id", type=int, metavar="REPORT_ID")
    resolve.add_argument("--action", dest="action_taken", required=True,
                         choices=tuple(group_moderation.REPORT_ACTIONS))
    resolve.add_argument("--note", required=True, help="why (seen by moderators only)")
    action("log", "the group's moderation log (who did what, to what, when, why)", _log,
           actor=False)
    action("queue", "list posts held for a moderator (premoderation, replies needing "
           "approval)", _queue, actor=False)
    approve_post = action("approve-post", "let a held post through: it is relayed now",
                          _approve_post, actor=False)
    approve_post.add_argument("post_id", metavar="POST_ID")
    reject_post = action("reject-post", "refuse a held post (its author's server gets a "
                         "Reject)", _reject_post, actor=False)
    reject_post.add_argument("post_id", metavar="POST_ID")


def _run(settings: Settings, args: argparse.Namespace, work: Work, needs_actor: bool) -> int:
    async def run(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            group = await find_local(session, args.group)
            if group is None or group.type != "Group":
                raise FediError(f"there is no local group {args.group!r}")
            by = await _acting(session, group, args.as_user)
            target = await work(services, session, group, args, by)
            if target is not None:
                # Every decision is on the record, in the same transaction as the decision.
                await modlog.record(session, by, group, args.action, target,
                                    reason=getattr(args, "reason", None))
        return 0

    return with_services(settings, run)


async def _acting(session: AsyncSession, group: Actor, name: str | None) -> Moderator:
    if name is None:
        return modlog.OPERATOR
    person = await find_local(session, name)
    if person is None or person.type != "Person":
        raise FediError(f"there is no local user {name!r}")
    return await modlog.acting(session, group, person)


async def _actor(services: Services, session: AsyncSession, ref: str) -> Actor:
    if "@" not in ref and "://" not in ref:
        found = await find_local(session, ref)
        if found is None:
            raise FediError(f"there is no local user {ref!r}")
        return found
    if ref.startswith(("http://", "https://")):
        return await services.resolver.actor(session, ref)
    return await services.resolver.resolve_handle(session, ref)


async def _pending(services: Services, session: AsyncSession, group: Actor,
                   args: argparse.Namespace, by: Moderator) -> str | None:
    requests = await moderation.pending(session, group)
    if not requests:
        print(f"no pending requests for {group.username}")
    for request in requests:
        when = datetime.fromtimestamp(request.requested_at, UTC).strftime("%Y-%m-%d %H:%M")
        print(f"{request.actor.uri}\t{when}\t{request.answers or ''}")
    return None


async def _approve(services: Services, session: AsyncSession, group: Actor,
                   args: argparse.Namespace, by: Moderator) -> str | None:
    actor = await _actor(services, session, args.actor)
    await moderation.approve(session, services.urls, group, actor)
    print(f"{actor.uri} is now a member of {group.username}")
    return actor.uri


async def _reject(services: Services, session: AsyncSession, group: Actor,
                  args: argparse.Namespace, by: Moderator) -> str | None:
    actor = await _actor(services, session, args.actor)
    await moderation.reject(session, services.urls, group, actor)
    print(f"{actor.uri}'s request to join {group.username} was refused")
    return actor.uri


async def _invite(services: Services, session: AsyncSession, group: Actor,
                  args: argparse.Namespace, by: Moderator) -> str | None:
    days = args.expires_in_days
    invite = await create_invite(
        session, group, by.actor, expires_in=days * 86400 if days is not None else None,
        max_uses=args.max_uses,
    )
    print(invite_url(group, invite.token))
    return group.uri


async def _revoke(services: Services, session: AsyncSession, group: Actor,
                  args: argparse.Namespace, by: Moderator) -> str | None:
    token = args.token.rstrip("/").rsplit("/", 1)[-1]
    await revoke(session, group, token)
    print(f"invite {token} revoked")
    return str(token)


async def _ban(services: Services, session: AsyncSession, group: Actor,
               args: argparse.Namespace, by: Moderator) -> str | None:
    actor = await _actor(services, session, args.actor)
    until = time.time() + args.days * 86400 if args.days else None
    await moderation.ban(session, services.urls, group, actor, by=by.actor, reason=args.reason,
                         expires_at=until)
    print(f"{actor.uri} is banned from {group.username}"
          + (f" for {args.days:g} days" if args.days else ""))
    return actor.uri


async def _unban(services: Services, session: AsyncSession, group: Actor,
                 args: argparse.Namespace, by: Moderator) -> str | None:
    actor = await _actor(services, session, args.actor)
    await moderation.unban(session, services.urls, group, actor)
    print(f"{actor.uri} may join {group.username} again")
    return actor.uri


async def _add_moderator(services: Services, session: AsyncSession, group: Actor,
                         args: argparse.Namespace, by: Moderator) -> str | None:
    actor = await _actor(services, session, args.actor)
    await moderation.set_moderator(session, services.urls, group, actor, appoint=True)
    print(f"{actor.uri} moderates {group.username}")
    return actor.uri


async def _remove_moderator(services: Services, session: AsyncSession, group: Actor,
                            args: argparse.Namespace, by: Moderator) -> str | None:
    actor = await _actor(services, session, args.actor)
    await moderation.set_moderator(session, services.urls, group, actor, appoint=False)
    print(f"{actor.uri} no longer moderates {group.username}")
    return actor.uri


async def _post(session: AsyncSession, ref: str) -> Post:
    post = await find_post(session, ref)
    if post is None:
        raise FediError(f"there is no post {ref}")
    return post


async def _pin(services: Services, session: AsyncSession, group: Actor,
               args: argparse.Namespace, by: Moderator) -> str | None:
    post = await _post(session, args.post_id)
    await moderation.set_pinned(session, group, post, pinned=True, urls=services.urls)
    print(f"{post.uri} pinned")
    return post.uri


async def _unpin(services: Services, session: AsyncSession, group: Actor,
                 args: argparse.Namespace, by: Moderator) -> str | None:
    post = await _post(session, args.post_id)
    await moderation.set_pinned(session, group, post, pinned=False, urls=services.urls)
    print(f"{post.uri} unpinned")
    return post.uri


async def _queue(services: Services, session: AsyncSession, group: Actor,
                 args: argparse.Namespace, by: Moderator) -> str | None:
    held = await moderation.held_posts(session, group)
    if not held:
        print(f"nothing waits for approval in {group.username}")
    for post, author in held:
        print(f"{post.uri}\t{post.held}\t{author.uri}\t{html_to_text(post.content)[:80]}")
    return None


async def _approve_post(services: Services, session: AsyncSession, group: Actor,
                        args: argparse.Namespace, by: Moderator) -> str | None:
    post = await moderation.approve_post(session, services.urls, group, args.post_id)
    print(f"{post.uri} approved")
    return post.uri


async def _reject_post(services: Services, session: AsyncSession, group: Actor,
                       args: argparse.Namespace, by: Moderator) -> str | None:
    post = await moderation.reject_post(session, services.urls, group, args.post_id)
    print(f"{post.uri} rejected")
    return post.uri


async def _remove(services: Services, session: AsyncSession, group: Actor,
                  args: argparse.Namespace, by: Moderator) -> str | None:
    post = await moderation.remove_post(session, services.urls, group, args.post_id, args.reason)
    print(f"{post.uri} removed")
    return post.uri


async def _restore(services: Services, session: AsyncSession, group: Actor,
                   args: argparse.Namespace, by: Moderator) -> str | None:
    post = await moderation.restore_post(session, services.urls, group, args.post_id)
    print(f"{post.uri} restored")
    return post.uri


async def _lock(services: Services, session: AsyncSession, group: Actor,
                args: argparse.Namespace, by: Moderator) -> str | None:
    root = await moderation.set_locked(session, services.urls, group, args.post_id, locked=True)
    print(f"thread {root.uri} locked")
    return root.uri


async def _unlock(services: Services, session: AsyncSession, group: Actor,
                  args: argparse.Namespace, by: Moderator) -> str | None:
    root = await moderation.set_locked(session, services.urls, group, args.post_id,
                                       locked=False)
    print(f"thread {root.uri} unlocked")
    return root.uri


async def _block_domain(services: Services, session: AsyncSession, group: Actor,
                        args: argparse.Namespace, by: Moderator) -> str | None:
    domain = await moderation.block_domain(session, group, args.domain, block=True)
    print(f"{domain} is blocked from {group.username}")
    return domain


async def _unblock_domain(services: Services, session: AsyncSession, group: Actor,
                          args: argparse.Namespace, by: Moderator) -> str | None:
    domain = await moderation.block_domain(session, group, args.domain, block=False)
    print(f"{domain} may take part in {group.username} again")
    return domain


def _switch(value: str | None) -> bool | None:
    return None if value is None else value == "on"


async def _settings(services: Services, session: AsyncSession, group: Actor,
                    args: argparse.Namespace, by: Moderator) -> str | None:
    config = await group_settings.update(session, services.urls, group, group_settings.Changes(
        title=args.title, summary=args.description, rules=args.rule, questions=args.question,
        join_policy=args.join, privacy=args.privacy, reply_policy=args.replies,
        premoderation=_switch(args.premoderation), report_threshold=args.report_threshold,
        allow_dislikes=_switch(args.dislikes), icon=args.icon, banner=args.banner,
        default_visibility=args.default_visibility,
    ))
    print(f"{group.username}: {config.privacy}, join {config.join_policy}, premoderation "
          f"{'on' if config.premoderation else 'off'}, report threshold "
          f"{config.report_threshold or 'off'}, replies {config.reply_policy}, dislikes "
          f"{'on' if config.allow_dislikes else 'off'}")
    return group.uri


async def _reports(services: Services, session: AsyncSession, group: Actor,
                   args: argparse.Namespace, by: Moderator) -> str | None:
    views = await reports.list_reports(session, group_id=group.id)
    if not views:
        print(f"no open reports about {group.username}")
    for view in views:
        print("\t".join([
            f"#{view.report.id}", f"about {view.target.uri}",
            f"by {view.reporter.uri}" if view.reporter else "by -",
            " ".join(reports.post_uris(view.report)) or "-",
            (view.report.comment or "-").replace("\n", " "),
        ]))
    return None


async def _resolve_report(services: Services, session: AsyncSession, group: Actor,
                          args: argparse.Namespace, by: Moderator) -> str | None:
    report = await group_moderation.resolve_report(
        session, services.urls, group, args.report_id, action=args.action_taken,
        note=args.note, by=by,
    )
    print(f"report {report.id} resolved: {args.action_taken}")
    return None  # resolve_report audits the resolution and what it did


async def _log(services: Services, session: AsyncSession, group: Actor,
               args: argparse.Namespace, by: Moderator) -> str | None:
    for entry in await audit.for_group(session, group.id):
        when = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{when}\t{entry.who}\t{entry.action}\t{entry.target}\t{entry.reason or ''}")
    return None


def positive_days(raw: str) -> float:
    """--days: a positive number of days (fractions allowed)."""
    try:
        days = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of days") from None
    if not 0 < days <= 36500:
        raise argparse.ArgumentTypeError("give a number of days between 0 and 36500")
    return days

