"""`fedi circle …`: named lists of people for `--visibility circle:NAME` posts."""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.actors.local import find_local
from fedi.cli_common import with_services
from fedi.config import Settings
from fedi.errors import FediError
from fedi.groups.circles import circle_people, create_circle, find_circle, set_membership
from fedi.services import Services
from fedi.store.models import Actor


def build_circle_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    circle = commands.add_parser(
        "circle", help="named lists of people, for posts with --visibility circle:NAME",
        description="Circles belong to a local user (--as USER) or to a local group, kept by "
        "its moderators (--group GROUP). A circle post reaches only its people.",
    )
    actions = circle.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in (
        ("create", "make a circle"), ("add", "add people to a circle"),
        ("remove", "take people out of a circle"), ("show", "list a circle's people"),
    ):
        parser = actions.add_parser(name, help=help_text, description=help_text)
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--as", dest="user", help="the local user who keeps the circle")
        owner.add_argument("--group", help="the local group whose moderators keep it")
        parser.add_argument("name", help="circle name")
        if name in ("add", "remove"):
            parser.add_argument("actors", nargs="+", metavar="ACTOR",
                                help="@name@host, actor URL or local user name")
        parser.set_defaults(run=lambda settings, args, action=name: _run(settings, args, action))


def _run(settings: Settings, args: argparse.Namespace, action: str) -> int:
    async def run(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            owner = await find_local(session, args.user or args.group)
            kind = "Person" if args.user else "Group"
            if owner is None or owner.type != kind:
                raise FediError(f"there is no local {kind.lower()} {args.user or args.group!r}")
            await _act(services, session, owner, args, action)
        return 0

    return with_services(settings, run)


async def _act(
    services: Services, session: AsyncSession, owner: Actor, args: argparse.Namespace,
    action: str,
) -> None:
    if action == "create":
        await create_circle(session, owner, args.name)
        print(f"circle {args.name} made for {owner.username}")
        return
    circle = await find_circle(session, owner, args.name)
    if circle is None:
        raise FediError(f"{owner.username} has no circle {args.name!r}")
    if action == "show":
        for person in await circle_people(session, circle):
            print(person.uri)
        return
    for ref in args.actors:
        person = await _person(services, session, ref)
        await set_membership(session, circle, person, member=action == "add")
        print(f"{person.uri} {'added to' if action == 'add' else 'removed from'} {args.name}")


async def _person(services: Services, session: AsyncSession, ref: str) -> Actor:
    if ref.startswith(("http://", "https://")):
        return await services.resolver.actor(session, ref)
    if "@" in ref:
        return await services.resolver.resolve_handle(session, ref)
    found = await find_local(session, ref)
    if found is None:
        raise FediError(f"there is no local user {ref!r}")
    return found
