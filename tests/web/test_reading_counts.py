"""A listing's "N replies" is what the gate lets each viewer see below the thread. Threads
whose every post is open to all are counted in SQL; any other thread (a members-only
branch, a deleted reply, a reply whose parent is in another thread) goes through the gate
post by post. Both must give the count the viewer would read on the thread page."""

from __future__ import annotations

import re

from tests.web.reading_world import world


def replies_said(page_text: str, post_id: int) -> int:
    entry = page_text.split(f'id="p{post_id}"', 1)[1].split("</article>", 1)[0]
    found = re.search(r">(\d+) repl(?:y|ies)</a>", entry)
    assert found, entry
    return int(found.group(1))


async def test_reply_counts_are_the_replies_each_viewer_may_see(database_url: str) -> None:
    async with world(database_url) as (w, stack):
        for name in ("olga", "mia", "otto"):
            await w.person(name, stack)
        await w.group("cats", "olga")
        await w.join("cats", "mia")  # otto is signed in here, not a member

        plain = await w.post("olga", "cats", "plain", title="Plain")
        first = await w.post("mia", "cats", "a", reply_to=plain)
        await w.post("olga", "cats", "b", reply_to=first)
        await w.post("mia", "cats", "c", reply_to=plain)

        branch = await w.post("olga", "cats", "branch", title="Branch")
        members = await w.post("mia", "cats", "ours", reply_to=branch, visibility="members")
        await w.post("olga", "cats", "under ours", reply_to=members)
        await w.post("mia", "cats", "for all", reply_to=branch)

        gone = await w.post("olga", "cats", "gone", title="Gone")
        deleted = await w.post("mia", "cats", "deleted", reply_to=gone)
        await w.post("olga", "cats", "under deleted", reply_to=deleted)
        await w.post("mia", "cats", "still here", reply_to=gone)
        await w.change(deleted, deleted_at=1.0, content="")

        # A reply stored in one thread that answers a members-only post of another.
        cross = await w.post("olga", "cats", "cross", title="Cross")
        odd = await w.post("mia", "cats", "odd one", reply_to=cross)
        await w.change(odd, in_reply_to=members.uri)
        await w.post("mia", "cats", "ordinary", reply_to=cross)

        expected = {  # thread: (anonymous, otto the outsider, mia the member)
            plain.id: (3, 3, 3), branch.id: (1, 1, 3), gone.id: (1, 1, 1), cross.id: (1, 1, 2),
        }
        for index, who in enumerate((None, "otto", "mia")):
            listing = (await w.page(who, "/groups/cats")).text
            for thread_id, counts in expected.items():
                assert replies_said(listing, thread_id) == counts[index], (who, thread_id)
            # The thread pages say the same (the cross-thread reply is not in its tree).
            for thread in (plain, branch, gone):
                page = (await w.page(who, thread.uri)).text
                assert f"<summary>{expected[thread.id][index]} repl" in page, (who, thread.id)
