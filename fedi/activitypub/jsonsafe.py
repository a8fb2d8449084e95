"""Bounded JSON parsing for untrusted documents (SECURITY 21).

orjson does the parsing: it refuses invalid UTF-8 (so UTF-16 bodies), a byte order mark,
lone surrogate escapes, NaN/Infinity and numbers that overflow a double, and it stops at
1024 levels without touching Python's recursion limit. On top of it we bound:

- size: the caller's cap, checked again here so no path can forget it;
- depth: 1024 legal levels still blow the recursion of any code that walks or prints the
  result later, and no ActivityPub document needs more than a handful;
- number length: a number literal longer than any id, count or date (orjson would quietly
  turn a 300-digit integer into a float);
- NUL characters in strings: PostgreSQL text cannot hold them, so they would fail in the
  worker after the inbox had answered 202.

Everything the inbox accepts is parsed again by the worker with this same function, so an
activity answered 202 is one the worker can read.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from fedi.errors import ValidationError

MAX_BYTES: Final = 1_048_576
MAX_DEPTH: Final = 64
MAX_NUMBER_CHARS: Final = 40

# String literals (whole, escapes included) are blanked before numbers are measured, so a
# long run of digits inside a string is not mistaken for a number.
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_LONG_NUMBER: Final = re.compile(rb"[-+.0-9eE]{%d,}" % (MAX_NUMBER_CHARS + 1))


def loads(data: bytes | str, *, max_bytes: int = MAX_BYTES) -> Any:
    """Parse untrusted JSON; ValidationError (with a reason) for anything outside the bounds."""
    if len(data) > max_bytes:
        raise ValidationError(f"JSON document larger than {max_bytes} bytes")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON: {str(exc)[:200]}") from None
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if _LONG_NUMBER.search(_STRING.sub(b'""', raw)):
        raise ValidationError(f"JSON number longer than {MAX_NUMBER_CHARS} characters")
    _check_structure(doc)
    return doc


def loads_object(data: bytes | str, *, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    doc = loads(data, max_bytes=max_bytes)
    if not isinstance(doc, dict):
        raise ValidationError("the document is not a JSON object")
    return doc


def _check_structure(doc: Any) -> None:
    """Depth and NUL checks without recursion (the input decides how deep we would go)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ValidationError("JSON strings must not contain NUL characters")
            continue
        if isinstance(value, dict):
            children: Any = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise ValidationError(f"JSON nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)
