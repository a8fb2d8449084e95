"""Threaded servers versus microblogs, told apart by the NodeInfo software name.

Threaded servers (Lemmy and kin) show a group as a forum: they understand FEP-1b12's
Announce(Create), show replies inside their thread and get every reply. Microblogs (Mastodon,
Misskey, Pleroma, GoToSocial, and anything we cannot identify) show a group's Announce as a
boost in every follower's home timeline, so they get only what a member there asked for.
"""

from __future__ import annotations

THREADED_SOFTWARE = frozenset(
    {"fedi", "lemmy", "mbin", "kbin", "piefed", "lotide", "sublinks", "nodebb", "discourse",
     "flohmarkt", "friendica"}
)


def is_threaded(software: str | None) -> bool:
    return software is not None and software.strip().lower() in THREADED_SOFTWARE
