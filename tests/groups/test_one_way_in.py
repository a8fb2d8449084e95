"""One way in (issue 8 item 1): every post and every membership takes the same decision,
whichever door it comes through.

For each admission rule, lou (a person of this server, through `fedi post`) and rem (a
person on another server, through a signed Create to the group's inbox) stand in the same
place in the group and must get the same answer: admitted, held for a moderator, or
refused with the same reason. Membership is one flow too: a person of this server asks to
join a private group with answers, is approved by `fedi mod approve`, redeems an invite,
and leaves, as a remote person does by Follow. A Reject of a post never ends a membership.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fedi.activitypub.vocab import AS_CONTEXT, PUBLIC
from tests.support.instance import FediInstance, eventually
from tests.support.remote import FakeRemote, RemoteActor

pytestmark = pytest.mark.federation


@dataclass(frozen=True)
class Outcome:
    kind: str  # admitted | held | refused
    reason: str = ""


@dataclass
class World:
    v: FediInstance
    remote: FakeRemote
    rem: RemoteActor

    @property
    def lou(self) -> str:
        return f"{self.v.base_url}/users/lou"

    def group(self, name: str) -> str:
        return f"{self.v.base_url}/groups/{name}"

    async def send(self, activity: dict[str, Any], inbox: str) -> str:
        activity = {"@context": AS_CONTEXT, "id": f"{self.rem.uri}/activities/{uuid.uuid4()}",
                    "actor": self.rem.uri, **activity}
        body = json.dumps(activity).encode()
        async with httpx.AsyncClient() as http:
            answer = await http.post(inbox, content=body,
                                     headers=self.remote.signed(self.rem, inbox, body))
        assert answer.status_code == 202, answer.text
        await eventually(lambda: self._handled(activity["id"]), what="handled")
        return str(activity["id"])

    async def _handled(self, activity_id: str) -> bool:
        rows = await self.v.query(
            "SELECT state FROM inbox_items WHERE activity_uri = :u", u=activity_id)
        return bool(rows) and rows[0][0] != "new"

    async def both_join(self, name: str) -> None:
        await asyncio.to_thread(self.v.cli, "follow", "--as", "lou", f"@{name}@{self.v.domain}")
        await self.send({"type": "Follow", "object": self.group(name)},
                        f"{self.group(name)}/inbox")

    def local_post(self, name: str, reply_to: str | None) -> Outcome:
        args = ["post", "--as", "lou", "--group", name, "lou's words"]
        if reply_to:
            args[5:5] = ["--reply-to", reply_to]
        done = self.v.cli(*args, check=False)
        if done.returncode == 2:
            return Outcome("refused", done.stderr.strip())
        assert done.returncode == 0, done.stderr
        if "held for a moderator" in done.stderr:
            return Outcome("held", done.stderr.strip())
        return Outcome("admitted")

    async def remote_post(self, name: str, reply_to: str | None) -> Outcome:
        note_id = f"{self.remote.base_url}/objects/{uuid.uuid4()}"
        note = {"id": note_id, "type": "Note", "attributedTo": self.rem.uri,
                "content": "<p>rem's words</p>", "to": [PUBLIC, self.group(name)],
                "audience": self.group(name)}
        if reply_to:
            note["inReplyTo"] = reply_to
        activity_id = await self.send({"type": "Create", "object": note, "to": note["to"]},
                                      f"{self.group(name)}/inbox")
        rows = await self.v.query("SELECT held FROM posts WHERE uri = :u", u=note_id)
        if rows:
            return Outcome("held", rows[0][0]) if rows[0][0] else Outcome("admitted")
        [(error,)] = await self.v.query(
            "SELECT error FROM inbox_items WHERE activity_uri = :u", u=activity_id)
        assert error and error.startswith("refused: "), error
        return Outcome("refused", error)


@pytest.fixture
async def world(instances: list[FediInstance]) -> AsyncIterator[World]:
    v = instances[0]
    v.cli("create-user", "owner")
    v.cli("create-user", "lou")
    remote = FakeRemote()
    await remote.start()
    rem = remote.add_actor("rem")
    v.start()
    yield World(v, remote, rem)
    await remote.stop()


Setup = Callable[[World, str], Any]


async def _members(world: World, name: str) -> None:
    await world.both_join(name)


async def _banned(world: World, name: str) -> None:
    await world.both_join(name)
    world.v.cli("mod", "ban", name, world.lou)
    world.v.cli("mod", "ban", name, world.rem.uri)


async def _premoderated(world: World, name: str) -> None:
    await world.both_join(name)
    world.v.cli("mod", "settings", name, "--premoderation", "on")


def _thread(replies: str | None = None, lock: bool = False, join: bool = True) -> Setup:
    async def setup(world: World, name: str) -> str:
        if join:
            await world.both_join(name)
        args = ["post", "--as", "owner", "--group", name, "The thread."]
        if replies:
            args[5:5] = ["--replies", replies]
        thread = world.v.cli(*args).stdout.strip()
        if lock:
            world.v.cli("mod", "lock", name, thread)
        return thread
    return setup


async def _outsiders(world: World, name: str) -> None:
    return None


RULES: dict[str, tuple[Setup, bool, str, str]] = {
    # rule: (setup, is a reply, expected kind, words the reason must contain)
    "members start threads": (_members, False, "admitted", ""),
    "outsiders do not start threads": (_outsiders, False, "refused", "only members may post"),
    "the banned are refused": (_banned, False, "refused", "banned from the group"),
    "premoderation holds": (_premoderated, False, "held", "premoderation"),
    "a locked thread takes no reply": (_thread(lock=True), True, "refused", "locked"),
    "replies follow the parent's rule": (_thread("mentioned"), True, "refused",
                                         "allows replies from mentioned only"),
    "outsiders' replies wait for approval": (_thread("approval", join=False), True, "held",
                                             "reply-approval"),
    "outsiders do not reply under the members rule": (_thread(join=False), True, "refused",
                                                      "allows replies from members only"),
    "members reply": (_thread(), True, "admitted", ""),
}


@pytest.mark.parametrize("rule", list(RULES))
async def test_a_local_and_a_remote_author_get_the_same_answer(world: World, rule: str) -> None:
    setup, is_reply, kind, reason = RULES[rule]
    world.v.cli("create-group", "g", "--owner", "owner")
    parent = await setup(world, "g")
    assert (parent is not None) == is_reply
    local = await asyncio.to_thread(world.local_post, "g", parent)
    remote = await world.remote_post("g", parent)
    assert local.kind == remote.kind == kind, (local, remote)
    assert reason in local.reason and reason in remote.reason, (local, remote)


async def test_the_group_blocking_a_server_refuses_its_people(world: World) -> None:
    """The one rule with no local twin: a group cannot block its own server."""
    world.v.cli("create-group", "g", "--owner", "owner")
    await world.both_join("g")
    world.v.cli("mod", "block-domain", "g", world.remote.base_url.split("://")[1])
    remote = await world.remote_post("g", None)
    assert remote == Outcome("refused", "refused: the group blocks this server")
    assert (await asyncio.to_thread(world.local_post, "g", None)).kind == "admitted"


async def follow_state(v: FediInstance, user: str, group: str) -> str | None:
    rows = await v.query(
        "SELECT f.state FROM follows f JOIN actors u ON u.id = f.follower_id "
        "JOIN actors g ON g.id = f.target_id WHERE u.username = :u AND u.local "
        "AND g.uri = :g", u=user, g=group)
    return rows[0][0] if rows else None


async def test_a_local_person_joins_a_private_group_as_anyone_does(world: World) -> None:
    v = world.v
    v.cli("create-group", "club", "--owner", "owner", "--privacy", "private",
          "--question", "Why do you want to join?")
    club = world.group("club")
    asked = v.cli("follow", "--as", "lou", f"@club@{v.domain}", "--answers", "I like cats")
    assert asked.stdout.strip() == f"{club} pending"
    assert await follow_state(v, "lou", club) == "pending"
    pending = v.cli("mod", "pending", "club").stdout
    assert world.lou in pending and "I like cats" in pending
    refused = v.cli("post", "--as", "lou", "--group", "club", "Before approval", check=False)
    assert refused.returncode == 2 and "only members may post" in refused.stderr

    v.cli("mod", "approve", "club", world.lou)
    assert await follow_state(v, "lou", club) == "accepted"
    assert v.cli("post", "--as", "lou", "--group", "club", "Now a member").returncode == 0

    left = v.cli("unfollow", "--as", "lou", f"@club@{v.domain}")
    assert left.returncode == 0 and await follow_state(v, "lou", club) is None
    refused = v.cli("post", "--as", "lou", "--group", "club", "After leaving", check=False)
    assert refused.returncode == 2 and "only members may post" in refused.stderr


async def test_a_local_person_needs_an_invite_for_an_invite_only_group(world: World) -> None:
    v = world.v
    v.cli("create-group", "den", "--owner", "owner", "--privacy", "private", "--join",
          "invite")
    den = world.group("den")
    refused = v.cli("follow", "--as", "lou", den, check=False)
    assert refused.returncode == 2 and "invite-only" in refused.stderr
    assert await follow_state(v, "lou", den) is None
    link = v.cli("mod", "invite", "den").stdout.strip()
    joined = v.cli("follow", "--as", "lou", den, "--invite", link)
    assert joined.stdout.strip() == f"{den} accepted"


async def test_a_refused_post_does_not_end_the_membership(
    instances: list[FediInstance],
) -> None:
    """A group refuses a member's reply (the thread is locked) with a Reject of the Create;
    the member's server keeps the membership, as the group does."""
    a, b, _ = instances
    a.cli("create-user", "alice")
    a.cli("create-group", "cats", "--owner", "alice")
    b.cli("create-user", "bob")
    a.start()
    b.start()
    cats = f"{a.base_url}/groups/cats"
    b.cli("follow", "--as", "bob", f"@cats@{a.domain}")
    await eventually(lambda: follow_state_is(b, "bob", cats, "accepted"), what="bob joined")
    thread = a.cli("post", "--as", "alice", "--group", "cats", "Locked soon.").stdout.strip()
    await eventually(lambda: b.query("SELECT 1 FROM posts WHERE uri = :u", u=thread),
                     what="the thread on B")
    a.cli("mod", "lock", "cats", thread)
    reply = b.cli("post", "--as", "bob", "--group", f"@cats@{a.domain}", "--reply-to", thread,
                  "Too late?").stdout.strip()
    await eventually(
        lambda: b.query("SELECT 1 FROM inbox_items WHERE body LIKE :r AND state = 'done'",
                        r=f'%"Reject"%{reply}%'),
        what="B handled A's Reject of the reply",
    )
    assert await follow_state(b, "bob", cats) == "accepted"
    assert await follow_state(a, "bob", cats) is None  # bob is remote on A: look him up
    members = await a.query(
        "SELECT f.state FROM follows f JOIN actors x ON x.id = f.follower_id "
        "WHERE x.uri = :u", u=f"{b.base_url}/users/bob")
    assert members == [("accepted",)]


async def follow_state_is(v: FediInstance, user: str, group: str, state: str) -> bool:
    return await follow_state(v, user, group) == state
