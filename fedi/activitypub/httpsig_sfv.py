"""The subset of RFC 8941 structured fields that HTTP signatures and digests use.

Dictionaries whose members are items or inner lists; bare items of type integer, decimal,
string, token, byte sequence and boolean; parameters on both. Each dictionary member also
keeps its text exactly as received, because RFC 9421 signs `@signature-params` verbatim.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from dataclasses import dataclass, field


class StructuredFieldError(ValueError):
    """The text is not a valid structured field."""


class Token(str):
    """An sf-token, kept apart from sf-string so that serializing round-trips."""

    __slots__ = ()


BareItem = int | float | str | bytes | bool
Params = dict[str, BareItem]


@dataclass(frozen=True)
class Item:
    value: BareItem
    params: Params = field(default_factory=dict)


@dataclass(frozen=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params = field(default_factory=dict)


@dataclass(frozen=True)
class Member:
    value: Item | InnerList
    raw: str  # the member value with its parameters, exactly as it appeared in the field


_KEY_START = frozenset(string.ascii_lowercase + "*")
_KEY_CHARS = frozenset(string.ascii_lowercase + string.digits + "_-.*")
_TOKEN_START = frozenset(string.ascii_letters + "*")
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~:/")
_BASE64_CHARS = frozenset(string.ascii_letters + string.digits + "+/=")
_DIGITS = frozenset(string.digits)
_NUMBER = re.compile(r"-?(\d+)(?:\.(\d+))?", re.ASCII)


def parse_dictionary(text: str) -> dict[str, Member]:
    return _Parser(text).dictionary()


def parse_item(text: str) -> Item:
    parser = _Parser(text)
    item = parser.item()
    parser.end()
    return item


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text.strip(" \t")
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def fail(self, what: str) -> StructuredFieldError:
        return StructuredFieldError(f"{what} at offset {self.pos}")

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def end(self) -> None:
        if self.pos != len(self.text):
            raise self.fail("unexpected trailing text")

    def dictionary(self) -> dict[str, Member]:
        members: dict[str, Member] = {}
        while self.pos < len(self.text):
            key = self.key()
            start = self.pos
            value: Item | InnerList
            if self.peek() == "=":
                self.pos += 1
                start = self.pos
                value = self.inner_list() if self.peek() == "(" else self.item()
            else:
                value = Item(True, self.parameters())
            members[key] = Member(value, self.text[start : self.pos])
            self.skip(" \t")
            if self.pos == len(self.text):
                break
            self.expect(",")
            self.skip(" \t")
            if self.pos == len(self.text):
                raise self.fail("trailing comma")
        return members

    def inner_list(self) -> InnerList:
        self.expect("(")
        items: list[Item] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                return InnerList(tuple(items), self.parameters())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise self.fail("expected a space or ')' in inner list")

    def item(self) -> Item:
        value = self.bare_item()
        return Item(value, self.parameters())

    def parameters(self) -> Params:
        params: Params = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            params[key] = value
        return params

    def key(self) -> str:
        if self.peek() not in _KEY_START:
            raise self.fail("expected a key")
        start = self.pos
        while self.peek() and self.peek() in _KEY_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def bare_item(self) -> BareItem:
        char = self.peek()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        if char == "-" or char in _DIGITS:
            return self.number()
        if char in _TOKEN_START:
            return self.token()
        raise self.fail("expected an item")

    def string(self) -> str:
        self.expect('"')
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\":
                escaped = self.peek()
                if escaped not in ('"', "\\"):
                    raise self.fail("bad escape in string")
                chars.append(escaped)
                self.pos += 1
            elif char == '"':
                return "".join(chars)
            elif not " " <= char <= "~":
                raise self.fail("invalid character in string")
            else:
                chars.append(char)
        raise self.fail("unterminated string")

    def token(self) -> Token:
        start = self.pos
        while self.peek() and self.peek() in _TOKEN_CHARS:
            self.pos += 1
        return Token(self.text[start : self.pos])

    def byte_sequence(self) -> bytes:
        self.expect(":")
        end = self.text.find(":", self.pos)
        if end < 0:
            raise self.fail("unterminated byte sequence")
        encoded = self.text[self.pos : end]
        if not set(encoded) <= _BASE64_CHARS:
            raise self.fail("invalid base64 in byte sequence")
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise self.fail(f"invalid base64 in byte sequence ({exc})") from exc
        self.pos = end + 1
        return decoded

    def boolean(self) -> bool:
        self.expect("?")
        char = self.peek()
        if char not in ("0", "1"):
            raise self.fail("expected ?0 or ?1")
        self.pos += 1
        return char == "1"

    def number(self) -> int | float:
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a number")
        whole, fraction = match.groups()
        if (fraction is None and len(whole) > 15) or (
            fraction is not None and (len(whole) > 12 or len(fraction) > 3)
        ):
            raise self.fail("number out of range")
        self.pos = match.end()
        return float(match.group()) if fraction is not None else int(match.group())


def serialize_bare_item(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, str):
        if any(not " " <= char <= "~" for char in value):
            raise StructuredFieldError("strings must be printable ASCII")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.1f}"


def serialize_params(params: Params) -> str:
    return "".join(
        f";{key}" if value is True else f";{key}={serialize_bare_item(value)}"
        for key, value in params.items()
    )


def serialize_item(item: Item) -> str:
    return serialize_bare_item(item.value) + serialize_params(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    return (
        "("
        + " ".join(serialize_item(item) for item in inner.items)
        + ")"
        + serialize_params(inner.params)
    )
