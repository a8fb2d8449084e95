"""Property-based, end to end in process: for generated posts and viewers (member,
non-member, moderator, banned, blocked server, anonymous), no read path (the post, its
thread's replies and context, the group outbox, the group page) and no delivery row ever
exposes a post outside its audience."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from fedi.activitypub.httpsig import sign_request
from fedi.actors.local import create_group, create_user, find_local
from fedi.errors import ValidationError
from fedi.groups import moderation
from fedi.groups.circles import create_circle, set_membership
from fedi.groups.posting import post_to_group
from fedi.store.models import Actor, Delivery, OutboundActivity, PostAudience
from tests.privacy.oracle import Spec, may_see
from tests.support.app import BASE_URL, running_app
from tests.support.databases import create_database, drop_database
from tests.support.remote import FakeRemote
from tests.support.remote import test_keypair as premade_keypair

ROLES = {"m1": "member", "m2": "member", "mod": "moderator", "out": "outsider",
         "ban": "banned", "blk": "blocked"}
AP = "application/activity+json"

post_specs = st.lists(
    st.tuples(
        st.sampled_from(["public", "unlisted", "members", "moderators", "mentioned",
                         "circle:c"]),
        st.frozensets(st.sampled_from(sorted(ROLES)), max_size=3),  # mentioned people
        st.none() | st.integers(min_value=0, max_value=5),  # reply to an earlier post
    ),
    min_size=1, max_size=5,
)


@settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(specs=post_specs, circle=st.frozensets(st.sampled_from(sorted(ROLES)), max_size=3))
async def test_no_read_path_or_delivery_leaves_the_audience(
    specs: list[tuple[str, frozenset[str], int | None]], circle: frozenset[str]
) -> None:
    # Everyone on one server, except "blk", whose server this instance suspends.
    remote = FakeRemote(publish_shared_inbox=False)
    suspended = FakeRemote(publish_shared_inbox=False)
    for index, name in enumerate(ROLES):
        server = suspended if name == "blk" else remote
        actor = server.add_actor(name, key_index=index)
        remote.actors[name] = actor
    await remote.start()
    await suspended.start()
    directory = Path(tempfile.mkdtemp())
    url = await create_database(directory, "prop")
    try:
        # Fresh RSA keys for the local actors of every example would dominate the run time.
        with patch("fedi.actors.local.generate_rsa_keypair", lambda: premade_keypair(7)):
            async with running_app(url) as fedi:
                await _check_world(fedi, remote, specs, circle, f"127.0.0.1:{suspended.port}")
    finally:
        await remote.stop()
        await suspended.stop()
        await drop_database(url)


async def _check_world(
    fedi: Any, remote: FakeRemote, specs: list[tuple[str, frozenset[str], int | None]],
    circle_names: frozenset[str], blocked_host: str,
) -> None:
    urls = fedi.services.urls
    async with fedi.services.sessionmaker() as session, session.begin():
        owner = await create_user(session, urls, "owner")
        group = await create_group(session, urls, "g", owner="owner")
    people: dict[str, Actor] = {}
    async with fedi.services.sessionmaker() as session, session.begin():
        for name in ROLES:
            people[name] = await fedi.services.resolver.actor(session, remote.actors[name].uri)
    for name, role in ROLES.items():
        if role in ("member", "moderator", "banned", "blocked"):
            await _join(fedi, remote, name)
    async with fedi.services.sessionmaker() as session, session.begin():
        group = await session.merge(group)
        await moderation.set_moderator(session, urls, group, await session.merge(people["mod"]),
                                       appoint=True)
        await moderation.ban(session, urls, group, await session.merge(people["ban"]), by=None,
                             reason=None)
        circle = await create_circle(session, await session.merge(owner), "c")
        for name in circle_names:
            await set_membership(session, circle, await session.merge(people[name]), member=True)

    # "blk" is on a server this instance refuses: the fetch gate's domain policy says so.
    async def refuse_blocked(host: str) -> str | None:
        return "suspended" if host == blocked_host and _blocking else None

    _blocking = False
    fedi.services.fetch_verifier.host_policy = refuse_blocked

    posted: list[tuple[str, Spec]] = []
    for visibility, mentioned, reply_index in specs:
        parent = posted[reply_index] if reply_index is not None and reply_index < len(
            posted) else None
        async with fedi.services.sessionmaker() as session, session.begin():
            author = await find_local(session, "owner")
            g = await find_local(session, "g")
            assert author is not None and g is not None
            try:
                result = await post_to_group(
                    session, urls, author, g, f"post {len(posted)}",
                    reply_to=parent[0] if parent else None, visibility=visibility,
                    mentions=[await session.merge(people[n]) for n in sorted(mentioned)],
                )
            except ValidationError:
                continue  # e.g. "mentioned" with nobody mentioned: refused, nothing written
            stored = result.post
        audience = await _audience_names(fedi, stored.id, people)  # once committed
        posted.append((stored.uri, Spec(stored.visibility, "owner", audience,
                                        parent[1] if parent else None)))
    if not posted:
        return

    deliveries = await _deliveries(fedi)
    inbox_owner = {remote.actors[n].inbox: n for n in ROLES}
    for uri, spec in posted:
        for inbox in deliveries.get(uri, set()):
            name = inbox_owner[inbox]
            if ROLES[name] == "blocked":
                continue  # suspension drops rows when sending (tests/moderation covers it)
            assert may_see(spec, name, ROLES[name]), (uri, spec, name)

    _blocking = True
    viewers: list[tuple[str | None, str]] = [(None, "anonymous"), *ROLES.items()]
    for name, role in viewers:
        key = remote.actors[name].key if name else None
        outbox = await _get(fedi, f"{group.uri}/outbox?page=1", key)
        page = (await fedi.http.get("/groups/g", headers={"Accept": "text/html"})).text
        for uri, spec in posted:
            allowed = may_see(spec, name, role)
            response = await _get(fedi, uri, key)
            assert (response.status_code == 200) == allowed, (uri, spec, name, role)
            if not allowed:
                assert uri not in outbox.text, (uri, spec, name)
                assert f'href="{uri}"' not in page or spec.visibility == "public"
            if spec.parent is not None:
                parent_uri = next(u for u, s in posted if s is spec.parent)
                replies = await _get(fedi, f"{parent_uri}/replies?page=1", key)
                if replies.status_code == 200:
                    assert (uri in replies.text) == allowed, (uri, spec, name, role)
        if role != "anonymous" or name is None:
            for uri, spec in posted:
                if spec.visibility != "public" and f'href="{uri}"' in page:
                    raise AssertionError(f"{uri} ({spec.visibility}) listed on the group page")


async def _join(fedi: Any, remote: FakeRemote, name: str) -> None:
    actor = remote.actors[name]
    inbox = f"{BASE_URL}/groups/g/inbox"
    body = json.dumps({"id": f"{actor.uri}/follow", "type": "Follow", "actor": actor.uri,
                       "object": f"{BASE_URL}/groups/g"}).encode()
    response = await fedi.http.post(inbox, content=body, headers=remote.signed(actor, inbox, body))
    assert response.status_code == 202
    await fedi.services.processor.run_once()


async def _audience_names(fedi: Any, post_id: int, people: dict[str, Actor]) -> frozenset[str]:
    by_id = {actor.id: name for name, actor in people.items()}
    async with fedi.services.sessionmaker() as session:
        rows = await session.execute(
            select(PostAudience.actor_id).where(PostAudience.post_id == post_id)
        )
        return frozenset(by_id[i] for i in rows.scalars() if i in by_id)


async def _deliveries(fedi: Any) -> dict[str, set[str]]:
    """post uri → inboxes any activity carrying it was queued for."""
    found: dict[str, set[str]] = {}
    async with fedi.services.sessionmaker() as session:
        rows = await session.execute(
            select(Delivery.inbox_url, OutboundActivity.body)
            .join(OutboundActivity, OutboundActivity.id == Delivery.activity_id)
        )
        for inbox, body in rows.all():
            for uri in _post_uris(body):
                found.setdefault(uri, set()).add(inbox)
    return found


def _post_uris(body: str) -> set[str]:
    """The post an outgoing activity carries (not posts it merely names, like inReplyTo)."""
    doc = json.loads(body)
    obj = doc.get("object")
    if doc.get("type") == "Announce":
        if isinstance(obj, str):
            return {obj}  # the group's boost of a post
        if isinstance(obj, dict):
            inner = obj.get("object")
            return {inner if isinstance(inner, str) else inner.get("id")} if inner else set()
    if doc.get("type") == "Create" and isinstance(obj, dict):
        return {obj.get("url") or obj.get("id")}  # the group's copy names its original
    return set()


async def _get(fedi: Any, url: str, key: Any) -> Any:
    headers = {"Accept": AP}
    if key is not None:
        headers = sign_request("cavage", "GET", url, headers, None, key)
    return await fedi.http.get(url, headers=headers)

