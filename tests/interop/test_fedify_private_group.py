"""Members-only posts reach a microblog member (Fedify, standing in for Mastodon) as the
group's own followers-only post, and nobody else: the representation Mastodon accepts
(see fedi/groups/relay.py and README "Privacy")."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.instance import FediInstance, eventually

from .fedify import FedifyPeer, fedify_available

pytestmark = [pytest.mark.interop, pytest.mark.federation]


@pytest.fixture
def peers() -> Iterator[tuple[FedifyPeer, FedifyPeer]]:
    ok, why = fedify_available()
    if not ok:
        pytest.fail(f"the Fedify peer is not installed: {why}")
    member, outsider = FedifyPeer(), FedifyPeer()
    try:
        member.start()
        outsider.start()
        yield member, outsider
    finally:
        member.stop()
        outsider.stop()


async def test_members_only_post_reaches_a_microblog_member_and_nobody_else(
    instances: list[FediInstance], peers: tuple[FedifyPeer, FedifyPeer]
) -> None:
    a = instances[0]
    a.cli("create-user", "alice")
    a.cli("create-group", "club", "--owner", "alice", "--privacy", "private")
    a.start()
    club = f"{a.base_url}/groups/club"
    member, outsider = peers
    await member.afollow(club)
    await eventually(lambda: member.actor_id in a.cli("mod", "pending", "club").stdout,
                     what="join request waiting")
    a.cli("mod", "approve", "club", member.actor_id)
    await eventually(lambda: [f for f in member.following() if f["state"] == "accepted"],
                     what="approved")
    await outsider.afollow(club)  # stays pending: never approved

    post = a.cli("post", "--as", "alice", "--group", "club",
                 "Members: meeting at 8.").stdout.strip()

    def copies() -> list[dict[str, object]]:
        return [x for x in member.received()["activities"]
                if x["type"] == "Create" and x["actor"] == club and x["verified"]]

    created = await eventually(copies, what="the member's server gets the group's post")
    note = created[0]["object"]
    assert isinstance(note, dict)
    assert note["attributedTo"] == club  # the group's own post: what Mastodon accepts
    assert note["to"] == [f"{club}/followers"]  # followers-only on a microblog
    assert "meeting at 8" in str(note["content"])
    assert note["url"] == post

    # Nobody else got it or can fetch it.
    assert not [x for x in outsider.received()["activities"] if x["type"] in ("Create",
                                                                            "Announce")]
    async with httpx.AsyncClient() as http:
        for url in (post, str(note["id"])):
            unsigned = await http.get(url, headers={"Accept": "application/activity+json"})
            assert unsigned.status_code == 404
    assert member.received()["rejected"] == []
