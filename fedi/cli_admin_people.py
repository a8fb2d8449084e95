"""`fedi admin users|groups …`: list, search and act on local users and groups with the same
fedi.admin calls the /admin pages make, audited under `--as USER` (or "admin (cli)")."""

from __future__ import annotations

import argparse

from fedi.admin import groups, users
from fedi.admin.acting import named
from fedi.cli_common import with_services
from fedi.config import Settings
from fedi.services import Services


def build_people_parser(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    people = actions.add_parser("users", help="list, search, suspend, delete, make admin")
    user_actions = people.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    listing = user_actions.add_parser("list", help="list local users (--search TEXT)")
    listing.add_argument("--search", default="", metavar="TEXT")
    for name, text in (("suspend", "the user cannot log in; their sessions end"),
                       ("unsuspend", "lift a suspension"),
                       ("delete", "delete the user's posts (federated) and their login"),
                       ("make-admin", "make an existing user an instance admin"),
                       ("remove-admin", "take the admin role away")):
        parser = user_actions.add_parser(name, help=text, description=text)
        parser.add_argument("name", metavar="NAME")
        if name in ("suspend", "delete"):
            parser.add_argument("--reason", default=None)
    people.set_defaults(run=cmd_users)

    group = actions.add_parser("groups", help="list groups and members; edit, transfer, delete")
    group_actions = group.add_subparsers(dest="groups_command", required=True, metavar="ACTION")
    group_actions.add_parser("list", help="list local groups")
    members = group_actions.add_parser("members", help="a group's members with their roles")
    members.add_argument("name", metavar="GROUP")
    edit = group_actions.add_parser("edit", help="change title, summary, rules, join policy")
    edit.add_argument("name", metavar="GROUP")
    edit.add_argument("--title", default=None)
    edit.add_argument("--summary", default=None)
    edit.add_argument("--rules", nargs="*", default=None, metavar="RULE",
                      help="replaces every rule (--rules alone removes them)")
    edit.add_argument("--join", default=None, choices=("open", "approval", "invite"))
    transfer = group_actions.add_parser("transfer", help="give the group to another local "
                                        "user (the old owner stays a moderator)")
    transfer.add_argument("name", metavar="GROUP")
    transfer.add_argument("owner", metavar="NEW_OWNER")
    remove = group_actions.add_parser("delete", help="delete the group (members' servers are "
                                      "told; posts taken down)")
    remove.add_argument("name", metavar="GROUP")
    remove.add_argument("--reason", default=None)
    group.set_defaults(run=cmd_groups)


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            admin = await named(session, args.admin_user)
            action = args.users_command
            if action == "list":
                for row in await users.list_users(session, args.search):
                    state = ("suspended" if row.suspended else
                             "waiting" if not row.approved else "active")
                    print("\t".join([row.actor.username, "admin" if row.is_admin else "-",
                                     state, row.email or "-"]))
            elif action == "suspend":
                ended = await users.suspend(session, admin, args.name, args.reason)
                print(f"suspended {args.name}; {ended} session(s) ended")
            elif action == "unsuspend":
                await users.unsuspend(session, admin, args.name)
                print(f"{args.name} may log in again")
            elif action == "delete":
                deleted = await users.delete_with_content(session, services.urls, admin,
                                                          args.name, args.reason)
                print(f"deleted {args.name} and {deleted} post(s)")
            else:
                await users.set_admin(session, admin, args.name, make=action == "make-admin")
                print(f"{args.name} is {'now' if action == 'make-admin' else 'no longer'} "
                      "an admin")
        return 0

    return with_services(settings, work)


def cmd_groups(settings: Settings, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            admin = await named(session, args.admin_user)
            action = args.groups_command
            if action == "list":
                for row in await groups.list_groups(session):
                    print("\t".join([row.actor.username, row.config.privacy,
                                     row.config.join_policy,
                                     f"owner {row.owner.username if row.owner else '-'}",
                                     f"{row.members} members",
                                     "deleted" if row.deleted else "-"]))
            elif action == "members":
                group = await groups.group_named(session, args.name)
                for member in await groups.members(session, group):
                    print(f"{member.actor.uri}\t{member.role}")
            elif action == "edit":
                changed = await groups.edit(
                    session, services.urls, admin, args.name, title=args.title,
                    summary=args.summary, rules=args.rules, join_policy=args.join)
                print(f"changed: {', '.join(changed) or 'nothing'}")
            elif action == "transfer":
                person = await groups.transfer(session, admin, args.name, args.owner)
                print(f"{person.username} owns {args.name} now")
            else:
                ended = await groups.delete_group(session, services.urls, admin, args.name,
                                                  args.reason)
                print(f"deleted {args.name}; {ended} membership(s) ended")
        return 0

    return with_services(settings, work)
