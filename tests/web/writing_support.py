"""Helpers for the writing and joining page tests: people signed in on the in-process app,
a group, and counts of what a refused form must not have written."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy import func, select

from fedi.actors.local import create_group, find_local
from fedi.store.models import Actor, Delivery, OutboundActivity, Post, Reaction, Report
from tests.accounts.support import browser, log_in, sign_up, token_in
from tests.support.app import InProcess

NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@asynccontextmanager
async def person(fedi: InProcess, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser in which `name` has signed up and is logged in."""
    async with browser(fedi) as http:
        assert (await sign_up(http, name)).status_code == 303
        assert (await log_in(http, name)).status_code == 303
        yield http


async def make_group(fedi: InProcess, name: str, owner: str, **options: object) -> Actor:
    async with fedi.services.sessionmaker() as session, session.begin():
        return await create_group(session, fedi.services.urls, name, owner=owner,
                                  **options)  # type: ignore[arg-type]


async def actor(fedi: InProcess, name: str) -> Actor:
    async with fedi.services.sessionmaker() as session:
        found = await find_local(session, name)
    assert found is not None, name
    return found


@dataclass(frozen=True)
class Written:
    """What a form may write: posts, votes, reports, activities and deliveries."""

    posts: int
    reactions: int
    reports: int
    activities: int
    deliveries: int


async def written(fedi: InProcess) -> Written:
    async with fedi.services.sessionmaker() as session:
        async def count(model: type) -> int:
            return int((await session.execute(
                select(func.count()).select_from(model))).scalar_one())
        return Written(await count(Post), await count(Reaction), await count(Report),
                       await count(OutboundActivity), await count(Delivery))


def nonce_in(page: httpx.Response) -> str:
    found = NONCE.search(page.text)
    assert found, f"no form nonce on {page.url}"
    return found.group(1)


async def post_id(fedi: InProcess, uri: str) -> int:
    async with fedi.services.sessionmaker() as session:
        return int((await session.execute(select(Post.id).where(Post.uri == uri))).scalar_one())


async def join_open(http: httpx.AsyncClient, group: str) -> None:
    """Join an open group with the Join button of its page."""
    side = await http.get(f"/groups/{group}")
    joined = await http.post(f"/groups/{group}/join", data={"csrf": token_in(side)})
    assert joined.status_code == 303, joined.text


async def write_thread(http: httpx.AsyncClient, group: str, title: str, body: str,
                       **fields: str) -> str:
    """A new thread through the compose form; its URI."""
    form = await http.get(f"/groups/{group}/new")
    sent = await http.post(f"/groups/{group}/new", data={
        "csrf": token_in(form), "nonce": nonce_in(form), "title": title, "body": body,
        "action": "post", **fields})
    assert sent.status_code == 303, sent.text
    return sent.headers["location"]


async def write_reply(http: httpx.AsyncClient, page: str, parent: int, body: str) -> str:
    """A reply to post `parent` through the reply form on `page` (the thread page's box, or
    the reply page); its URI."""
    form = await http.get(page)
    sent = await http.post(f"/posts/{parent}/reply", data={
        "csrf": token_in(form), "nonce": nonce_in(form), "body": body, "action": "post"})
    assert sent.status_code == 303, sent.text
    return sent.headers["location"]
