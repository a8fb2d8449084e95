"""ActivityPub media types (SECURITY item 2: only accept documents served as ActivityPub)."""

from __future__ import annotations

import re
from typing import Final

AS_PROFILE: Final = "https://www.w3.org/ns/activitystreams"
ACTIVITY_JSON: Final = "application/activity+json"
LD_JSON: Final = "application/ld+json"
AP_CONTENT_TYPES: Final = frozenset({ACTIVITY_JSON, LD_JSON})

ACCEPT_AP: Final = f'{ACTIVITY_JSON}, {LD_JSON}; profile="{AS_PROFILE}"'

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_MEDIA_TYPE = re.compile(rf"\s*({_TCHARS})/({_TCHARS})\s*")
# Unquoted values are accepted leniently (servers send profile=https://... unquoted).
_PARAM = re.compile(rf";\s*({_TCHARS})\s*=\s*({_QUOTED}|[^;\s\"]+)\s*")
_EMPTY_PARAM = re.compile(r";\s*")
_UNESCAPE = re.compile(r"\\(.)")


def parse_media_type(header: str) -> tuple[str, dict[str, str]] | None:
    """Parse a Content-Type value into (lower-cased type/subtype, parameters).

    Parameter names are lower-cased; quoted values are unquoted. Returns None when the
    header is malformed (RFC 9110 section 8.3.1 grammar).
    """
    match = _MEDIA_TYPE.match(header)
    if match is None:
        return None
    media_type = f"{match.group(1)}/{match.group(2)}".lower()
    params: dict[str, str] = {}
    pos = match.end()
    while pos < len(header):
        param = _PARAM.match(header, pos)
        if param is None:
            empty = _EMPTY_PARAM.match(header, pos)  # tolerate "type/sub;" and ";;"
            if empty is None or empty.end() == pos:
                return None
            pos = empty.end()
            continue
        name, value = param.group(1).lower(), param.group(2)
        if value.startswith('"'):
            value = _UNESCAPE.sub(r"\1", value[1:-1])
        params.setdefault(name, value)
        pos = param.end()
    return media_type, params


def is_activitypub_media_type(content_type_header: str) -> bool:
    """True for application/activity+json, or application/ld+json with the AS profile."""
    parsed = parse_media_type(content_type_header)
    if parsed is None:
        return False
    media_type, params = parsed
    if media_type == ACTIVITY_JSON:
        return True
    # JSON-LD's profile parameter is a space-separated list of URIs.
    return media_type == LD_JSON and AS_PROFILE in params.get("profile", "").split()
