"""Property-based, through the reading pages: for the privacy property tests' generated
worlds (tests/privacy/test_read_paths_property.py), no page shows a post the gate refuses.

People of this server sign in from browsers (a member, a moderator, an outsider, a banned
member, one who left) and read the front page, their home feed, the group page in every
sort, the author's page and every thread page. Each post a page shows must be one the
independent oracle (tests/privacy/oracle.py) and privacy.access both let that viewer see;
a post page they may not see answers 404, and no refused post's text is on any page.
"""

from __future__ import annotations

import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from unittest.mock import patch

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from fedi.actors.local import find_local
from fedi.errors import ValidationError
from fedi.groups import moderation
from fedi.groups.circles import create_circle, set_membership
from fedi.groups.posting import post_to_group
from fedi.groups.viewers import facts_for, viewer_for
from fedi.privacy.access import can_view
from fedi.store.models import Actor, Post, PostAudience
from tests.privacy.oracle import Spec, may_see
from tests.privacy.test_read_paths_property import post_specs
from tests.support.databases import create_database, drop_database
from tests.support.remote import test_keypair as premade_keypair
from tests.web.reading_world import World, shown, world

# The privacy worlds' names, as people of this server: "m2" left the group, "blk" (a
# suspended server there) is a second member here.
ROLES = {"m1": "member", "m2": "outsider", "mod": "moderator", "out": "outsider",
         "ban": "banned", "blk": "member"}
JOINED = ("m1", "m2", "mod", "ban", "blk")


@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(specs=post_specs, circle=st.frozensets(st.sampled_from(sorted(ROLES)), max_size=3))
async def test_no_reading_page_shows_a_post_the_gate_refuses(
    specs: list[tuple[str, frozenset[str], int | None]], circle: frozenset[str]
) -> None:
    url = await create_database(Path(tempfile.mkdtemp()), "reading")
    try:
        with patch("fedi.actors.local.generate_rsa_keypair", lambda: premade_keypair(7)):
            async with world(url) as (w, stack):
                await _check(w, stack, specs, circle)
    finally:
        await drop_database(url)


async def _check(w: World, stack: AsyncExitStack,
                 specs: list[tuple[str, frozenset[str], int | None]],
                 circle_names: frozenset[str]) -> None:
    urls = w.fedi.services.urls
    for name in ("owner", *ROLES):
        await w.person(name, stack)
    await w.group("g", "owner")
    for name in JOINED:
        await w.join("g", name)
    async with w.fedi.services.sessionmaker() as session, session.begin():
        group, owner = await find_local(session, "g"), await find_local(session, "owner")
        mod, banned = await find_local(session, "mod"), await find_local(session, "ban")
        assert group and owner and mod and banned
        await moderation.set_moderator(session, urls, group, mod, appoint=True)
        await moderation.ban(session, urls, group, banned, by=None, reason=None)
        circle = await create_circle(session, owner, "c")
        for name in circle_names:
            person = await find_local(session, name)
            assert person is not None
            await set_membership(session, circle, person, member=True)
    await w.leave("g", "m2")

    posted: list[tuple[Post, Spec]] = []
    texts: dict[int, str] = {}  # what each post says, and its title if it has one
    for visibility, mentioned, reply_index in specs:
        parent = posted[reply_index] if reply_index is not None and reply_index < len(
            posted) else None
        async with w.fedi.services.sessionmaker() as session, session.begin():
            author, group = await find_local(session, "owner"), await find_local(session, "g")
            assert author is not None and group is not None
            people = [await find_local(session, n) for n in sorted(mentioned)]
            try:
                result = await post_to_group(
                    session, urls, author, group, f"post {len(posted)}",
                    reply_to=parent[0].uri if parent else None,
                    title=None if parent else f"thread {len(posted)}", visibility=visibility,
                    mentions=[p for p in people if p is not None],
                )
            except ValidationError:
                continue  # refused, nothing written (e.g. "mentioned" with nobody named)
        texts[result.post.id] = f"post {len(posted)}"
        async with w.fedi.services.sessionmaker() as session:
            named = frozenset((await session.execute(
                select(Actor.username).join(PostAudience, PostAudience.actor_id == Actor.id)
                .where(PostAudience.post_id == result.post.id))).scalars())
        posted.append((result.post, Spec(result.post.visibility, "owner", frozenset(named),
                                         parent[1] if parent else None)))
    if not posted:
        return

    for name, role in [(None, "anonymous"), *ROLES.items(), ("owner", "moderator")]:
        async with w.fedi.services.sessionmaker() as session:
            viewer = await viewer_for(session, None if name is None else
                                      f"{w.fedi.settings.base_url}/users/{name}")
            gate = {p.id: can_view(await facts_for(session, p), viewer) for p, _ in posted}
        oracle = {p.id: may_see(spec, name, role) for p, spec in posted}
        assert gate == oracle, (name, role)  # the worlds agree with the oracle here too
        pages = ["/", "/users/owner", *(f"/groups/g?sort={s}" for s in ("hot", "new", "active"))]
        if name is not None:
            pages.append("/home")
        for post, _ in posted:
            client = w.browsers[name] if name else w.fedi.http
            answer = await client.get(post.uri, headers={"Accept": "text/html"})
            assert answer.status_code == (200 if gate[post.id] else 404), (name, post.uri)
            if gate[post.id]:
                pages.append(post.uri)
        for path in pages:
            page = await w.page(name, path)
            for post_id in shown(page):
                assert gate.get(post_id, False), (name, role, path, post_id)
            for post, _ in posted:
                if not gate[post.id]:  # neither its text nor its title
                    for text in (f">{post.name}<", f">{texts[post.id]}<"):
                        assert text not in page.text, (name, path, post.id)
