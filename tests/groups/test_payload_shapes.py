"""Payloads shaped exactly as Mastodon, Lemmy, Misskey and Pleroma send them, into a fedi group.

Each builder copies one server's wire format, quirks included, from its own serializers and
published examples: Mastodon's ActivityPub::NoteSerializer / TagManager / Like, Delete and
Update serializers; Lemmy's crates/apub/assets/lemmy (objects/page.json, note.json,
activities/create_or_update, deletion, voting); Misskey's ApRendererService (renderNote,
renderLike, renderUpdate, renderDelete, renderUndo); Pleroma's transmogrifier and Builder.

The tests post them, signed, to the real app, run the inbox and delivery workers by hand and
look at what was stored and what the group sent to three fake servers on loopback:

- origin: the authors' server (alice, mallory), running the shape's own software;
- micro: a microblog (no NodeInfo) where bob is a member: it gets boosts, Announce(post id);
- lemmy: a threaded server (NodeInfo says lemmy) where lm is a member: it gets the member's
  activity wrapped unchanged in the group's Announce (FEP-1b12).
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from sqlalchemy import select

from fedi.activitypub.httpsig import parse_signature, verify_request
from fedi.activitypub.vocab import PUBLIC, id_of
from fedi.actors import local as local_actors
from fedi.actors.local import create_group, create_user
from fedi.groups.moderation import ban
from fedi.store.models import Actor, InboxItem, Post, Reaction
from tests.support import remote as fake_remote
from tests.support.app import BASE_URL, InProcess, running_app
from tests.support.remote import FakeRemote, InboxPost, RemoteActor

GROUP = f"{BASE_URL}/groups/cats"
GROUP_INBOX = f"{GROUP}/inbox"
SHARED_INBOX = f"{BASE_URL}/inbox"
GROUP_FOLLOWERS = f"{GROUP}/followers"
GROUP_KEY_ID = f"{GROUP}#main-key"
GROUP_HANDLE = "@cats@fedi.test"
AS = "https://www.w3.org/ns/activitystreams"
PUBLISHED = "2024-05-01T12:00:00Z"
EDITED = "2024-05-01T12:30:00Z"


def _base(actor: RemoteActor) -> str:
    return actor.uri.split("/users/", 1)[0]


def _host(actor: RemoteActor) -> str:
    return urlsplit(actor.uri).netloc


def _handle(uri: str) -> str:
    """@name@host of an actor URI, as every one of these servers names a mention."""
    parts = urlsplit(uri)
    return f"@{parts.path.rstrip('/').rsplit('/', 1)[-1]}@{parts.netloc}"


def _without_context(activity: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in activity.items() if k != "@context"}


# -- the shapes ---------------------------------------------------------------------------------
class Shape:
    """One server's wire format. Every method returns a whole activity, @context included.

    `thread` starts a thread in the group, `reply` answers an object, `update` and `delete`
    change one, `react` is the server's favourite reaction and `undo` takes an activity back.
    Text uses "\\n\\n" between paragraphs and "\\n" for a line break, rendered the server's way.
    """

    name: ClassVar[str]
    threaded: ClassVar[bool] = False  # the server's own software shows threads (NodeInfo)
    inbox: ClassVar[str] = SHARED_INBOX  # where that server delivers to the group
    reaction: ClassVar[tuple[str, str | None, int]]  # (type, stored content, like_count)

    def __init__(self) -> None:
        self._serial = itertools.count(1)

    def thread(self, author: RemoteActor, text: str, *, title: str | None = None,
               public: str = PUBLIC) -> dict[str, Any]:
        raise NotImplementedError

    def reply(self, author: RemoteActor, parent: dict[str, Any], text: str) -> dict[str, Any]:
        raise NotImplementedError

    def update(self, author: RemoteActor, obj: dict[str, Any], text: str, *,
               title: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def delete(self, author: RemoteActor, obj_id: str, *, tombstone: bool) -> dict[str, Any]:
        raise NotImplementedError

    def react(self, author: RemoteActor, obj: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def undo(self, author: RemoteActor, activity: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _next(self) -> int:
        return next(self._serial)


class Mastodon(Shape):
    """Statuses: `to: [Public]`, `cc: [followers, mentioned…]`, the group only as a Mention;
    `summary` is the content warning (null without one), plus contentMap, conversation
    (an OStatus tag URI), atomUri, sensitive and an embedded replies collection."""

    name = "mastodon"
    reaction = ("Like", None, 1)
    CONTEXT: ClassVar[list[Any]] = [AS, {
        "ostatus": "http://ostatus.org#", "atomUri": "ostatus:atomUri",
        "inReplyToAtomUri": "ostatus:inReplyToAtomUri", "conversation": "ostatus:conversation",
        "sensitive": "as:sensitive", "toot": "http://joinmastodon.org/ns#",
        "votersCount": "toot:votersCount", "Hashtag": "as:Hashtag",
    }]

    @staticmethod
    def _mention_html(uri: str) -> str:
        name = _handle(uri).split("@")[1]
        return (f'<span class="h-card" translate="no"><a href="{uri}" class="u-url mention">'
                f"@<span>{name}</span></a></span>")

    @classmethod
    def _html(cls, mentions: list[str], text: str) -> str:
        # TextFormatter: paragraphs in <p>, line breaks as Rails' simple_format writes them.
        prefix = " ".join(cls._mention_html(uri) for uri in mentions)
        paragraphs = text.split("\n\n")
        paragraphs[0] = f"{prefix} {paragraphs[0]}"
        return "".join(f"<p>{p.replace(chr(10), '<br />')}</p>" for p in paragraphs)

    def _status(self, author: RemoteActor, text: str, *, summary: str | None,
                parent: dict[str, Any] | None, public: str) -> dict[str, Any]:
        status_id = f"11243{self._next():013d}"
        uri = f"{author.uri}/statuses/{status_id}"
        mentioned = ([parent["attributedTo"]] if parent else []) + [GROUP]
        mentioned = list(dict.fromkeys(m for m in mentioned if m != author.uri))
        html = self._html(mentioned, text)
        conversation = (parent or {}).get("conversation") or (
            f"tag:{_host(author)},2024-05-01:objectId={status_id}:objectType=Conversation")
        note = {
            "id": uri, "type": "Note", "summary": summary,
            "inReplyTo": parent["id"] if parent else None,
            "published": PUBLISHED, "url": f"{_base(author)}/@{author.name}/{status_id}",
            "attributedTo": author.uri,
            "to": [public],
            "cc": [f"{author.uri}/followers", *mentioned],
            "sensitive": summary is not None,
            "atomUri": uri, "inReplyToAtomUri": parent["id"] if parent else None,
            "conversation": conversation,
            "content": html, "contentMap": {"en": html},
            "attachment": [],
            "tag": [{"type": "Mention", "href": m, "name": _handle(m) if m != GROUP
                     else GROUP_HANDLE} for m in mentioned],
            "replies": {
                "id": f"{uri}/replies", "type": "Collection",
                "first": {"type": "CollectionPage", "partOf": f"{uri}/replies", "items": [],
                          "next": f"{uri}/replies?only_other_accounts=true&page=true"},
            },
        }
        return {"@context": self.CONTEXT, "id": f"{uri}/activity", "type": "Create",
                "actor": author.uri, "published": PUBLISHED, "to": note["to"], "cc": note["cc"],
                "object": note}

    def thread(self, author: RemoteActor, text: str, *, title: str | None = None,
               public: str = PUBLIC) -> dict[str, Any]:
        return self._status(author, text, summary=title, parent=None, public=public)

    def reply(self, author: RemoteActor, parent: dict[str, Any], text: str) -> dict[str, Any]:
        return self._status(author, text, summary=None, parent=parent, public=PUBLIC)

    def update(self, author: RemoteActor, obj: dict[str, Any], text: str, *,
               title: str | None = None) -> dict[str, Any]:
        note = copy.deepcopy(obj)
        mentions = [t["href"] for t in note["tag"]]
        note["content"] = self._html(mentions, text)
        note["contentMap"] = {"en": note["content"]}
        note["summary"] = title
        note["updated"] = EDITED
        status_id = obj["id"].rsplit("/", 1)[-1]
        return {"@context": self.CONTEXT,
                "id": f"{author.uri}/statuses/{status_id}#updates/{1714566600 + self._next()}",
                "type": "Update", "actor": author.uri, "published": EDITED,
                "to": note["to"], "cc": note["cc"], "object": note}

    def delete(self, author: RemoteActor, obj_id: str, *, tombstone: bool) -> dict[str, Any]:
        status_id = obj_id.rsplit("/", 1)[-1]
        obj: Any = ({"id": obj_id, "type": "Tombstone", "atomUri": obj_id} if tombstone
                    else obj_id)
        return {"@context": [AS, {"ostatus": "http://ostatus.org#",
                                  "atomUri": "ostatus:atomUri"}],
                "id": f"{author.uri}/statuses/{status_id}#delete", "type": "Delete",
                "actor": author.uri, "to": [PUBLIC], "object": obj}

    def react(self, author: RemoteActor, obj: dict[str, Any]) -> dict[str, Any]:
        return {"@context": AS, "id": f"{author.uri}#likes/{self._next()}", "type": "Like",
                "actor": author.uri, "object": obj["id"]}

    def undo(self, author: RemoteActor, activity: dict[str, Any]) -> dict[str, Any]:
        like_id = activity["id"].rsplit("#likes/", 1)[-1]
        return {"@context": AS, "id": f"{author.uri}#likes/{like_id}/undo", "type": "Undo",
                "actor": author.uri, "object": _without_context(activity)}


class Lemmy(Shape):
    """Posts are Pages with a `name` (the title), `to: [community, Public]`, `cc: []`,
    `audience` = community, markdown `source` and `mediaType: text/html`; comments are Notes
    with `inReplyTo` and `audience`. Deletes name the object by id; votes are Like."""

    name = "lemmy"
    threaded = True
    inbox = GROUP_INBOX  # Lemmy delivers to the community's own inbox
    reaction = ("Like", None, 1)
    CONTEXT: ClassVar[list[Any]] = ["https://join-lemmy.org/context.json", AS]

    @staticmethod
    def _html(text: str) -> str:
        return "".join(f"<p>{p}</p>\n" for p in text.split("\n\n"))

    def _activity(self, kind: str, author: RemoteActor, obj: Any, **extra: Any) -> dict[str, Any]:
        return {"@context": self.CONTEXT, "actor": author.uri, "to": [PUBLIC], "object": obj,
                "cc": [GROUP], **extra, "audience": GROUP, "type": kind,
                "id": f"{_base(author)}/activities/{kind.lower()}/{uuid.uuid4()}"}

    def thread(self, author: RemoteActor, text: str, *, title: str | None = None,
               public: str = PUBLIC) -> dict[str, Any]:
        page = {
            "type": "Page", "id": f"{_base(author)}/post/{self._next()}",
            "attributedTo": author.uri, "to": [GROUP, public], "cc": [], "audience": GROUP,
            "name": title or text.split("\n")[0],
            "content": self._html(text), "mediaType": "text/html",
            "source": {"content": text, "mediaType": "text/markdown"},
            "attachment": [{"type": "Link", "href": f"{_base(author)}/pictrs/image/cat.png"}],
            "commentsEnabled": True, "sensitive": False, "stickied": False,
            "language": {"identifier": "en", "name": "English"},
            "published": PUBLISHED,
        }
        return self._activity("Create", author, page)

    def reply(self, author: RemoteActor, parent: dict[str, Any], text: str) -> dict[str, Any]:
        parent_author = parent["attributedTo"]
        tag = [{"href": parent_author, "name": _handle(parent_author), "type": "Mention"}]
        note = {
            "type": "Note", "id": f"{_base(author)}/comment/{self._next()}",
            "attributedTo": author.uri, "to": [PUBLIC], "cc": [GROUP, parent_author],
            "content": self._html(text), "mediaType": "text/html",
            "source": {"content": text, "mediaType": "text/markdown"},
            "inReplyTo": parent["id"], "published": PUBLISHED, "tag": tag,
            "distinguished": False, "audience": GROUP,
            "language": {"identifier": "en", "name": "English"},
        }
        activity = self._activity("Create", author, note, tag=tag)
        activity["cc"] = [GROUP, parent_author]
        return activity

    def update(self, author: RemoteActor, obj: dict[str, Any], text: str, *,
               title: str | None = None) -> dict[str, Any]:
        changed = copy.deepcopy(obj)
        changed["content"] = self._html(text)
        changed["source"] = {"content": text, "mediaType": "text/markdown"}
        if title is not None:
            changed["name"] = title
        changed["updated"] = EDITED
        return self._activity("Update", author, changed)

    def delete(self, author: RemoteActor, obj_id: str, *, tombstone: bool) -> dict[str, Any]:
        obj: Any = {"id": obj_id, "type": "Tombstone"} if tombstone else obj_id
        return self._activity("Delete", author, obj)

    def react(self, author: RemoteActor, obj: dict[str, Any]) -> dict[str, Any]:
        return {"@context": self.CONTEXT, "actor": author.uri, "object": obj["id"],
                "type": "Like", "audience": GROUP,
                "id": f"{_base(author)}/activities/like/{uuid.uuid4()}"}

    def undo(self, author: RemoteActor, activity: dict[str, Any]) -> dict[str, Any]:
        return self._activity("Undo", author, _without_context(activity))


class Misskey(Shape):
    """Notes carry `_misskey_content` and `source` in MFM, `_misskey_quote` and `quoteUrl`
    (with "RE: url" appended to the HTML), `to: [Public]`, `cc: [followers, mentioned…]`,
    explicit `inReplyTo: null`; reactions are Like with `_misskey_reaction` and `content`;
    Delete carries a Tombstone, no addressing and a random id; Undo ids are `<like>/undo`."""

    name = "misskey"
    reaction = ("Like", "🍮", 1)
    CONTEXT: ClassVar[list[Any]] = [AS, "https://w3id.org/security/v1", {
        "manuallyApprovesFollowers": "as:manuallyApprovesFollowers", "sensitive": "as:sensitive",
        "Hashtag": "as:Hashtag", "quoteUrl": "as:quoteUrl", "toot": "http://joinmastodon.org/ns#",
        "Emoji": "toot:Emoji", "featured": "toot:featured", "discoverable": "toot:discoverable",
        "misskey": "https://misskey-hub.net/ns#",
        "_misskey_content": "misskey:_misskey_content", "_misskey_quote": "misskey:_misskey_quote",
        "_misskey_reaction": "misskey:_misskey_reaction",
        "_misskey_votes": "misskey:_misskey_votes", "isCat": "misskey:isCat",
        "vcard": "http://www.w3.org/2006/vcard/ns#",
    }]

    @staticmethod
    def _html(mentions: list[str], text: str, quote: str | None) -> str:
        links = " ".join(
            f'<a href="{uri}" class="u-url mention">'
            f'{GROUP_HANDLE if uri == GROUP else _handle(uri)}</a>' for uri in mentions)
        body = f"{links} {text}"
        if quote:
            body += f'\n\nRE: <a href="{quote}">{quote}</a>'
        return f"<p>{body.replace(chr(10), '<br>')}</p>"

    def _note(self, author: RemoteActor, text: str, *, cw: str | None,
              parent: dict[str, Any] | None, quote: str | None) -> dict[str, Any]:
        note_id = f"{_base(author)}/notes/9r{self._next():08d}"
        mentioned = ([parent["attributedTo"]] if parent else []) + [GROUP]
        mentioned = list(dict.fromkeys(m for m in mentioned if m != author.uri))
        mfm = " ".join(GROUP_HANDLE if m == GROUP else _handle(m) for m in mentioned)
        note: dict[str, Any] = {
            "id": note_id, "type": "Note", "attributedTo": author.uri,
            "content": self._html(mentioned, text, quote),
            "_misskey_content": f"{mfm} {text}",
            "source": {"content": f"{mfm} {text}", "mediaType": "text/x.misskeymarkdown"},
            "published": PUBLISHED,
            "to": [PUBLIC], "cc": [f"{author.uri}/followers", *mentioned],
            "inReplyTo": parent["id"] if parent else None,
            "attachment": [], "sensitive": cw is not None,
            "tag": [{"type": "Mention", "href": m,
                     "name": GROUP_HANDLE if m == GROUP else _handle(m)} for m in mentioned],
        }
        if cw is not None:
            # renderNote: an empty CW is sent as a zero-width space.
            note["summary"] = cw or "\u200b"
        if quote:
            note["_misskey_quote"] = quote
            note["quoteUrl"] = quote
        return {"@context": self.CONTEXT, "id": f"{note_id}/activity", "actor": author.uri,
                "type": "Create", "published": PUBLISHED, "object": note,
                "to": note["to"], "cc": note["cc"]}

    def thread(self, author: RemoteActor, text: str, *, title: str | None = None,
               public: str = PUBLIC, quote: str | None = None) -> dict[str, Any]:
        create = self._note(author, text, cw=title, parent=None, quote=quote)
        create["to"] = create["object"]["to"] = [public]
        return create

    def reply(self, author: RemoteActor, parent: dict[str, Any], text: str) -> dict[str, Any]:
        return self._note(author, text, cw=None, parent=parent, quote=None)

    def update(self, author: RemoteActor, obj: dict[str, Any], text: str, *,
               title: str | None = None) -> dict[str, Any]:
        note = copy.deepcopy(obj)
        mentions = [t["href"] for t in note["tag"]]
        note["content"] = self._html(mentions, text, note.get("_misskey_quote"))
        note["_misskey_content"] = note["source"]["content"] = f"{GROUP_HANDLE} {text}"
        note["updated"] = EDITED
        return {"@context": self.CONTEXT,
                "id": f"{author.uri}#updates/{1714566600000 + self._next()}",
                "actor": author.uri, "type": "Update", "to": [PUBLIC], "object": note,
                "published": EDITED}

    def delete(self, author: RemoteActor, obj_id: str, *, tombstone: bool) -> dict[str, Any]:
        obj: Any = {"id": obj_id, "type": "Tombstone"} if tombstone else obj_id
        return {"@context": self.CONTEXT, "type": "Delete", "actor": author.uri, "object": obj,
                "published": EDITED, "id": f"{_base(author)}/{uuid.uuid4()}"}

    def react(self, author: RemoteActor, obj: dict[str, Any]) -> dict[str, Any]:
        return {"@context": self.CONTEXT, "type": "Like",
                "id": f"{_base(author)}/likes/9s{self._next():08d}", "actor": author.uri,
                "object": obj["id"], "content": "🍮", "_misskey_reaction": "🍮"}

    def undo(self, author: RemoteActor, activity: dict[str, Any]) -> dict[str, Any]:
        # renderUndo: `<object id>/undo` for its own objects, else addContext's random id.
        own = activity["id"].startswith(_base(author))
        undo_id = f"{activity['id']}/undo" if own else f"{_base(author)}/{uuid.uuid4()}"
        return {"@context": self.CONTEXT, "type": "Undo", "id": undo_id,
                "actor": author.uri, "object": _without_context(activity),
                "published": EDITED}


class Pleroma(Shape):
    """Objects carry both `context` and `conversation`, `summary: ""` without a warning, an
    `actor` besides `attributedTo`, and text/plain `source`; addressing may be a single
    string and Public an alias; reactions are EmojiReact with the emoji in `content`;
    Delete and Undo name their object by id."""

    name = "pleroma"
    reaction = ("EmojiReact", "🔥", 0)

    def _context(self, author: RemoteActor) -> list[Any]:
        return [AS, f"{_base(author)}/schemas/litepub-0.1.jsonld", {"@language": "und"}]

    @staticmethod
    def _html(mentions: list[str], text: str) -> str:
        links = " ".join(
            f'<span class="h-card"><a class="u-url mention" data-user="9xY" href="{uri}" '
            f'rel="ugc">@<span>{_handle(uri).split("@")[1]}</span></a></span>'
            for uri in mentions)
        return f"{links} {text}".replace("\n", "<br>")

    def _activity(self, kind: str, author: RemoteActor, obj: Any, *, to: Any, cc: Any,
                  context: str | None = None) -> dict[str, Any]:
        activity: dict[str, Any] = {
            "@context": self._context(author), "actor": author.uri, "cc": cc,
            "id": f"{_base(author)}/activities/{uuid.uuid4()}", "object": obj,
            "published": PUBLISHED, "to": to, "type": kind,
        }
        if context is not None:
            activity["context"] = context
            activity["directMessage"] = False
        return activity

    def _note(self, author: RemoteActor, text: str, *, summary: str, to: Any, cc: list[str],
              mentions: list[str], parent: dict[str, Any] | None) -> dict[str, Any]:
        context = parent["context"] if parent else f"{_base(author)}/contexts/{uuid.uuid4()}"
        obj: dict[str, Any] = {
            "actor": author.uri, "attachment": [], "attributedTo": author.uri, "cc": cc,
            "content": self._html(mentions, text), "context": context,
            "conversation": context, "id": f"{_base(author)}/objects/{uuid.uuid4()}",
            "published": PUBLISHED, "sensitive": bool(summary),
            "source": {"content": text, "mediaType": "text/plain"}, "summary": summary,
            "tag": [{"href": m, "name": GROUP_HANDLE if m == GROUP else _handle(m),
                     "type": "Mention"} for m in mentions],
            "to": to, "type": "Note",
        }
        if parent is not None:
            obj["inReplyTo"] = parent["id"]
        return self._activity("Create", author, obj, to=to, cc=cc, context=context)

    def thread(self, author: RemoteActor, text: str, *, title: str | None = None,
               public: str = "as:Public") -> dict[str, Any]:
        # `to` a single string, and the group only in cc and as a Mention.
        return self._note(author, text, summary=title or "", to=public,
                          cc=[f"{author.uri}/followers", GROUP], mentions=[GROUP], parent=None)

    def reply(self, author: RemoteActor, parent: dict[str, Any], text: str) -> dict[str, Any]:
        mentions = list(dict.fromkeys(
            m for m in (parent["attributedTo"], GROUP) if m != author.uri))
        return self._note(author, text, summary="", to=[PUBLIC, *mentions],
                          cc=[f"{author.uri}/followers"], mentions=mentions, parent=parent)

    def update(self, author: RemoteActor, obj: dict[str, Any], text: str, *,
               title: str | None = None) -> dict[str, Any]:
        changed = copy.deepcopy(obj)
        changed["formerRepresentations"] = {
            "type": "OrderedCollection", "totalItems": 1,
            "orderedItems": [{k: obj[k] for k in ("type", "content", "summary", "source")}],
        }
        changed["content"] = self._html([t["href"] for t in obj["tag"]], text)
        changed["source"] = {"content": text, "mediaType": "text/plain"}
        changed["updated"] = EDITED
        return self._activity("Update", author, changed, to=obj["to"], cc=obj["cc"])

    def delete(self, author: RemoteActor, obj_id: str, *, tombstone: bool) -> dict[str, Any]:
        obj: Any = {"id": obj_id, "type": "Tombstone"} if tombstone else obj_id
        return self._activity("Delete", author, obj, to=[PUBLIC, GROUP],
                              cc=[f"{author.uri}/followers"])

    def react(self, author: RemoteActor, obj: dict[str, Any]) -> dict[str, Any]:
        react = self._activity("EmojiReact", author, obj["id"], to=[obj["attributedTo"]],
                               cc=[PUBLIC], context=obj["context"])
        react["content"] = "🔥"
        del react["directMessage"]
        return react

    def undo(self, author: RemoteActor, activity: dict[str, Any]) -> dict[str, Any]:
        return self._activity("Undo", author, activity["id"], to=activity["to"],
                              cc=activity["cc"])


SHAPES: dict[str, type[Shape]] = {s.name: s for s in (Mastodon, Lemmy, Misskey, Pleroma)}


# -- the fake servers and the group --------------------------------------------------------------
@dataclass
class FakeLemmy(FakeRemote):
    """A FakeRemote whose NodeInfo names a threaded server, so the group relays FEP-1b12 to it."""

    software: str = "lemmy"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/nodeinfo", self._nodeinfo_links)
        app.router.add_get("/nodeinfo/2.1", self._nodeinfo)
        app.router.add_get("/.well-known/webfinger", self._webfinger)
        app.router.add_get("/users/{name}", self._actor)
        app.router.add_post("/users/{name}/inbox", self._inbox)
        app.router.add_post("/inbox", self._inbox)
        await self.serve(app)

    async def _nodeinfo_links(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({"links": [{
            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
            "href": f"{self.base_url}/nodeinfo/2.1",
        }]})

    async def _nodeinfo(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({
            "version": "2.1", "software": {"name": self.software, "version": "0.19.5"},
            "protocols": ["activitypub"], "services": {"inbound": [], "outbound": []},
            "openRegistrations": True, "usage": {"users": {"total": 1}, "localPosts": 0},
            "metadata": {},
        })


@dataclass
class World:
    fedi: InProcess
    shape: Shape
    origin: FakeRemote  # alice and mallory; the shape's own software
    micro: FakeRemote  # bob (member), eve (not a member)
    lemmy: FakeLemmy  # lm (member)
    group_key_pem: str

    @property
    def alice(self) -> RemoteActor:
        return self.origin.actors["alice"]

    @property
    def mallory(self) -> RemoteActor:
        return self.origin.actors["mallory"]

    @property
    def bob(self) -> RemoteActor:
        return self.micro.actors["bob"]

    @property
    def eve(self) -> RemoteActor:
        return self.micro.actors["eve"]

    @property
    def servers(self) -> tuple[FakeRemote, ...]:
        return (self.origin, self.micro, self.lemmy)

    async def send(self, activity: dict[str, Any], *, by: RemoteActor | None = None,
                   inbox: str | None = None) -> None:
        """POST an activity, signed by its actor, as its server would."""
        actor = by or self.alice
        url = inbox or self.shape.inbox
        body = json.dumps(activity).encode()
        response = await self.fedi.http.post(
            url, content=body, headers=self.origin.signed(actor, url, body)
        )
        assert response.status_code == 202, response.text

    async def run_worker(self) -> None:
        """The worker, by hand: handle the stored activities, then send what they queued."""
        services = self.fedi.services
        for _ in range(10):
            if not await services.processor.run_once():
                break
        for _ in range(10):
            if not await services.delivery.run_once():
                break

    async def deliver(self, activity: dict[str, Any], *, by: RemoteActor | None = None,
                      inbox: str | None = None) -> None:
        """Send, process, relay; afterwards each server's `posts` holds only what this caused."""
        for server in self.servers:
            server.posts.clear()
        await self.send(activity, by=by, inbox=inbox)
        await self.run_worker()

    async def join(self, member: RemoteActor) -> None:
        follow = {"@context": AS, "id": f"{member.uri}/follows/1", "type": "Follow",
                  "actor": member.uri, "object": GROUP}
        await self.deliver(follow, by=member, inbox=GROUP_INBOX)

    async def post(self, uri: str) -> Post | None:
        async with self.fedi.services.sessionmaker() as session:
            return (
                await session.execute(select(Post).where(Post.uri == uri))
            ).scalar_one_or_none()

    async def reactions(self) -> list[Reaction]:
        async with self.fedi.services.sessionmaker() as session:
            return list((await session.execute(select(Reaction))).scalars())

    async def outcome(self, activity_id: str) -> str | None:
        """What the inbox worker recorded for an activity (a refusal or why it was ignored)."""
        async with self.fedi.services.sessionmaker() as session:
            item = (
                await session.execute(
                    select(InboxItem).where(InboxItem.activity_uri == activity_id)
                )
            ).scalar_one()
        assert item.state == "done", (item.state, item.error)
        return item.error

    async def ban(self, member: RemoteActor) -> None:
        services = self.fedi.services
        async with services.sessionmaker() as session, session.begin():
            group = (
                await session.execute(select(Actor).where(Actor.uri == GROUP))
            ).scalar_one()
            actor = (
                await session.execute(select(Actor).where(Actor.uri == member.uri))
            ).scalar_one()
            await ban(session, services.urls, group, actor, by=None, reason="spam")
        await self.run_worker()


@pytest.fixture
def shape_name() -> str:
    return "mastodon"


@pytest.fixture
def reused_local_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local actors (instance actor, owner, group) get ready-made RSA keys, each its own:
    making three new 2048-bit keys per test would cost more than the test itself."""
    indices = itertools.count(5)
    monkeypatch.setattr(local_actors, "generate_rsa_keypair",
                        lambda: fake_remote.test_keypair(next(indices)))


@pytest.fixture
async def world(
    database_url: str, shape_name: str, reused_local_keys: None
) -> AsyncIterator[World]:
    shape = SHAPES[shape_name]()
    origin = FakeLemmy() if shape.threaded else FakeRemote()
    origin.add_actor("alice", key_index=0)
    origin.add_actor("mallory", key_index=1)
    micro = FakeRemote()
    micro.add_actor("bob", key_index=2)
    micro.add_actor("eve", key_index=3)
    lemmy = FakeLemmy()
    lemmy.add_actor("lm", key_index=4)
    for server in (origin, micro, lemmy):
        await server.start()
    try:
        async with running_app(database_url) as fedi:
            async with fedi.services.sessionmaker() as session, session.begin():
                await create_user(session, fedi.services.urls, "owner")
                group = await create_group(
                    session, fedi.services.urls, "cats", owner="owner", join_policy="open"
                )
                assert group.public_key_pem is not None
                pem = group.public_key_pem
            built = World(fedi, shape, origin, micro, lemmy, pem)
            for member in (built.alice, built.bob, lemmy.actors["lm"]):
                await built.join(member)
            yield built
    finally:
        for server in (origin, micro, lemmy):
            await server.stop()


# -- what the group sent -----------------------------------------------------------------------
def announces(server: FakeRemote) -> list[InboxPost]:
    return [p for p in server.posts if p.json.get("type") == "Announce"]


def assert_signed_by_group(world: World, server: FakeRemote, post: InboxPost) -> None:
    headers = {k.lower(): v for k, v in post.headers.items()}
    params = parse_signature(headers)
    assert params.key_id == GROUP_KEY_ID
    verify_request(params, "POST", f"{server.base_url}{post.path}", headers, post.body,
                   world.group_key_pem)


def assert_group_addressing(announce: dict[str, Any]) -> None:
    assert announce["actor"] == GROUP
    assert announce["audience"] == GROUP
    assert PUBLIC in announce["to"] and GROUP in announce["to"]
    assert GROUP_FOLLOWERS in announce["cc"]


def assert_wrapped(world: World, server: FakeRemote, activity: dict[str, Any]) -> None:
    """FEP-1b12: exactly one Announce, by the group, of the member's activity unchanged."""
    sent = announces(server)
    assert len(sent) == 1, [p.json for p in server.posts]
    announce = sent[0].json
    assert announce["object"] == _without_context(activity)
    assert_group_addressing(announce)
    assert_signed_by_group(world, server, sent[0])


def assert_boosted(world: World, server: FakeRemote, post_uri: str) -> None:
    """A microblog's view: exactly one Announce, by the group, of the bare post id."""
    sent = announces(server)
    assert len(sent) == 1, [p.json for p in server.posts]
    assert sent[0].json["object"] == post_uri
    assert_group_addressing(sent[0].json)
    assert_signed_by_group(world, server, sent[0])


def assert_nothing_relayed(world: World) -> None:
    for server in world.servers:
        assert announces(server) == [], (server.base_url, [p.json for p in server.posts])


ALL_SHAPES = pytest.mark.parametrize("shape_name", list(SHAPES))
THREAD_TEXT = "Hello cats\n\nMore below."


# -- 1. a new thread ---------------------------------------------------------------------------
# Per shape: the options its thread is built with, and the title fedi should give it.
THREADS: dict[str, list[tuple[dict[str, Any], str]]] = {
    "mastodon": [
        ({}, "Hello cats"),  # first line, without the leading @mention
        ({"title": "CW: cat pics"}, "CW: cat pics"),  # the content warning
        ({"public": "as:Public"}, "Hello cats"),
        ({"public": "Public"}, "Hello cats"),
    ],
    "lemmy": [
        ({"title": "Cats of the week"}, "Cats of the week"),  # the Page's name
        ({"title": "Cats", "public": "as:Public"}, "Cats"),
    ],
    "misskey": [
        ({}, "Hello cats"),
        ({"title": "nsfw cat"}, "nsfw cat"),
        ({"quote": "http://127.0.0.1:9/notes/9quoted"}, "Hello cats"),
        ({"public": "Public"}, "Hello cats"),
    ],
    "pleroma": [
        ({}, "Hello cats"),  # to: "as:Public", a single string; summary: ""
        ({"public": "Public"}, "Hello cats"),
        ({"public": PUBLIC, "title": "re: cats"}, "re: cats"),
    ],
}


@ALL_SHAPES
async def test_new_thread_is_stored_with_its_title_and_relayed(world: World) -> None:
    for options, title in THREADS[world.shape.name]:
        create = world.shape.thread(world.alice, THREAD_TEXT, **options)
        await world.deliver(create)

        post = await world.post(create["object"]["id"])
        assert post is not None, (options, await world.outcome(create["id"]))
        assert post.name == title, options
        assert post.visibility == "public", options
        assert post.thread_id == post.id and post.in_reply_to is None
        assert "Hello cats" in post.content and "More below." in post.content
        # Threaded servers get the Create itself, microblogs a boost; the author's server
        # neither.
        assert_wrapped(world, world.lemmy, create)
        assert_boosted(world, world.micro, post.uri)
        assert announces(world.origin) == []


async def test_mastodon_line_break_ends_the_title(world: World) -> None:
    create = world.shape.thread(world.alice, "Hello cats\nSecond line")
    assert "Hello cats<br />Second line" in create["object"]["content"]
    await world.deliver(create)
    post = await world.post(create["object"]["id"])
    assert post is not None
    assert post.name == "Hello cats"


@pytest.mark.parametrize("shape_name", ["misskey"])
async def test_misskey_empty_content_warning_is_not_the_title(world: World) -> None:
    create = world.shape.thread(world.alice, THREAD_TEXT, title="")
    assert create["object"]["summary"] == "\u200b"
    await world.deliver(create)
    post = await world.post(create["object"]["id"])
    assert post is not None
    assert post.name == "Hello cats"


# -- 2. replies --------------------------------------------------------------------------------
@ALL_SHAPES
async def test_reply_joins_the_thread_and_reaches_who_should_see_it(world: World) -> None:
    shape = world.shape
    thread = shape.thread(world.alice, THREAD_TEXT, title="A thread")
    await world.deliver(thread)
    root = await world.post(thread["object"]["id"])
    assert root is not None

    # alice answers her own thread: threaded servers get it, the microblog where nobody
    # took part does not.
    first = shape.reply(world.alice, thread["object"], "Replying to myself")
    await world.deliver(first)
    reply = await world.post(first["object"]["id"])
    assert reply is not None, await world.outcome(first["id"])
    root = await world.post(root.uri)
    assert root is not None
    assert (reply.thread_id, reply.in_reply_to, reply.name) == (root.id, root.uri, None)
    assert root.reply_count == 1
    assert_wrapped(world, world.lemmy, first)
    assert announces(world.micro) == []

    # bob, on the microblog, answers that reply: he now takes part in the thread.
    answer = shape.reply(world.bob, first["object"], "Me too")
    await world.deliver(answer, by=world.bob)
    stored = await world.post(answer["object"]["id"])
    reply = await world.post(reply.uri)
    assert stored is not None and reply is not None, await world.outcome(answer["id"])
    assert stored.thread_id == root.id and stored.in_reply_to == reply.uri
    assert reply.reply_count == 1
    assert_wrapped(world, world.lemmy, answer)
    assert announces(world.micro) == []  # bob's own server
    # alice took part, so her server sees bob's answer the way it understands.
    if shape.threaded:
        assert_wrapped(world, world.origin, answer)
    else:
        assert_boosted(world, world.origin, stored.uri)

    # alice answers again: the microblog gets it now, because bob took part.
    again = shape.reply(world.alice, thread["object"], "Welcome, bob")
    await world.deliver(again)
    root = await world.post(root.uri)
    assert root is not None and root.reply_count == 2
    assert_wrapped(world, world.lemmy, again)
    assert_boosted(world, world.micro, again["object"]["id"])


async def test_microblog_member_who_asked_for_everything_gets_replies(world: World) -> None:
    shape = world.shape
    thread = shape.thread(world.alice, THREAD_TEXT)
    await world.deliver(thread)
    command = shape.thread(world.bob, "!all")
    await world.deliver(command, by=world.bob)
    assert await world.post(command["object"]["id"]) is None
    assert await world.outcome(command["id"]) == "member setting !all"

    reply = shape.reply(world.alice, thread["object"], "Anyone?")
    await world.deliver(reply)
    assert_boosted(world, world.micro, reply["object"]["id"])


# -- 3. edits and deletions --------------------------------------------------------------------
@ALL_SHAPES
async def test_author_edits_then_deletes(world: World) -> None:
    shape = world.shape
    for tombstone in (False, True):  # Delete naming the object by id, then by a Tombstone
        thread = shape.thread(world.alice, THREAD_TEXT,
                              title="Old title" if shape.threaded else None)
        await world.deliver(thread)

        edit = shape.update(world.alice, thread["object"], "Hello again\n\nNow edited.",
                            title="New title" if shape.threaded else None)
        await world.deliver(edit)
        post = await world.post(thread["object"]["id"])
        assert post is not None, await world.outcome(edit["id"])
        assert "Now edited." in post.content and "More below." not in post.content
        assert post.updated is not None
        assert post.name == ("New title" if shape.threaded else "Hello again")
        assert_wrapped(world, world.lemmy, edit)
        assert announces(world.micro) == []  # microblogs only ever see the boost

        delete = shape.delete(world.alice, post.uri, tombstone=tombstone)
        await world.deliver(delete)
        deleted = await world.post(post.uri)
        assert deleted is not None, tombstone
        assert deleted.deleted_at is not None, (tombstone, await world.outcome(delete["id"]))
        assert deleted.content == ""
        assert_wrapped(world, world.lemmy, delete)
        # The microblog drops the boost: the group undoes its Announce of the post.
        undos = [p.json for p in world.micro.posts if p.json.get("type") == "Undo"]
        assert len(undos) == 1 and undos[0]["actor"] == GROUP
        assert undos[0]["object"]["id"] == post.boost_uri
        assert undos[0]["object"]["object"] == post.uri


@ALL_SHAPES
async def test_only_the_author_may_edit_or_delete(world: World) -> None:
    shape = world.shape
    thread = shape.thread(world.alice, THREAD_TEXT, title="Alice's thread")
    await world.deliver(thread)
    await world.join(world.mallory)
    note = thread["object"]
    claimed = {**note, "attributedTo": world.mallory.uri}

    attempts = [
        # mallory, on alice's own server, edits alice's post as it is…
        (shape.update(world.mallory, note, "Pwned", title="Pwned"), world.mallory,
         "attributed to someone other"),
        # …or claims it as his…
        (shape.update(world.mallory, claimed, "Pwned", title="Pwned"), world.mallory,
         "only the author"),
        # …or deletes it; and bob, from another server, deletes it with a Tombstone.
        (shape.delete(world.mallory, note["id"], tombstone=False), world.mallory,
         "only the author"),
        (shape.delete(world.bob, note["id"], tombstone=True), world.bob, "only the author"),
    ]
    for activity, signer, reason in attempts:
        await world.deliver(activity, by=signer)
        outcome = await world.outcome(activity["id"])
        assert outcome is not None and reason in outcome, (activity, outcome)
        assert_nothing_relayed(world)

    post = await world.post(note["id"])
    assert post is not None and post.deleted_at is None and post.updated is None
    assert "Hello cats" in post.content and "Pwned" not in post.content
    assert post.name == "Alice's thread"


# -- 4. reactions -------------------------------------------------------------------------------
@ALL_SHAPES
async def test_reaction_is_counted_relayed_to_threaded_servers_and_undone(world: World) -> None:
    shape = world.shape
    kind, content, likes = shape.reaction
    thread = shape.thread(world.alice, THREAD_TEXT, title="React to me")
    await world.deliver(thread)

    react = shape.react(world.bob, thread["object"])
    assert react["type"] == kind
    await world.deliver(react, by=world.bob)
    (reaction,) = await world.reactions()
    assert (reaction.type, reaction.content, reaction.activity_uri) == (kind, content, react["id"])
    post = await world.post(thread["object"]["id"])
    assert post is not None and post.like_count == likes
    assert_wrapped(world, world.lemmy, react)
    assert announces(world.micro) == []
    # alice's server is a member too, but only a threaded server hears about reactions.
    if shape.threaded:
        assert_wrapped(world, world.origin, react)
    else:
        assert announces(world.origin) == []

    # mallory may not take bob's reaction back.
    forged = shape.undo(world.mallory, react)
    await world.deliver(forged, by=world.mallory)
    assert await world.outcome(forged["id"]) == "only the reacting actor may undo a reaction"
    assert len(await world.reactions()) == 1
    assert_nothing_relayed(world)

    undo = shape.undo(world.bob, react)
    await world.deliver(undo, by=world.bob)
    assert await world.reactions() == [], await world.outcome(undo["id"])
    post = await world.post(post.uri)
    assert post is not None and post.like_count == 0
    assert_wrapped(world, world.lemmy, undo)
    assert announces(world.micro) == []


@pytest.mark.parametrize("shape_name", ["lemmy"])
async def test_lemmy_vote_changed_back_counts_once(world: World) -> None:
    thread = world.shape.thread(world.alice, THREAD_TEXT, title="Vote on me")
    await world.deliver(thread)
    for kind in ("Like", "Dislike", "Like"):
        vote = {**world.shape.react(world.bob, thread["object"]), "type": kind}
        await world.deliver(vote, by=world.bob)
    post = await world.post(thread["object"]["id"])
    assert post is not None and post.like_count == 1


@pytest.mark.parametrize("shape_name", ["pleroma"])
async def test_the_same_emoji_twice_counts_once_with_or_without_content(world: World) -> None:
    """One reaction per person and emoji; an EmojiReact without content is one emoji too
    (NULL content must match NULL, not nothing)."""
    thread = world.shape.thread(world.alice, THREAD_TEXT, title="React twice")
    await world.deliver(thread)
    sent = []
    for content in ("🔥", "🔥", None, None, "🍮"):
        react = world.shape.react(world.bob, thread["object"])
        if content is None:
            del react["content"]
        else:
            react["content"] = content
        await world.deliver(react, by=world.bob)
        sent.append(react["id"])
    kept = sorted((r.content or "", r.activity_uri) for r in await world.reactions())
    assert kept == sorted([("🔥", sent[1]), ("", sent[3]), ("🍮", sent[4])])


# -- 5. refusals --------------------------------------------------------------------------------
@ALL_SHAPES
async def test_refused_post_is_not_stored_not_relayed_and_rejected(world: World) -> None:
    await world.ban(world.alice)
    # eve on the microblog never joined; alice was banned.
    for author, server in ((world.eve, world.micro), (world.alice, world.origin)):
        create = world.shape.thread(author, "Buy cheap watches", title="Cheap watches")
        await world.deliver(create, by=author)

        assert await world.post(create["object"]["id"]) is None
        outcome = await world.outcome(create["id"])
        assert outcome is not None and outcome.startswith("refused:"), outcome
        assert_nothing_relayed(world)
        rejects = [p for p in server.posts if p.json.get("type") == "Reject"]
        assert len(rejects) == 1, [p.json for p in server.posts]
        assert rejects[0].path == urlsplit(author.inbox).path
        assert rejects[0].json["actor"] == GROUP
        assert rejects[0].json["object"]["id"] == create["id"]
        assert_signed_by_group(world, server, rejects[0])


# -- 6. forged authorship ---------------------------------------------------------------------
@ALL_SHAPES
async def test_create_for_someone_else_or_another_host_is_not_stored(world: World) -> None:
    await world.join(world.mallory)
    # mallory signs a Create of a post that claims to be alice's (both ways of naming her)…
    forged = []
    for attributed in (world.alice.uri, {"type": "Person", "id": world.alice.uri}):
        create = world.shape.thread(world.mallory, "I am alice", title="I am alice")
        create["object"]["attributedTo"] = attributed
        forged.append((create, world.mallory, "attributed to someone other"))
    # …and alice signs one whose object claims an id on the Lemmy server.
    create = world.shape.thread(world.alice, "Not mine to post", title="Not mine")
    create["object"]["id"] = f"{world.lemmy.base_url}/post/666"
    forged.append((create, world.alice, "not on the actor's host"))
    # …or names it by URL only: refused before any fetch, as it could only be trusted from
    # alice's own host.
    create = world.shape.thread(world.alice, "Fetch me", title="Fetch me")
    create["object"] = f"{world.lemmy.base_url}/post/667"
    forged.append((create, world.alice, "object on another host than its actor"))

    for create, signer, reason in forged:
        await world.deliver(create, by=signer)
        assert await world.post(id_of(create["object"]) or "") is None
        outcome = await world.outcome(create["id"])
        assert outcome is not None and reason in outcome, outcome
        assert_nothing_relayed(world)


async def test_create_attributed_in_a_list_to_someone_else_is_not_stored(world: World) -> None:
    create = world.shape.thread(world.mallory, "I am alice")
    create["object"]["attributedTo"] = [world.alice.uri]
    await world.join(world.mallory)
    await world.deliver(create, by=world.mallory)
    assert await world.post(create["object"]["id"]) is None


# -- what Public means -------------------------------------------------------------------------
async def test_non_public_mastodon_post_is_not_relayed_publicly(world: World) -> None:
    """A direct or followers-only status that mentions the group is no public thread."""
    direct: tuple[list[str], list[str]] = ([GROUP], [])
    followers_only = ([f"{world.alice.uri}/followers"], [GROUP])
    for to, cc in (direct, followers_only):
        create = world.shape.thread(world.alice, "Just between us")
        create["to"] = create["object"]["to"] = to
        create["cc"] = create["object"]["cc"] = cc
        await world.deliver(create)
        post = await world.post(create["object"]["id"])
        assert post is None or post.visibility != "public", (to, cc)
        for server in world.servers:
            for sent in announces(server):
                addressed = [*sent.json.get("to", []), *sent.json.get("cc", [])]
                assert not set(addressed) & {PUBLIC, "as:Public", "Public"}, (to, cc, sent.json)
                assert sent.json["object"] != create["object"]["id"], "boosted"
