"""A group's settings as its moderators change them (`fedi mod settings`, the settings form).

Only what is given changes. The rules that hold when a group is created hold after an edit:
a private group is not open, a hidden group admits by invite only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from fedi.activitypub import activities
from fedi.activitypub.parse import is_http_url
from fedi.activitypub.vocab import PUBLIC
from fedi.actors.documents import document_of
from fedi.actors.local import JOIN_POLICIES, PRIVACIES
from fedi.content import text_to_html
from fedi.errors import ValidationError
from fedi.groups.relay import announce_to_members
from fedi.privacy.visibility import GroupPrivacy, default_for_group, parse_reply_policy
from fedi.store.models import Actor, Group
from fedi.urls import Urls, new_id

MAX_TITLE = 100
MAX_SUMMARY = 5000
MAX_LINES = 50  # rules, questions
MAX_LINE = 500


@dataclass(frozen=True)
class Changes:
    title: str | None = None
    summary: str | None = None  # plain text; stored as HTML paragraphs
    rules: list[str] | None = None
    questions: list[str] | None = None
    join_policy: str | None = None
    privacy: str | None = None
    reply_policy: str | None = None
    premoderation: bool | None = None
    report_threshold: int | None = None
    allow_dislikes: bool | None = None
    icon: str | None = None  # an http(s) URL; "" removes it
    banner: str | None = None  # an http(s) URL; "" removes it
    default_visibility: str | None = None  # public|unlisted|members|moderators; "" = widest


def _lines(kind: str, given: list[str]) -> str:
    lines = [line.strip() for line in given if line.strip()]
    if len(lines) > MAX_LINES or any(len(line) > MAX_LINE for line in lines):
        raise ValidationError(f"at most {MAX_LINES} {kind} of {MAX_LINE} characters each")
    return json.dumps(lines)


def _check(privacy: str, join_policy: str) -> None:
    if privacy not in PRIVACIES:
        raise ValidationError(f"group privacy must be one of {', '.join(PRIVACIES)}")
    if join_policy not in JOIN_POLICIES:
        raise ValidationError(f"join policy must be one of {', '.join(JOIN_POLICIES)}")
    if privacy == "private" and join_policy == "open":
        raise ValidationError("a private group cannot be open: it admits by approval or invite")
    if privacy == "hidden" and join_policy != "invite":
        raise ValidationError("a hidden group admits by invite only")


async def update(session: AsyncSession, urls: Urls, group: Actor, changes: Changes) -> Group:
    """Apply the changes, or raise ValidationError having changed nothing; the members'
    servers get an Update of the group (Lemmy and Mastodon refresh their copy from it)."""
    config = await session.get(Group, group.id)
    if config is None:
        raise ValidationError(f"{group.username} has no settings")
    if changes.title is not None and len(changes.title.strip()) > MAX_TITLE:
        raise ValidationError(f"the title is too long: at most {MAX_TITLE} characters")
    if changes.summary is not None and len(changes.summary.strip()) > MAX_SUMMARY:
        raise ValidationError(f"the description is too long: at most {MAX_SUMMARY} characters")
    if changes.report_threshold is not None and changes.report_threshold < 0:
        raise ValidationError("the report threshold is 0 (off) or more")
    if changes.icon and not is_http_url(changes.icon):
        raise ValidationError("the icon is the http(s) address of an image")
    if changes.banner and not is_http_url(changes.banner):
        raise ValidationError("the banner is the http(s) address of an image")
    reply_policy = (parse_reply_policy(changes.reply_policy).value
                    if changes.reply_policy is not None else None)
    rules = _lines("rules", changes.rules) if changes.rules is not None else None
    questions = (_lines("questions", changes.questions)
                 if changes.questions is not None else None)
    # Check the combination before touching the row: a refusal changes nothing.
    privacy = changes.privacy if changes.privacy is not None else config.privacy
    join_policy = changes.join_policy if changes.join_policy is not None else config.join_policy
    _check(privacy, join_policy)
    default_visibility = config.default_visibility
    if changes.default_visibility is not None:
        default_visibility = _default_visibility(changes.default_visibility, privacy)
    elif default_visibility and default_for_group(
            GroupPrivacy(privacy), default_visibility).value != default_visibility:
        default_visibility = None  # the new privacy no longer allows it: back to the widest
    config.default_visibility = default_visibility
    config.privacy, config.join_policy = privacy, join_policy
    group.manually_approves_followers = join_policy != "open"
    if changes.title is not None:
        group.name = changes.title.strip() or None
    if changes.summary is not None:
        group.summary = text_to_html(changes.summary.strip()) if changes.summary.strip() else None
    if changes.icon is not None:
        group.icon = changes.icon or None
    if changes.banner is not None:
        config.banner = changes.banner or None
    if rules is not None:
        config.rules = rules
    if questions is not None:
        config.questions = questions
    if reply_policy is not None:
        config.reply_policy = reply_policy
    if changes.premoderation is not None:
        config.premoderation = changes.premoderation
    if changes.report_threshold is not None:
        config.report_threshold = changes.report_threshold
    if changes.allow_dislikes is not None:
        config.allow_dislikes = changes.allow_dislikes
    await session.flush()
    followers = group.followers_url or Urls.followers(group.uri)
    update = activities.activity(
        "Update", urls.activity(new_id()), group.uri,
        {k: v for k, v in document_of(group, urls, config).items() if k != "@context"},
        to=[PUBLIC], cc=[followers],
    )
    await announce_to_members(session, group, update)
    return config


DEFAULT_VISIBILITIES = ("public", "unlisted", "members")


def _default_visibility(raw: str, privacy: str) -> str | None:
    """A default visibility the group's privacy allows, or None for "the widest allowed"."""
    raw = raw.strip().lower()
    if not raw:
        return None
    if raw not in DEFAULT_VISIBILITIES:
        raise ValidationError(
            f"the default visibility is one of {', '.join(DEFAULT_VISIBILITIES)}")
    if default_for_group(GroupPrivacy(privacy), raw).value != raw:
        raise ValidationError(f"a {privacy} group's posts are members-only at most, not {raw}")
    return raw

