"""A batch judges a group's candidates once for posts alike, whoever wrote them, and still
asks the gate about each post's own author (fedi.groups.relay._audience)."""

from __future__ import annotations

from sqlalchemy import event

from fedi.actors.local import create_group, create_user
from fedi.groups.relay import _audience
from fedi.privacy.access import PostFacts
from fedi.privacy.audience import Member
from fedi.privacy.visibility import Visibility
from fedi.services import Services
from fedi.store.memo import batch_memo
from fedi.store.models import Actor, Post


def person(name: str) -> Actor:
    uri = f"https://{name}.example/users/{name}"
    return Actor(uri=uri, type="Person", username=name, domain=f"{name}.example",
                 inbox=f"{uri}/inbox", public_key_pem="unused", key_id=f"{uri}#key")


async def test_each_author_is_judged_alone_while_the_rest_is_judged_once(
    services: Services,
) -> None:
    """A moderators-only note naming two people who are not moderators: the gate lets the
    author see their own note, and no one else named in it."""
    reads: list[str] = []
    event.listen(services.engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_r: reads.append(statement))
    async with services.sessionmaker() as session, session.begin():
        owner = await create_user(session, services.urls, "owner")
        group = await create_group(session, services.urls, "g", owner="owner")
        a, b = person("a"), person("b")
        session.add_all([a, b])
        await session.flush()
        by_a = PostFacts(author=a.uri, group=group.uri, visibility=Visibility.MODERATORS,
                         audience=frozenset({a.uri, b.uri}))
        by_b = PostFacts(author=b.uri, group=group.uri, visibility=Visibility.MODERATORS,
                         audience=frozenset({a.uri, b.uri}))
        async with batch_memo(session):
            first = await _audience(session, group, Post(), by_a, is_reply=False)
            reads.clear()
            second = await _audience(session, group, Post(), by_b, is_reply=False)
            read_for_second = list(reads)
            third = await _audience(session, group, Post(), by_a, is_reply=False)

    def uris(found: list[Member]) -> set[str]:
        return {m.recipient.uri for m in found}

    assert uris(first) == uris(third) == {owner.uri, a.uri}
    assert uris(second) == {owner.uri, b.uri}
    assert read_for_second == []  # the candidates were judged once, for both authors
