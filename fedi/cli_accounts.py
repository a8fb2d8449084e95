"""Account commands: `fedi set-password NAME`, and under `fedi admin`: `registrations`,
`password-grant`, `invite-user`, `reset-password NAME`.

Passwords come from standard input or a prompt, never from the command line (argv is
visible to every user of the machine in `ps` and lands in shell history). Nothing here
prints a password or a hash; a reset link or invite code is printed once, to the admin.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.accounts import login, oauth, recovery, registration
from fedi.accounts.passwords import Hasher
from fedi.admin import acting
from fedi.admin import instance as admin_instance
from fedi.cli_common import with_services
from fedi.config import Settings
from fedi.errors import ValidationError
from fedi.moderation import audit
from fedi.services import Services

REGISTRATIONS_HELP = (
    "Show how people sign up (no argument), set it (open: anyone; approval: an admin approves "
    "each application, whose reason it shows; invite: an invite code from `fedi admin "
    "invite-user` is needed; closed: nobody, the default), or work the approval queue: "
    "pending lists applications, approve NAME lets one log in, reject NAME removes it."
)
RESET_HELP = (
    "Print a one-time link (valid for one hour) that lets the user set a new password; give "
    "it to them privately. Their sessions end when they use it. The admin never sees or "
    "chooses the password."
)


def hasher(settings: Settings) -> Hasher:
    return Hasher(time_cost=settings.password_time_cost,
                  memory_kib=settings.password_memory_kib)


def build_set_password_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "set-password", help="set a local user's password (read from stdin or a prompt)",
        description="Set the password a local user logs in with on the web. It is read from "
        "standard input when that is not a terminal (one line), else asked for twice; never "
        "from the command line. Every session of the user ends.",
    )
    parser.add_argument("name", metavar="NAME", help="the local user")
    # Caught here rather than by argparse, whose error would echo the password back.
    parser.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(run=cmd_set_password)


def read_password() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise ValidationError("no password on standard input: pipe one line to it")
        return password.removesuffix("\r")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Again: "):
        raise ValidationError("the two passwords differ; nothing was changed")
    return first


def cmd_set_password(settings: Settings, args: argparse.Namespace) -> int:
    if args.extra:
        raise ValidationError(
            "set-password takes only the user name: a password on the command line is seen "
            "by every user of this machine; pipe it on standard input or type it at the prompt"
        )
    password = read_password()

    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            actor = await login.local_user(session, args.name)
            await login.set_password(session, hasher(settings), actor, password)
        print(f"fedi: password set for {actor.username}; their sessions were ended")
        return 0

    return with_services(settings, work)


def build_accounts_admin_parser(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    regs = actions.add_parser("registrations", help="how people sign up; the approval queue",
                              description=REGISTRATIONS_HELP)
    regs.add_argument("action", nargs="?", metavar="MODE|pending|approve|reject",
                      choices=(*registration.MODES, "pending", "approve", "reject"))
    regs.add_argument("name", nargs="?", metavar="NAME", help="for approve and reject")
    regs.set_defaults(run=cmd_registrations)
    grant = actions.add_parser(
        "password-grant", help="whether apps may sign in with a password (OAuth)",
        description="Show (no argument) or set whether Mastodon apps and scripts may trade "
        "a user name and password for an API token (the OAuth password grant; on unless "
        "turned off). Off: apps sign in through the browser's consent page only.")
    grant.add_argument("state", nargs="?", choices=("on", "off"), metavar="on|off")
    grant.set_defaults(run=cmd_password_grant)
    invite = actions.add_parser(
        "invite-user", help="make an instance invite code for invite-only sign-up",
        description="Print a new invite code and sign-up link (shown once: only its hash is "
        "kept). Without --max-uses it works any number of times until it expires.",
    )
    invite.add_argument("--max-uses", type=int, default=None, metavar="N")
    invite.add_argument("--expires-in-days", type=float, default=None, metavar="D")
    invite.set_defaults(run=cmd_invite_user)
    reset = actions.add_parser("reset-password", help="print a one-time password reset link",
                               description=RESET_HELP)
    reset.add_argument("name", metavar="NAME")
    reset.set_defaults(run=cmd_reset_password)


def _who(args: argparse.Namespace) -> str:
    return getattr(args, "admin_user", None) or audit.CLI_ADMIN


def cmd_registrations(settings: Settings, args: argparse.Namespace) -> int:
    action, name = args.action, args.name
    if action in ("approve", "reject") and not name:
        raise ValidationError(f"say whom to {action}: fedi admin registrations {action} NAME")
    if action not in ("approve", "reject") and name:
        raise ValidationError(f"a name goes only with approve or reject, not with {action}")

    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            await _registrations(session, args, action, name)
        return 0

    return with_services(settings, work)


async def _registrations(
    session: AsyncSession, args: argparse.Namespace, action: str | None, name: str | None
) -> None:
    if action is None:
        print(f"registrations: {await registration.get_mode(session)}")
    elif action in registration.MODES:
        await registration.set_mode(session, action)
        await audit.record(session, _who(args), "registrations", action)
        print(f"registrations: {action}")
    elif action == "pending":
        waiting = await registration.pending(session)
        for actor, account in waiting:
            reason = " ".join((account.approval_reason or "").split())
            print(f"{actor.username}\t{account.email or '-'}\t{reason}")
        if not waiting:
            print("no applications waiting")
    elif action == "approve" and name:
        actor = await registration.approve(session, name)
        await audit.record(session, _who(args), "registration-approve", actor.uri)
        print(f"approved {name}: they can log in now")
    elif action == "reject" and name:
        await registration.reject(session, name)
        await audit.record(session, _who(args), "registration-reject", name)
        print(f"rejected {name}: the application is removed")


def cmd_password_grant(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            if args.state is not None:
                await admin_instance.set_password_grant(
                    session, await acting.named(session, getattr(args, "admin_user", None)),
                    args.state == "on")
            enabled = await oauth.password_grant_enabled(session)
        print(f"password grant: {'on' if enabled else 'off'}")
        return 0

    return with_services(settings, work)


def cmd_invite_user(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            code = await registration.create_invite(
                session, args.max_uses, args.expires_in_days)
            await audit.record(session, _who(args), "invite-user", "instance",
                               details={"max_uses": args.max_uses,
                                        "expires_in_days": args.expires_in_days})
            mode = await registration.get_mode(session)
        print(f"invite code: {code}")
        print(f"sign-up link: {settings.base_url}/signup?invite={code}")
        if mode != "invite":
            print(f"note: registrations are {mode}; codes are asked for only in invite mode "
                  "(fedi admin registrations invite)")
        return 0

    return with_services(settings, work)


def cmd_reset_password(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            actor = await login.local_user(session, args.name)
            token = await recovery.issue(session, actor.id, "reset")
            await audit.record(session, _who(args), "reset-password", actor.uri)
        print(f"one-time link for {actor.username}, valid for one hour:")
        print(f"{settings.base_url}/reset/{token}")
        return 0

    return with_services(settings, work)
