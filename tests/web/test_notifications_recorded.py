"""Notifications are recorded where the events happen, for local and remote causes alike.

ann, bob, carl and dan are people of this server; rem is a person on another server (a real
HTTP server on loopback whose signed activities reach our inbox), and club is a group there.
Each kind is recorded once for the person it concerns, never for the actor's own doing, and
never for a post the gate would not show that person.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import delete, select

from fedi.accounts import sessions
from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC
from fedi.actors.local import create_group, create_user, find_local
from fedi.federation.following import follow_remote
from fedi.federation.reporting import report_post
from fedi.groups import moderation
from fedi.groups.membership import join_local_group
from fedi.groups.posting import post_to_group
from fedi.groups.threads import find_post
from fedi.store.models import Actor, Notification, Post
from fedi.web.auth import SESSION_COOKIE
from tests.accounts.support import browser, token_in
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote, RemoteActor

PEOPLE = ("ann", "bob", "carl", "dan")


@dataclass(frozen=True)
class Seen:
    kind: str
    actor: str | None  # uri
    post: str | None  # uri
    reason: str | None = None


@dataclass
class World:
    fedi: InProcess
    remote: FakeRemote
    rem: RemoteActor
    club: RemoteActor
    follows: dict[str, str] = field(default_factory=dict)

    @property
    def services(self) -> Any:
        return self.fedi.services

    def user(self, name: str) -> str:
        return f"{BASE_URL}/users/{name}"

    def group(self, name: str) -> str:
        return f"{BASE_URL}/groups/{name}"

    async def local(self, name: str) -> Actor:
        async with self.services.sessionmaker() as session:
            found = await find_local(session, name)
        assert found is not None, name
        return found

    async def post(self, name: str, group: str, text: str, **options: Any) -> str:
        async with self.services.sessionmaker() as session, session.begin():
            author = await find_local(session, name)
            target = await find_local(session, group)
            if target is None:
                target = await self.services.resolver.actor(session, group)
            assert author is not None
            published = await post_to_group(session, self.services.urls, author, target, text,
                                             **options)
            return published.post.uri

    async def send(self, actor: RemoteActor, activity: dict[str, Any], inbox: str) -> None:
        document = {"@context": AS_CONTEXT, "id": f"{actor.uri}/activities/{uuid.uuid4()}",
                    "actor": actor.uri, **activity}
        body = json.dumps(document).encode()
        answer = await self.fedi.http.post(inbox, content=body,
                                           headers=self.remote.signed(actor, inbox, body))
        assert answer.status_code == 202, answer.text
        assert await self.services.processor.run_once() >= 1

    async def remote_note(self, group: str, text: str, *, reply_to: str | None = None,
                          mention: Sequence[str] = (), to: list[str] | None = None) -> str:
        """rem writes into a local group, as a Create to the group's inbox."""
        note: dict[str, Any] = {
            "id": f"{self.remote.base_url}/objects/{uuid.uuid4()}", "type": "Note",
            "attributedTo": self.rem.uri, "content": f"<p>{text}</p>",
            "to": to if to is not None else [PUBLIC, self.group(group)],
            "cc": list(mention), "audience": self.group(group),
            "tag": [{"type": "Mention", "href": uri} for uri in mention],
        }
        if reply_to:
            note["inReplyTo"] = reply_to
        await self.send(self.rem, {"type": "Create", "object": note, "to": note["to"]},
                        f"{self.group(group)}/inbox")
        return str(note["id"])

    async def rem_joins(self, group: str) -> None:
        await self.send(self.rem, {"type": "Follow", "object": self.group(group)},
                        f"{self.group(group)}/inbox")
        if group == "private":  # joins by approval
            async with self.services.sessionmaker() as session, session.begin():
                rem = (await session.execute(
                    select(Actor).where(Actor.uri == self.rem.uri))).scalar_one()
                await moderation.approve(session, self.services.urls,
                                         await _get(session, group), rem)

    async def seen(self, name: str) -> list[Seen]:
        """What `name` was told, oldest first."""
        async with self.services.sessionmaker() as session:
            person = await find_local(session, name)
            assert person is not None
            rows = (await session.execute(
                select(Notification).where(Notification.recipient_id == person.id)
                .order_by(Notification.id))).scalars().all()
            told = []
            for row in rows:
                actor = await session.get(Actor, row.actor_id) if row.actor_id else None
                post = await session.get(Post, row.post_id) if row.post_id else None
                told.append(Seen(row.kind, actor.uri if actor else None,
                                 post.uri if post else None, row.reason))
            return told


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    remote = FakeRemote(publish_shared_inbox=False)
    rem = remote.add_actor("rem", key_index=0)
    club = remote.add_actor("club", key_index=1)
    remote.actor_types["club"] = "Group"
    await remote.start()
    async with running_app(database_url) as fedi:
        urls = fedi.services.urls
        async with fedi.services.sessionmaker() as session, session.begin():
            for name in PEOPLE:
                await create_user(session, urls, name)
            await create_group(session, urls, "g", owner="ann")
            await create_group(session, urls, "private", owner="ann", privacy="private")
            await create_group(session, urls, "vetted", owner="ann", join_policy="approval")
            for name in ("g", "private"):
                group = await _get(session, name)
                for person in ("bob", "carl"):
                    joiner = await _get(session, person)
                    await join_local_group(session, urls, group, joiner)
                    if name == "private":
                        await moderation.approve(session, urls, group, joiner)
            # Each test starts with nobody told anything (joining the private group was).
            await session.execute(delete(Notification))
        yield World(fedi, remote, rem, club)
    await remote.stop()


async def _get(session: Any, name: str) -> Actor:
    found = await find_local(session, name)
    assert found is not None
    return found


async def test_a_reply_notifies_the_author_once_whoever_writes_it(world: World) -> None:
    thread = await world.post("ann", "g", "A thread.")
    await world.post("ann", "g", "My own answer.", reply_to=thread)
    assert await world.seen("ann") == []  # not for one's own reply

    ann = await world.local("ann")
    # A reply that also mentions the parent's author is one notification, a reply.
    local = await world.post("bob", "g", "Agreed.", reply_to=thread, mentions=[ann])
    await world.rem_joins("g")
    remote = await world.remote_note("g", "Me too.", reply_to=thread, mention=[world.user("ann")])
    assert await world.seen("ann") == [
        Seen("reply", world.user("bob"), local),
        Seen("reply", world.rem.uri, remote),
    ]
    assert await world.seen("bob") == []


async def test_mentions_notify_the_people_named_but_not_the_writer(world: World) -> None:
    carl, bob = await world.local("carl"), await world.local("bob")
    local = await world.post("bob", "g", "Look, carl.", mentions=[carl, bob])
    await world.rem_joins("g")
    remote = await world.remote_note("g", "Hello carl", mention=[world.user("carl")])
    assert await world.seen("carl") == [
        Seen("mention", world.user("bob"), local),
        Seen("mention", world.rem.uri, remote),
    ]
    assert await world.seen("bob") == []


async def test_nobody_is_told_of_a_post_they_may_not_see(world: World) -> None:
    dan = await world.local("dan")
    # dan is not a member of the private group: its members-only posts are not for him.
    await world.post("bob", "private", "Psst, dan.", mentions=[dan])
    await world.rem_joins("private")
    await world.remote_note("private", "Psst dan", mention=[world.user("dan")],
                            to=[f"{world.group('private')}/followers"])
    assert await world.seen("dan") == []
    # A reply waiting for a moderator is not shown to the parent's author yet: told when
    # it is let through, and then only once.
    async with world.services.sessionmaker() as session, session.begin():
        group = await _get(session, "g")
        await moderation.update_settings(session, group, premoderation=True)
    await world.rem_joins("g")
    thread = await world.post("ann", "g", "Thread under premoderation.")
    remote = await world.remote_note("g", "Held reply", reply_to=thread)
    local = await world.post("bob", "g", "Held too", reply_to=thread)
    # ann moderates the private group: rem's request to join it is all she was told.
    asked = [Seen("follow_request", world.rem.uri, None)]
    assert await world.seen("ann") == asked
    async with world.services.sessionmaker() as session, session.begin():
        group = await _get(session, "g")
        await moderation.approve_post(session, world.services.urls, group, remote)
        await moderation.approve_post(session, world.services.urls, group, local)
    assert await world.seen("ann") == [
        *asked, Seen("reply", world.rem.uri, remote), Seen("reply", world.user("bob"), local)]


async def test_a_post_shown_again_after_reports_does_not_notify_twice(world: World) -> None:
    urls = world.services.urls
    async with world.services.sessionmaker() as session, session.begin():
        await moderation.update_settings(session, await _get(session, "g"), report_threshold=1)
    thread = await world.post("ann", "g", "A thread.")
    reply = await world.post("bob", "g", "A reply carl dislikes.", reply_to=thread)
    async with world.services.sessionmaker() as session, session.begin():
        post = await find_post(session, reply)
        assert post is not None
        await report_post(session, await _get(session, "carl"), post, "rude")
    async with world.services.sessionmaker() as session:
        post = await find_post(session, reply)
        assert post is not None and post.held == "reports"
    async with world.services.sessionmaker() as session, session.begin():
        await moderation.approve_post(session, urls, await _get(session, "g"), reply)
    assert await world.seen("ann") == [Seen("reply", world.user("bob"), reply)]
    assert await world.seen("bob") == [Seen("post_held", world.group("g"), reply, "reports"),
                                       Seen("post_approved", world.group("g"), reply)]

async def test_a_post_hidden_by_reports_from_the_web_form_tells_its_author(
    world: World,
) -> None:
    async with world.services.sessionmaker() as session, session.begin():
        await moderation.update_settings(session, await _get(session, "g"), report_threshold=2)
        cookies = {name: await sessions.start(session, (await _get(session, name)).id, "test",
                                              days=1) for name in ("carl", "ann")}
    thread = await world.post("ann", "g", "A thread.")
    reply = await world.post("bob", "g", "A reply two members report.", reply_to=thread)
    async with world.services.sessionmaker() as session:
        post = await find_post(session, reply)
        assert post is not None
    for number, name in enumerate(("carl", "ann"), start=1):
        async with browser(world.fedi) as http:
            http.cookies.set(SESSION_COOKIE, cookies[name])
            form = await http.get(f"/posts/{post.id}/report")
            sent = await http.post(f"/posts/{post.id}/report", data={
                "csrf": token_in(form), "comment": "rude"})
            assert sent.status_code == 200 and "Report sent" in sent.text
        if number == 1:  # one report is under the threshold: nothing is hidden, nobody told
            assert await world.seen("bob") == []
    async with world.services.sessionmaker() as session:
        hidden = await find_post(session, reply)
        assert hidden is not None and hidden.held == "reports"
    assert await world.seen("bob") == [Seen("post_held", world.group("g"), reply, "reports")]


async def test_a_post_hidden_by_a_flag_from_another_server_tells_its_author(
    world: World,
) -> None:
    async with world.services.sessionmaker() as session, session.begin():
        await moderation.update_settings(session, await _get(session, "g"), report_threshold=1)
    await world.rem_joins("g")  # reports count when members make them
    thread = await world.post("ann", "g", "A thread.")
    reply = await world.post("bob", "g", "A reply rem reports.", reply_to=thread)
    flag = {"type": "Flag", "object": [reply], "content": "spam", "to": [world.user("bob")]}
    await world.send(world.rem, flag, f"{BASE_URL}/inbox")
    async with world.services.sessionmaker() as session:
        hidden = await find_post(session, reply)
        assert hidden is not None and hidden.held == "reports"
    assert await world.seen("bob") == [Seen("post_held", world.group("g"), reply, "reports")]
    # The same post flagged again is already hidden: told once.
    await world.send(world.rem, {**flag, "content": "still spam"}, f"{BASE_URL}/inbox")
    assert await world.seen("bob") == [Seen("post_held", world.group("g"), reply, "reports")]


async def test_a_post_held_approved_refused_and_removed_tells_its_author(
    world: World,
) -> None:
    urls = world.services.urls
    async with world.services.sessionmaker() as session, session.begin():
        await moderation.update_settings(session, await _get(session, "g"),
                                         premoderation=True)
    first = await world.post("bob", "g", "First")
    second = await world.post("bob", "g", "Second")
    await world.rem_joins("g")
    await world.remote_note("g", "A remote author is told by their own server, not here")
    async with world.services.sessionmaker() as session, session.begin():
        group = await _get(session, "g")
        await moderation.approve_post(session, urls, group, first)
        await moderation.reject_post(session, urls, group, second)
        await moderation.remove_post(session, urls, group, first, "off topic")
    group_uri = world.group("g")
    assert await world.seen("bob") == [
        Seen("post_held", group_uri, first, "premoderation"),
        Seen("post_held", group_uri, second, "premoderation"),
        Seen("post_approved", group_uri, first),
        Seen("post_removed", group_uri, second, "not approved by a moderator"),
        Seen("post_removed", group_uri, first, "off topic"),
    ]
    assert await world.seen("ann") == []  # the moderator is not told of her own actions


async def test_join_answers_here_and_from_a_group_elsewhere(world: World) -> None:
    urls = world.services.urls
    async with world.services.sessionmaker() as session, session.begin():
        vetted = await _get(session, "vetted")
        for name in ("bob", "carl"):
            await join_local_group(session, urls, vetted, await _get(session, name))
        await moderation.approve(session, urls, vetted, await _get(session, "bob"))
        await moderation.reject(session, urls, vetted, await _get(session, "carl"))
    assert await world.seen("bob") == [Seen("join_approved", world.group("vetted"), None)]
    assert await world.seen("carl") == [Seen("join_refused", world.group("vetted"), None)]

    # A group on another server answers our people's Follows over federation.
    follows = {}
    async with world.services.sessionmaker() as session, session.begin():
        club = await world.services.resolver.actor(session, world.club.uri)
        for name in ("bob", "dan"):
            row = await follow_remote(session, urls, await _get(session, name), club)
            follows[name] = row.activity_uri
    await world.send(world.club, {"type": "Accept", "object": follows["bob"]},
                     f"{world.user('bob')}/inbox")
    await world.send(world.club, {"type": "Reject", "object": follows["dan"]},
                     f"{world.user('dan')}/inbox")
    # An Accept of a membership already held tells nobody again.
    await world.send(world.club, {"type": "Accept", "object": follows["bob"]},
                     f"{world.user('bob')}/inbox")
    assert (await world.seen("bob"))[1:] == [Seen("join_approved", world.club.uri, None)]
    assert await world.seen("dan") == [Seen("join_refused", world.club.uri, None)]


async def test_a_reply_relayed_by_a_group_elsewhere_notifies_our_author(world: World) -> None:
    urls = world.services.urls
    async with world.services.sessionmaker() as session, session.begin():
        club = await world.services.resolver.actor(session, world.club.uri)
        follow = await follow_remote(session, urls, await _get(session, "bob"), club)
        follow_uri = follow.activity_uri
    await world.send(world.club, {"type": "Accept", "object": follow_uri},
                     f"{world.user('bob')}/inbox")
    mine = await world.post("bob", world.club.uri, "Hello club")
    reply = {
        "id": f"{world.remote.base_url}/objects/{uuid.uuid4()}", "type": "Note",
        "attributedTo": world.rem.uri, "content": "<p>Welcome bob</p>", "inReplyTo": mine,
        "to": [PUBLIC], "cc": [f"{world.club.uri}/followers", world.user("bob")],
        "audience": world.club.uri,
    }
    await world.send(world.club, {"type": "Announce", "object": reply, "to": [PUBLIC],
                                  "cc": [f"{world.club.uri}/followers"]},
                     f"{world.user('bob')}/inbox")
    told = await world.seen("bob")
    assert told[-1] == Seen("reply", world.rem.uri, reply["id"])
