"""The fragment live.js inserts into an open page (GET /posts/ID/fragment) is drawn as the
page draws a loaded post: a reply as on the thread page, with the id of the post it answers
(where live.js nests it) and the same actions; a new thread as the group page lists it.
The gate decides, as for the post's own page."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tests.accounts.support import app, browser
from tests.web.writing_support import (
    join_open,
    make_group,
    person,
    post_id,
    write_reply,
    write_thread,
)


async def test_a_reply_fragment_names_its_parent_and_carries_a_loaded_replys_actions(
    database_url: str,
) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob, browser(fedi) as anonymous:
        await make_group(fedi, "cats", "ann", join_policy="open")
        await join_open(bob, "cats")
        thread_uri = await write_thread(ann, "cats", "Naps", "Where?")
        thread_id = await post_id(fedi, thread_uri)
        first = await post_id(fedi, await write_reply(bob, thread_uri, thread_id, "On the sofa"))
        second = await post_id(fedi, await write_reply(
            ann, f"/posts/{first}/reply", first, "Which sofa?"))

        # bob sees ann's answer to him as the thread page would draw it, nested under his.
        fragment = await bob.get(f"/posts/{second}/fragment")
        assert fragment.status_code == 200
        article = re.search(r"<article [^>]*>", fragment.text)
        assert article is not None
        assert f'id="p{second}"' in article.group(0) and 'class="reply"' in article.group(0)
        assert f'data-parent="p{first}"' in article.group(0)
        assert "aria-current" not in article.group(0)  # no post is the page's own here
        assert "Which sofa?" in fragment.text and "<time" in fragment.text
        assert f'action="/posts/{second}/like"' in fragment.text
        assert f'href="/posts/{second}/reply" class="reply-link"' in fragment.text
        assert f'href="/posts/{second}/report"' in fragment.text
        assert 'name="nonce"' not in fragment.text  # a link, not a form per post
        # Its forms come back to the thread page it goes into, not to the fragment.
        back = f'name="next" value="{urlsplit(thread_uri).path}#p{second}"'
        assert back in fragment.text and "/fragment" not in fragment.text

        # The thread page, reloaded, draws the same reply with the same actions.
        loaded = (await bob.get(thread_uri)).text
        assert f'<a href="/posts/{second}/reply" class="reply-link">' in loaded
        assert f'id="p{second}"' in loaded

        # Its author gets edit and delete; someone signed out gets the post, no actions.
        own = (await ann.get(f"/posts/{second}/fragment")).text
        assert f'href="/posts/{second}/edit"' in own and "/report" not in own
        outside = await anonymous.get(f"/posts/{second}/fragment")
        assert outside.status_code == 200 and "Which sofa?" in outside.text
        assert "post-actions" not in outside.text

        # A new thread is drawn as the group page lists it, with no parent to nest under.
        starter = await anonymous.get(f"/posts/{thread_id}/fragment")
        assert 'class="entry"' in starter.text and "data-parent" not in starter.text
        assert 'class="entry-title"' in starter.text and ">Naps</a>" in starter.text
        listed = (await bob.get(f"/posts/{thread_id}/fragment")).text
        assert f'name="next" value="/groups/cats#p{thread_id}"' in listed


async def test_a_fragment_is_refused_as_its_page_is(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            browser(fedi) as anonymous:
        await make_group(fedi, "club", "ann", privacy="private")
        members_only = await post_id(fedi, await write_thread(
            ann, "club", "Ours", "Members only", visibility="members"))
        assert (await ann.get(f"/posts/{members_only}/fragment")).status_code == 200
        refused = await anonymous.get(f"/posts/{members_only}/fragment")
        assert refused.status_code == 404 and "Members only" not in refused.text
        assert (await anonymous.get("/posts/999999/fragment")).status_code == 404
        assert (await anonymous.get("/posts/nope/fragment")).status_code == 404
