"""`fedi admin instance`: what the About page says (description, rules, admin contact).

Without options it prints them; each option replaces that one part, in one transaction with
its audit entry. The instance's name is FEDI_INSTANCE_NAME (it is in every page's header and
in NodeInfo, read at start)."""

from __future__ import annotations

import argparse

from fedi.accounts import instance
from fedi.cli_common import with_services
from fedi.config import Settings
from fedi.moderation import audit
from fedi.services import Services

HELP = (
    "Show or change what the About page (/about) says. --description TEXT (paragraphs "
    "separated by a blank line), --rules RULE… (replaces every rule; --rules alone removes "
    "them), --contact TEXT (an e-mail address, a web address or any text). The name is "
    "FEDI_INSTANCE_NAME."
)


def build_instance_parser(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = actions.add_parser("instance", help="the About page: description, rules, contact",
                                description=HELP)
    parser.add_argument("--description", default=None, metavar="TEXT")
    parser.add_argument("--rules", nargs="*", default=None, metavar="RULE")
    parser.add_argument("--contact", default=None, metavar="TEXT")
    parser.set_defaults(run=cmd_instance)


def cmd_instance(settings: Settings, args: argparse.Namespace) -> int:
    rules = None if args.rules is None else tuple(args.rules)
    changing = [name for name, value in (("description", args.description), ("rules", rules),
                                         ("contact", args.contact)) if value is not None]

    async def work(services: Services) -> int:
        async with services.sessionmaker() as session, session.begin():
            if changing:
                info = await instance.update(session, description=args.description,
                                             rules=rules, contact=args.contact)
                await audit.record(session, args.admin_user or audit.CLI_ADMIN,
                                   "instance-about", "instance", details={"changed": changing})
            else:
                info = await instance.load(session)
        print(f"name: {settings.instance_name}")
        print(f"description: {info.description or '-'}")
        print(f"contact: {info.contact or '-'}")
        print("rules:" + ("" if info.rules else " -"))
        for number, rule in enumerate(info.rules, start=1):
            print(f"  {number}. {rule}")
        return 0

    return with_services(settings, work)
