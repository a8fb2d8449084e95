"""A small community for the reading pages' tests: the real app in process, people who
sign in from browsers, a group, and posts written through the same use cases as the CLI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import update

from fedi.actors.local import create_group, find_local
from fedi.groups.membership import join_local_group, leave_local_group
from fedi.groups.posting import post_to_group
from fedi.store.models import Actor, Post
from tests.accounts.support import app, browser, log_in, sign_up
from tests.support.app import InProcess

POST_ID = re.compile(r'id="p(\d+)"')


@dataclass
class World:
    fedi: InProcess
    browsers: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    async def person(self, name: str, stack: AsyncExitStack) -> httpx.AsyncClient:
        """Someone who signed up and is logged in, in their own browser."""
        client = await stack.enter_async_context(browser(self.fedi))
        assert (await sign_up(client, name)).status_code in (200, 303)
        await log_in(client, name)
        assert client.cookies.get("fedi_session"), f"{name} is not signed in"
        self.browsers[name] = client
        return client

    async def group(self, name: str, owner: str, **options: Any) -> Actor:
        async with self.fedi.services.sessionmaker() as session, session.begin():
            return await create_group(session, self.fedi.services.urls, name, owner=owner,
                                      **options)

    async def join(self, group: str, person: str) -> None:
        async with self.fedi.services.sessionmaker() as session, session.begin():
            g, p = await find_local(session, group), await find_local(session, person)
            assert g is not None and p is not None
            await join_local_group(session, self.fedi.services.urls, g, p)

    async def leave(self, group: str, person: str) -> None:
        async with self.fedi.services.sessionmaker() as session, session.begin():
            g, p = await find_local(session, group), await find_local(session, person)
            assert g is not None and p is not None
            assert await leave_local_group(session, g, p)

    async def post(self, author: str, group: str, text: str, *, reply_to: Post | None = None,
                   title: str | None = None, at: float | None = None, **options: Any) -> Post:
        """A post through the one way in; `at` back-dates it (sort orders, human dates)."""
        async with self.fedi.services.sessionmaker() as session, session.begin():
            a, g = await find_local(session, author), await find_local(session, group)
            assert a is not None and g is not None
            published = await post_to_group(
                session, self.fedi.services.urls, a, g, text,
                reply_to=reply_to.uri if reply_to else None, title=title, **options)
            post = published.post
            if at is not None:
                await session.execute(update(Post).where(Post.id == post.id)
                                      .values(published=at))
                post.published = at
            return post

    async def change(self, post: Post, **values: Any) -> None:
        async with self.fedi.services.sessionmaker() as session, session.begin():
            await session.execute(update(Post).where(Post.id == post.id).values(**values))

    async def page(self, who: str | None, path: str) -> httpx.Response:
        client = self.browsers[who] if who else self.fedi.http
        response = await client.get(path, headers={"Accept": "text/html"})
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        return response


def shown(page: httpx.Response | str) -> list[int]:
    """Ids of the posts a page shows, in page order (each post is an element id="pN")."""
    return [int(n) for n in POST_ID.findall(page if isinstance(page, str) else page.text)]


@asynccontextmanager
async def world(database_url: str) -> AsyncIterator[tuple[World, AsyncExitStack]]:
    async with app(database_url) as fedi, AsyncExitStack() as stack:
        yield World(fedi), stack
