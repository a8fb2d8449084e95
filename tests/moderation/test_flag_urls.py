"""A remote Flag's object URIs pass the same http(s) check as every URL from a remote
document (SECURITY 20): `javascript:` and friends are neither looked up nor stored, and a
Flag padded with them cannot crowd out what it really names."""

from __future__ import annotations

import json

from sqlalchemy import select

from fedi.store.models import InboxItem
from tests.moderation.test_reports import flag, member_posts, reports, send
from tests.support.app import InProcess
from tests.support.remote import FakeRemote


def script_uris(remote: FakeRemote, post_uri: str) -> list[str]:
    host = remote.base_url.removeprefix("http://")
    return [
        "javascript:alert(document.cookie)",
        f"javascript://{host}/notes/1%0aalert(1)",
        f"JavaScript://{host}/notes/1",
        "data:text/html,<script>alert(1)</script>",
        f"file:///{host}/notes/1",
        f"//{host}/notes/1",  # schemeless
        f" {post_uri}",  # whitespace a browser would strip
    ]


async def test_a_flag_naming_script_uris_stores_only_http_ones(
    fedi: InProcess, remote: FakeRemote
) -> None:
    post_uri = await member_posts(fedi, remote)
    padding = script_uris(remote, post_uri) * 8  # more than the 50 objects a Flag may name
    assert await send(fedi, remote, "mod", flag(remote, [*padding, post_uri])) == 202
    await fedi.services.processor.run_once()
    [report] = await reports(fedi)
    assert json.loads(report.post_uris) == [post_uri]


async def test_a_flag_naming_only_script_uris_files_nothing(
    fedi: InProcess, remote: FakeRemote
) -> None:
    post_uri = await member_posts(fedi, remote)
    activity = flag(remote, script_uris(remote, post_uri), suffix="scripts")
    assert await send(fedi, remote, "mod", activity) == 202
    await fedi.services.processor.run_once()
    assert await reports(fedi) == []
    async with fedi.services.sessionmaker() as session:
        item = (await session.execute(
            select(InboxItem).where(InboxItem.activity_uri == activity["id"]))).scalar_one()
    assert (item.state, item.error) == ("done", "the Flag names no http(s) object")
