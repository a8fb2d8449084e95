"""RSS and Atom feeds of public groups: valid XML with the required elements, only what the
privacy gate shows an anonymous visitor, escaped content, and no feed for private or hidden
groups."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from sqlalchemy import update

from fedi.actors.local import create_group, create_user
from fedi.groups.posting import post_to_group
from fedi.store.models import Post
from tests.support.app import BASE_URL, InProcess, running_app

ATOM = "{http://www.w3.org/2005/Atom}"


async def _world(fedi: InProcess) -> dict[str, str]:
    urls = fedi.services.urls
    async with fedi.services.sessionmaker() as session, session.begin():
        ann = await create_user(session, urls, "ann", display_name="Ann <Admin>")
        town = await create_group(session, urls, "town", owner="ann", title="Town & Co",
                                  summary="Local news")
        club = await create_group(session, urls, "club", owner="ann", privacy="private")
        await create_group(session, urls, "cellar", owner="ann", privacy="hidden")
        await session.flush()
        first = await post_to_group(session, urls, ann, town, "Bring **soup** & bread",
                                    title='Picnic & "Saturday"')
        untitled = await post_to_group(session, urls, ann, town, "Just a note\x0b here")
        members = await post_to_group(session, urls, ann, town, "Members only",
                                      title="Secret plans", visibility="members")
        held = await post_to_group(session, urls, ann, town, "Waiting", title="Held one")
        await post_to_group(session, urls, ann, club, "Club talk", title="Club")
        await session.flush()
        await session.execute(update(Post).where(Post.uri == held.post.uri).values(
            held="premoderation"))
    return {"first": first.post.uri, "untitled": untitled.post.uri,
            "members": members.post.uri, "held": held.post.uri}


async def test_rss_lists_the_public_threads_escaped(database_url: str) -> None:
    async with running_app(database_url) as fedi:
        posts = await _world(fedi)
        answer = await fedi.http.get("/groups/town/feed.rss")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/rss+xml")
    root = ET.fromstring(answer.content)
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    assert channel.findtext("title") == "Town & Co"
    assert channel.findtext("link") == f"{BASE_URL}/groups/town"
    assert channel.findtext("description") == "Local news"
    items = channel.findall("item")
    assert sorted(i.findtext("guid") for i in items) == sorted(
        [posts["first"], posts["untitled"]])
    by_guid = {i.findtext("guid"): i for i in items}
    first = by_guid[posts["first"]]
    assert first.findtext("title") == 'Picnic & "Saturday"'
    assert first.findtext("link") == posts["first"]
    assert first.findtext("pubDate", "").endswith("+0000")
    # The stored, sanitised HTML travels as text: markup escaped, nothing left raw.
    description = first.findtext("description", "")
    assert "<strong>soup</strong>" in description and "&amp;" in description
    assert b"<strong>" not in answer.content
    untitled = by_guid[posts["untitled"]]
    # XML cannot carry the control character at all: it is dropped, the rest kept.
    assert untitled.findtext("description") == "<p>Just a note here</p>"
    assert (untitled.findtext("title") or "").startswith("Just a note")
    for hidden in ("Secret plans", "Members only", "Held one", "Waiting", "Club"):
        assert hidden not in answer.text


async def test_atom_has_the_required_elements(database_url: str) -> None:
    async with running_app(database_url) as fedi:
        posts = await _world(fedi)
        answer = await fedi.http.get("/groups/town/feed.atom")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(answer.content)
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}id") == f"{BASE_URL}/groups/town"
    assert feed.findtext(f"{ATOM}title") == "Town & Co"
    assert feed.findtext(f"{ATOM}updated")
    links = {link.get("rel"): link.get("href") for link in feed.findall(f"{ATOM}link")}
    assert links == {"self": f"{BASE_URL}/groups/town/feed.atom",
                     "alternate": f"{BASE_URL}/groups/town"}
    entries = feed.findall(f"{ATOM}entry")
    assert sorted(e.findtext(f"{ATOM}id") for e in entries) == sorted(
        [posts["first"], posts["untitled"]])
    for entry in entries:
        for required in ("id", "title", "updated", "published"):
            assert entry.findtext(f"{ATOM}{required}"), required
        assert entry.findtext(f"{ATOM}author/{ATOM}name") == "Ann <Admin>"
        content = entry.find(f"{ATOM}content")
        assert content is not None and content.get("type") == "html"
    assert "Secret plans" not in answer.text and "Held one" not in answer.text


async def test_private_hidden_and_unknown_groups_have_no_feed(database_url: str) -> None:
    async with running_app(database_url) as fedi:
        await _world(fedi)
        for name in ("club", "cellar", "nobody", "ann"):
            for kind in ("rss", "atom"):
                answer = await fedi.http.get(f"/groups/{name}/feed.{kind}")
                assert answer.status_code == 404, (name, kind)
                assert "Club talk" not in answer.text
        empty = await fedi.http.get("/groups/town/feed.atom")
        assert empty.status_code == 200
