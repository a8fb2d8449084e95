"""RSS 2.0 and Atom feeds of a public group's threads: `/groups/{name}/feed.rss`, `.atom`.

A feed reader is an anonymous visitor: the threads are the group page's as the privacy gate
lists them for nobody in particular (reading.group_threads with the anonymous viewer), the
newest page. Private and hidden groups have no feed (404, as for anything not shown). The
XML is written by ElementTree, which escapes; post bodies are the HTML sanitised on storing,
carried as escaped text, as both formats expect.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.etree import ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedi.actors.local import find_local
from fedi.content import html_to_text
from fedi.groups import reading
from fedi.groups.reading import Entry, ThreadSort
from fedi.privacy.access import ANONYMOUS
from fedi.privacy.visibility import GroupPrivacy
from fedi.services import Services
from fedi.store.models import Actor, Group
from fedi.urls import GROUPS
from fedi.web.auth import services_of
from fedi.web.negotiation import not_found

ATOM_NS = "http://www.w3.org/2005/Atom"
RSS_TYPE = "application/rss+xml"
ATOM_TYPE = "application/atom+xml"
TITLE_CHARS = 80
# Characters XML 1.0 cannot carry at all, even escaped: a feed with one does not parse.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def feed_paths(name: str) -> tuple[str, str]:
    """The RSS and Atom paths of a group, for pages that advertise them."""
    return f"/{GROUPS}/{name}/feed.rss", f"/{GROUPS}/{name}/feed.atom"


def _clean(text: str | None) -> str:
    return _NOT_XML.sub("", text or "")


def _title(entry: Entry) -> str:
    if entry.post.name:
        return _clean(entry.post.name)
    words = " ".join(html_to_text(entry.post.content).split())
    text = words if len(words) <= TITLE_CHARS else words[:TITLE_CHARS - 1] + "…"
    return _clean(text) or f"A post by {entry.author.name or entry.author.username}"


def _link(services: Services, entry: Entry) -> str:
    post = entry.post
    return post.uri if post.local else f"{services.settings.base_url}/remote/posts/{post.id}"


def _date(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


async def _public_group(request: Request) -> tuple[Services, Actor, list[Entry]]:
    services = services_of(request)
    async with services.sessionmaker() as session:
        group = await find_local(session, request.path_params["name"])
        if group is not None and group.type != "Group":
            group = None
        config = await session.get(Group, group.id) if group is not None else None
        if group is None or config is None or config.privacy != GroupPrivacy.PUBLIC.value:
            not_found()
        listing = await reading.group_threads(
            session, ANONYMOUS, group, sort=ThreadSort.NEW,
            silenced=services.domain_policy.is_silenced,
        )
    return services, group, listing.items


def _xml(root: ET.Element, media_type: str) -> Response:
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=300"})


async def rss(request: Request) -> Response:
    services, group, entries = await _public_group(request)
    page = group.url or group.uri
    root = ET.Element("rss", {"version": "2.0"})
    root.set("xmlns:atom", ATOM_NS)
    channel = ET.SubElement(root, "channel")
    ET.SubElement(channel, "title").text = _clean(group.name or group.username)
    ET.SubElement(channel, "link").text = page
    ET.SubElement(channel, "description").text = _clean(
        group.summary or f"Threads in {group.name or group.username}")
    ET.SubElement(channel, "atom:link", {
        "href": f"{services.settings.base_url}{feed_paths(group.username)[0]}",
        "rel": "self", "type": RSS_TYPE})
    if entries:
        newest = max(e.post.published for e in entries)
        ET.SubElement(channel, "lastBuildDate").text = format_datetime(_date(newest))
    for entry in entries:
        item = ET.SubElement(channel, "item")
        ET.SubElement(item, "title").text = _title(entry)
        ET.SubElement(item, "link").text = _link(services, entry)
        ET.SubElement(item, "guid", {"isPermaLink": "false"}).text = entry.post.uri
        ET.SubElement(item, "pubDate").text = format_datetime(_date(entry.post.published))
        ET.SubElement(item, "description").text = _clean(entry.post.content)
    return _xml(root, RSS_TYPE)


async def atom(request: Request) -> Response:
    services, group, entries = await _public_group(request)
    ET.register_namespace("", ATOM_NS)

    def el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        node = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        node.text = text
        return node

    root = ET.Element(f"{{{ATOM_NS}}}feed")
    el(root, "id", group.uri)
    el(root, "title", _clean(group.name or group.username))
    if group.summary:
        el(root, "subtitle", _clean(group.summary))
    newest = max((e.post.updated or e.post.published for e in entries), default=group.created_at)
    el(root, "updated", _date(newest).isoformat())
    el(root, "link", rel="self", type=ATOM_TYPE,
       href=f"{services.settings.base_url}{feed_paths(group.username)[1]}")
    el(root, "link", rel="alternate", type="text/html", href=group.url or group.uri)
    for entry in entries:
        node = el(root, "entry")
        el(node, "id", entry.post.uri)
        el(node, "title", _title(entry))
        el(node, "published", _date(entry.post.published).isoformat())
        el(node, "updated", _date(entry.post.updated or entry.post.published).isoformat())
        author = el(node, "author")
        el(author, "name", _clean(entry.author.name or entry.author.username))
        el(author, "uri", entry.author.url or entry.author.uri)
        el(node, "link", rel="alternate", type="text/html", href=_link(services, entry))
        el(node, "content", _clean(entry.post.content), type="html")
    return _xml(root, ATOM_TYPE)


routes = [
    Route(f"/{GROUPS}/{{name:str}}/feed.rss", rss),
    Route(f"/{GROUPS}/{{name:str}}/feed.atom", atom),
]
