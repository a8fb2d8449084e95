"""Looking up groups and people on other servers (@name@host or a URL) and reading a remote
group's known threads from the same pages."""

from __future__ import annotations

import json
from urllib.parse import quote

from sqlalchemy import select

from fedi.store.models import Actor, Post
from tests.support.remote import FakeRemote
from tests.web.reading_world import shown, world


async def test_a_remote_group_is_looked_up_stored_and_shown_with_its_threads(
    database_url: str,
) -> None:
    remote = FakeRemote()
    lemmings = remote.add_actor("lemmings")
    remote.actor_types["lemmings"] = "Group"
    remote.add_actor("rita", key_index=1)
    await remote.start()
    try:
        async with world(database_url) as (w, stack):
            mia = await w.person("mia", stack)
            host = f"127.0.0.1:{remote.port}"
            page = await mia.get(f"/lookup?q={quote(f'@lemmings@{host}')}")
            assert page.status_code == 200, page.text[:500]
            assert f"@lemmings@{host}" in page.text
            assert 'aria-label="About this group"' in page.text
            assert remote.fetches["lemmings"] >= 1
            async with w.fedi.services.sessionmaker() as session, session.begin():
                group = (await session.execute(
                    select(Actor).where(Actor.uri == lemmings.uri))).scalar_one()
                author = (await session.execute(select(Actor).where(
                    Actor.username == "lemmings"))).scalar_one()
                thread = Post(uri=f"{remote.base_url}/objects/1", author_id=author.id,
                              group_id=group.id, name="A remote thread", local=False,
                              content="<p>from afar</p>", document=json.dumps({}))
                session.add(thread)
                await session.flush()
                thread.thread_id = thread.id
            # Known now: shown again without asking the other server, to anyone.
            fetches = remote.fetches["lemmings"]
            again = await w.fedi.http.get(f"/lookup?q={quote(lemmings.uri)}")
            assert again.status_code == 200 and remote.fetches["lemmings"] == fetches
            assert shown(again) == [thread.id]
            assert f'href="/remote/posts/{thread.id}"' in again.text
            read = await w.page(None, f"/remote/posts/{thread.id}")
            assert "from afar" in read.text and "A remote thread" in read.text
            # A person by URL.
            person = await mia.get(f"/lookup?q={quote(remote.actors['rita'].uri)}")
            assert person.status_code == 200 and f"@rita@{host}" in person.text
            assert 'aria-label="About this group"' not in person.text
    finally:
        await remote.stop()


async def test_lookup_explains_what_went_wrong_and_finds_local_names_here(
    database_url: str,
) -> None:
    remote = FakeRemote()
    await remote.start()
    try:
        async with world(database_url) as (w, stack):
            mia = await w.person("mia", stack)
            await w.group("cats", "mia")
            for q in ("@cats@fedi.test", "cats", "http://fedi.test/groups/cats"):
                found = await mia.get(f"/lookup?q={quote(q)}")
                assert found.status_code == 303, q
                assert found.headers["location"] == "http://fedi.test/groups/cats"
            cases = [
                ("@nobody", 400, "there is nobody called"),
                ("@@", 400, "is not an address"),
                ("two words", 400, "give an address"),
                (f"@ghost@127.0.0.1:{remote.port}", 502, "could not look up"),
                ("@someone@127.0.0.1:1", 502, "could not look up"),  # nothing listens there
            ]
            for q, status, message in cases:
                answer = await mia.get(f"/lookup?q={quote(q)}")
                assert answer.status_code == status, (q, answer.text[:300])
                assert message in answer.text, q
                assert 'role="alert"' in answer.text
            # Anyone may look up what this server knows; only people signed in make it ask
            # other servers.
            anonymous = await w.fedi.http.get(f"/lookup?q={quote('@x@127.0.0.1:1')}")
            assert anonymous.status_code == 400 and "log in to look up" in anonymous.text
            async with w.fedi.services.sessionmaker() as session:
                known = (await session.execute(select(Actor.uri))).scalars().all()
            assert not any("127.0.0.1" in uri for uri in known)
            form = await w.fedi.http.get("/lookup")
            assert form.status_code == 200 and '<label for="lookup-q">' in form.text
    finally:
        await remote.stop()
