"""Mentions written in Markdown text: which handles count, how they are linked, and that the
posting use case (the one `fedi post`, the web and the API call) makes them the audience."""

from __future__ import annotations

import json

import pytest

from fedi.actors.local import create_user
from fedi.content import Handle, markdown_to_html, mentions_in
from fedi.errors import ValidationError
from fedi.groups.posting import post_to_group
from tests.accounts.support import app
from tests.web.writing_support import actor, make_group


def test_handles_are_found_outside_code_links_and_mail_addresses() -> None:
    text = ("Hi @ann, @Bob@example.org and @cid@127.0.0.1:8001.\n"
            "Not `@code`, not [@link](https://x.example), not mail@example.org, "
            "not https://x.example/@path; @ann again.")
    assert mentions_in(text) == [Handle("ann", None), Handle("Bob", "example.org"),
                                 Handle("cid", "127.0.0.1:8001")]


def test_only_resolved_mentions_become_links_and_html_stays_out() -> None:
    html = markdown_to_html("@ann and @nobody <img src=x onerror=alert(1)>",
                            {"ann": "https://here.example/users/ann"})
    assert html == ('<p><a href="https://here.example/users/ann" class="mention" '
                    'rel="nofollow noopener noreferrer">@ann</a> and @nobody '
                    '&lt;img src=x onerror=alert(1)&gt;</p>')
    assert "<a" not in markdown_to_html("[x](javascript:alert(1)) <javascript:alert(1)>")
    assert "<a" not in markdown_to_html("[x](data:text/html,hi) [y](/relative)")


async def test_written_mentions_are_tags_links_and_the_mentioned_audience(
    database_url: str,
) -> None:
    async with app(database_url) as fedi:
        urls = fedi.services.urls
        async with fedi.services.sessionmaker() as session, session.begin():
            for name in ("ann", "bob"):
                await create_user(session, urls, name)
        await make_group(fedi, "cats", "ann")
        await make_group(fedi, "dogs", "ann")
        ann, bob, cats = [await actor(fedi, n) for n in ("ann", "bob", "cats")]
        async with fedi.services.sessionmaker() as session, session.begin():
            author = await session.merge(ann)
            group = await session.merge(cats)
            # A group is linked and tagged but is not a reader of a mentioned post.
            with pytest.raises(ValidationError, match="must mention someone"):
                await post_to_group(session, urls, author, group, "only @dogs",
                                    visibility="mentioned")
            published = await post_to_group(session, urls, author, group,
                                             "for @bob (and @dogs)", visibility="mentioned")
        note = json.loads(published.post.document)
        assert note["to"] == [bob.uri]
        assert {t["href"] for t in note["tag"]} == {cats.uri, bob.uri, urls.group("dogs")}
        assert f'href="{bob.uri}" class="mention"' in note["content"]
        assert f'href="{urls.group("dogs")}" class="mention"' in note["content"]
        assert note["source"]["mediaType"] == "text/markdown"
