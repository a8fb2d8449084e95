"""Compose, preview, reply, edit, delete from the browser (in process), through the same use
cases as `fedi post`: Markdown sanitised, mentions linked, the form's one-time id honoured."""

from __future__ import annotations

import json

from sqlalchemy import select

from fedi.store.models import Post, PostAudience
from tests.accounts.support import app, token_in
from tests.web.writing_support import actor, make_group, nonce_in, person, written


async def _post(fedi, uri: str) -> Post:  # type: ignore[no-untyped-def]
    async with fedi.services.sessionmaker() as session:
        return (await session.execute(select(Post).where(Post.uri == uri))).scalar_one()


async def test_new_thread_is_markdown_with_a_preview_and_posts_once(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann:
        await make_group(fedi, "cats", "ann", title="Cats")
        form = await ann.get("/groups/cats/new")
        assert form.status_code == 200
        assert 'name="title"' in form.text and 'name="visibility"' in form.text
        assert '<option value="public" selected>' in form.text  # the group's default
        fields = {"csrf": token_in(form), "nonce": nonce_in(form), "title": "Naps",
                  "body": "**Where** do @ann's cats sleep? <script>alert(1)</script>\n"
                          "[x](javascript:alert(1)) [ok](https://example.org/a)",
                  "visibility": "public", "replies": "members"}
        before = await written(fedi)
        preview = await ann.post("/groups/cats/new", data={**fields, "action": "preview"})
        assert preview.status_code == 200
        assert "<strong>Where</strong>" in preview.text
        assert 'class="mention"' in preview.text
        assert "<script>alert" not in preview.text and "&lt;script&gt;" in preview.text
        assert 'href="javascript' not in preview.text
        assert await written(fedi) == before  # a preview writes nothing

        done = await ann.post("/groups/cats/new", data={**fields, "action": "post"})
        assert done.status_code == 303
        uri = done.headers["location"]
        post = await _post(fedi, uri)
        assert post.name == "Naps" and post.visibility == "public"
        assert "<strong>Where</strong>" in post.content
        assert "<script>" not in post.content and "&lt;script&gt;" in post.content
        assert 'href="javascript' not in post.content  # left as text, not a link
        assert '<a href="https://example.org/a"' in post.content
        note = json.loads(post.document)
        assert note["source"] == {"content": fields["body"], "mediaType": "text/markdown"}
        assert any(t["type"] == "Mention" and t["href"].endswith("/groups/cats")
                   for t in note["tag"])

        # The same form again (a reload, a double click): nothing new is posted.
        after = await written(fedi)
        again = await ann.post("/groups/cats/new", data={**fields, "action": "post"})
        assert again.status_code == 409 and "already sent" in again.text
        assert uri in again.text
        assert await written(fedi) == after


async def test_reply_edit_and_delete_own_post(database_url: str) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob:
        await make_group(fedi, "cats", "ann")
        form = await ann.get("/groups/cats/new")
        thread = (await ann.post("/groups/cats/new", data={
            "csrf": token_in(form), "nonce": nonce_in(form), "title": "Naps",
            "body": "Where?", "action": "post"})).headers["location"]
        root = await _post(fedi, thread)

        page = await ann.get(f"/posts/{root.id}/reply")
        assert page.status_code == 200 and "Where?" in page.text
        preview = await ann.post(f"/posts/{root.id}/reply", data={
            "csrf": token_in(page), "nonce": nonce_in(page), "body": "_On_ the sofa",
            "action": "preview"})
        assert "<em>On</em> the sofa" in preview.text
        replied = await ann.post(f"/posts/{root.id}/reply", data={
            "csrf": token_in(preview), "nonce": nonce_in(preview), "body": "_On_ the sofa",
            "action": "post"})
        assert replied.status_code == 303
        reply = await _post(fedi, replied.headers["location"])
        assert reply.in_reply_to == root.uri and reply.thread_id == root.id

        # Only the author edits: someone else gets the same 404 as for a missing post.
        assert (await bob.get(f"/posts/{reply.id}/edit")).status_code == 404
        edit = await ann.get(f"/posts/{reply.id}/edit")
        assert edit.status_code == 200 and "_On_ the sofa" in edit.text  # the Markdown source
        saved = await ann.post(f"/posts/{reply.id}/edit", data={
            "csrf": token_in(edit), "body": "On the **bed**", "action": "save"})
        assert saved.status_code == 303
        assert "<strong>bed</strong>" in (await _post(fedi, reply.uri)).content

        # Delete needs the box ticked; without it nothing is deleted.
        unconfirmed = await ann.post(f"/posts/{reply.id}/delete",
                                     data={"csrf": token_in(edit)})
        assert unconfirmed.status_code == 400 and "nothing was deleted" in unconfirmed.text
        assert (await _post(fedi, reply.uri)).deleted_at is None
        other = await bob.post(f"/posts/{reply.id}/delete",
                               data={"csrf": token_in(await bob.get("/settings")),
                                     "confirm": "yes"})
        assert other.status_code == 404
        assert (await _post(fedi, reply.uri)).deleted_at is None
        gone = await ann.post(f"/posts/{reply.id}/delete",
                              data={"csrf": token_in(edit), "confirm": "yes"})
        assert gone.status_code == 200 and "deleted" in gone.text
        assert (await _post(fedi, reply.uri)).deleted_at is not None


async def test_mentions_in_the_text_are_the_audience_of_a_mentioned_post(
    database_url: str,
) -> None:
    async with app(database_url) as fedi, person(fedi, "ann") as ann, \
            person(fedi, "bob") as bob, person(fedi, "cid") as cid:
        await make_group(fedi, "cats", "ann")
        form = await ann.get("/groups/cats/new")
        fields = {"csrf": token_in(form), "title": "Psst", "visibility": "mentioned",
                  "action": "post"}
        before = await written(fedi)
        nobody = await ann.post("/groups/cats/new", data={
            **fields, "nonce": nonce_in(form), "body": "Hello @nobody, and @gone@nowhere.invalid"})
        assert nobody.status_code == 400
        assert "must mention someone" in nobody.text
        assert "nobody was found for @nobody, @gone@nowhere.invalid" in nobody.text
        assert "Hello @nobody" in nobody.text  # what was typed is kept
        assert await written(fedi) == before

        done = await ann.post("/groups/cats/new", data={
            **fields, "nonce": nonce_in(form), "body": "Hello @bob, cake at four"})
        assert done.status_code == 303
        post = await _post(fedi, done.headers["location"])
        bob_actor = await actor(fedi, "bob")
        assert post.visibility == "mentioned"
        assert f'<a href="{bob_actor.uri}" class="mention"' in post.content
        async with fedi.services.sessionmaker() as session:
            audience = set((await session.execute(
                select(PostAudience.actor_id).where(PostAudience.post_id == post.id)
            )).scalars())
        assert audience == {bob_actor.id}
        note = json.loads(post.document)
        assert note["to"] == [bob_actor.uri]
        # Bob may act on it; cid, not mentioned, is told it does not exist.
        assert (await bob.get(f"/posts/{post.id}/report")).status_code == 200
        assert (await cid.get(f"/posts/{post.id}/report")).status_code == 404
