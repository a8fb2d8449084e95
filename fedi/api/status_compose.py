"""Writing statuses from a Mastodon app: POST /api/v1/statuses (a new thread or a reply in a
group), PUT to edit, DELETE.

fedi is a community server: every post lives in a group. A status goes into the group it
replies in (`in_reply_to_id`), or into the one group its text mentions (`@name` or
`@name@host`, as Mastodon apps address groups). A status that does neither is refused with a
422 saying so, instead of becoming a personal post no group relays. For a new thread, a
first line of its own becomes the title (Lemmy's convention for posts from microblogs).

Everything goes through groups.posting as the web's compose form and `fedi post` do: the
same admission (held, refused, banned), mentions, audience and federation.

Visibility: Mastodon's four values come in as the app's default, so `public`/`unlisted`
in a group that allows less becomes members-only, and a reply that echoes a named-audience
parent keeps the parent's audience. fedi's exact values (`members`, `moderators`,
`mentioned`, `circle:NAME`) at the top level, or `fedi[visibility]` / `fedi[reply_policy]`,
are taken as written and refused with a reason when the group does not allow them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.api.auth import Caller, endpoint, presenter, services_of
from fedi.api.errors import ApiError, not_found, unauthorized, unprocessable
from fedi.api.params import Params, read_params
from fedi.api.status_common import (
    acting,
    json_answer,
    rendered,
    source_text,
    status_path,
    visible_post,
)
from fedi.content import mentions_in
from fedi.errors import FediError
from fedi.groups.mentions import find_mentioned
from fedi.groups.posting import MAX_TEXT, MAX_TITLE, delete_post, edit_post, post_to_group
from fedi.privacy.visibility import GroupPrivacy, Visibility, parse_reply_policy
from fedi.store.models import Actor, ApiIdempotency, Group, Post

# Mastodon's names for the nearest fedi visibility.
MASTODON = {"public": "public", "unlisted": "unlisted", "private": "members",
            "direct": "mentioned"}
EXACT = ("members", "moderators", "mentioned")
MAX_KEY = 255
NO_GROUP = ("mention a group (@name or @name@host) to start a thread in it, or reply in a "
            "thread (in_reply_to_id): every post here belongs to a group")


@dataclass(frozen=True)
class Wanted:
    """The visibility asked for: exact (fedi's own words) or loose (a Mastodon default)."""

    value: str | None
    exact: bool


def _visibility(params: Params) -> Wanted:
    extension = params.mapping("fedi")
    exact = extension.get("visibility")
    if exact is not None:
        if not isinstance(exact, str) or not exact.strip():
            raise unprocessable("fedi[visibility] must be a visibility", "fedi[visibility]")
        return Wanted(exact.strip().lower(), True)
    raw = params.text("visibility", max_length=200)
    if raw is None or not raw.strip():
        return Wanted(None, False)
    value = raw.strip().lower()
    if value in MASTODON:
        return Wanted(MASTODON[value], False)
    if value in EXACT or value.startswith("circle:"):
        return Wanted(value, True)
    raise unprocessable(
        f"unknown visibility {raw!r}: use public, unlisted, private or direct, or fedi's "
        "members, moderators, mentioned, circle:NAME", "visibility")


def _reply_policy(params: Params) -> str | None:
    raw = params.mapping("fedi").get("reply_policy")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise unprocessable("fedi[reply_policy] must be a reply rule", "fedi[reply_policy]")
    try:
        return parse_reply_policy(raw).value
    except FediError as exc:
        raise unprocessable(exc.reason, "fedi[reply_policy]") from None


def _unsupported(params: Params) -> None:
    if params.strings("media_ids"):
        raise unprocessable("attachments are not supported here: post text only", "media_ids")
    if params.raw("poll") not in (None, "", {}):
        raise unprocessable("polls are not supported here", "poll")
    if (params.text("spoiler_text", max_length=MAX_TITLE) or "").strip():
        raise unprocessable("content warnings (spoiler_text) are not supported here yet",
                            "spoiler_text")
    if params.raw("scheduled_at") not in (None, ""):
        raise unprocessable("scheduled posts are not supported here", "scheduled_at")


async def _loose(session: AsyncSession, group: Actor, wanted: Wanted, parent: Post | None
                 ) -> str | None:
    """A Mastodon default made to fit the group and the parent (see the module's note)."""
    if wanted.exact or wanted.value is None:
        return wanted.value
    if parent is not None and Visibility(parent.visibility).has_named_audience:
        return None  # the reply keeps the parent's audience, as the web's reply form does
    if wanted.value in ("public", "unlisted") and group.local:
        config = await session.get(Group, group.id)
        if config is not None and GroupPrivacy(config.privacy) is not GroupPrivacy.PUBLIC:
            return Visibility.MEMBERS.value
    return wanted.value


def split_title(text: str, group: Actor) -> tuple[str | None, str]:
    """A new thread's title from its first line, when more follows and the line names no one
    but the group; the body is the rest."""
    first, _, rest = text.strip().partition("\n")
    if not rest.strip():
        return None, text
    names = {group.username.lower(), f"{group.username}@{group.domain}".lower()}
    handles = mentions_in(first)
    if any(h.key not in names for h in handles):
        return None, text
    title = first
    for handle in handles:
        title = title.replace(str(handle), " ")
    title = " ".join(title.split())
    if not title or len(title) > MAX_TITLE:
        return None, text
    return title, rest.strip("\n")


async def _target(session: AsyncSession, request: Request, caller: Caller, person: Actor,
                  params: Params, text: str) -> tuple[Actor, Post | None]:
    """The group the status goes into, and the post it answers."""
    raw_parent = params.text("in_reply_to_id", max_length=40)
    if raw_parent:
        p = await presenter(session, request, caller)
        try:
            parent = await visible_post(p, raw_parent)
        except ApiError:
            raise ApiError(404, "The post replied to was not found") from None
        group = await session.get(Actor, parent.group_id) if parent.group_id else None
        if group is None:
            raise unprocessable("the post replied to is not in a group", "in_reply_to_id")
        return group, parent
    found = await find_mentioned(session, text, domain=person.domain,
                                 resolver=services_of(request).resolver)
    groups = [a for a in found.actors if a.type == "Group"]
    if not groups:
        raise unprocessable(NO_GROUP, "status")
    if len(groups) > 1:
        names = ", ".join(f"@{g.username}" for g in groups)
        raise unprocessable(f"the post mentions several groups ({names}): mention one",
                            "status")
    return groups[0], None


async def _remembered(session: AsyncSession, token_id: int, key: str) -> Post | None:
    row = (await session.execute(select(ApiIdempotency).where(
        ApiIdempotency.token_id == token_id, ApiIdempotency.key == key))).scalar_one_or_none()
    if row is None or row.post_id is None:
        return None
    return await session.get(Post, row.post_id)


def _key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None or not key.strip():
        return None
    if len(key) > MAX_KEY:
        raise unprocessable(f"Idempotency-Key is longer than {MAX_KEY} characters")
    return key.strip()


async def _answer_again(request: Request, caller: Caller, token_id: int, key: str
                        ) -> Response | None:
    """The status this key already made (Mastodon answers a retried request with it)."""
    async with services_of(request).sessionmaker() as session:
        post = await _remembered(session, token_id, key)
        if post is None:
            return None
        p = await presenter(session, request, caller)
        return json_answer(await rendered(p, post))


@endpoint("write:statuses")
async def create(request: Request, caller: Caller) -> Response:
    params = await read_params(request)
    person = caller.need_person()
    text = (params.text("status", max_length=MAX_TEXT) or "").replace("\r\n", "\n")
    _unsupported(params)
    wanted = _visibility(params)
    replies = _reply_policy(params)
    key = _key(request)
    if caller.grant is None:
        raise unauthorized()
    token_id = caller.grant.token_id
    if key is not None:
        again = await _answer_again(request, caller, token_id, key)
        if again is not None:
            return again
    if not text.strip():
        raise unprocessable("the post is empty: write something", "status")
    services = services_of(request)
    try:
        async with services.sessionmaker() as session, session.begin():
            author = await acting(session, person)
            remembered = None
            if key is not None:
                remembered = ApiIdempotency(token_id=token_id, key=key)
                session.add(remembered)
                await session.flush()
            group, parent = await _target(session, request, caller, author, params, text)
            title, body = split_title(text, group) if parent is None else (None, text)
            published = await post_to_group(
                session, services.urls, author, group, body,
                reply_to=parent.uri if parent is not None else None, title=title,
                visibility=await _loose(session, group, wanted, parent), replies=replies,
                resolver=services.resolver,
            )
            if remembered is not None:
                remembered.post_id = published.post.id
            post_id = published.post.id
    except IntegrityError:
        # The same key, sent twice at once: the other request made the status.
        again = await _answer_again(request, caller, token_id, key) if key else None
        if again is not None:
            return again
        raise ApiError(409, "A request with this Idempotency-Key is still being processed"
                       ) from None
    async with services.sessionmaker() as session:
        p = await presenter(session, request, caller)
        post = await session.get(Post, post_id)
        if post is None:
            raise not_found()
        return json_answer(await rendered(p, post))


async def _own(session: AsyncSession, request: Request, caller: Caller) -> Post:
    """The caller's own local post in the path (others' are 404 if hidden, 403 if seen)."""
    p = await presenter(session, request, caller)
    post = await visible_post(p, status_path(request))
    person = caller.need_person()
    if post.author_id != person.id or not post.local:
        raise ApiError(403, "This action is not allowed: the status is not yours")
    return post


@endpoint("write:statuses")
async def edit(request: Request, caller: Caller) -> Response:
    params = await read_params(request)
    text = (params.text("status", max_length=MAX_TEXT) or "").replace("\r\n", "\n")
    _unsupported(params)
    if not text.strip():
        raise unprocessable("the post is empty: write something", "status")
    services = services_of(request)
    async with services.sessionmaker() as session, session.begin():
        post = await _own(session, request, caller)
        author = await acting(session, caller.need_person())
        await edit_post(session, services.urls, author, post.uri, text)
    async with services.sessionmaker() as session:
        p = await presenter(session, request, caller)
        return json_answer(await rendered(p, await _reload(session, post.id)))


async def _reload(session: AsyncSession, post_id: int) -> Post:
    post = await session.get(Post, post_id)
    if post is None:
        raise not_found()
    return post


@endpoint("write:statuses")
async def delete(request: Request, caller: Caller) -> Response:
    """Deletes, and answers the status as it was with its source in `text` (Mastodon's
    delete-and-redraft)."""
    services = services_of(request)
    async with services.sessionmaker() as session, session.begin():
        post = await _own(session, request, caller)
        p = await presenter(session, request, caller)
        body = await rendered(p, post)
        body["text"] = source_text(post)
        author = await acting(session, caller.need_person())
        await delete_post(session, services.urls, author, post.uri)
    return json_answer(body)


routes = [
    Route("/api/v1/statuses", create, methods=["POST"]),
    Route("/api/v1/statuses/{id}", edit, methods=["PUT"]),
    Route("/api/v1/statuses/{id}", delete, methods=["DELETE"]),
]
