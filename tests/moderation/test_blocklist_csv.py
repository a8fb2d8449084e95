"""Mastodon's domain-block CSV: parsing, line-numbered errors, and the export format."""

from __future__ import annotations

import pytest

from fedi.moderation.blocklist_csv import (
    BlocklistError,
    CsvBlock,
    format_blocklist,
    parse_blocklist,
)

MASTODON_EXPORT = """\
#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate
spam.example,suspend,true,true,Spam and abuse,false
loud.example,silence,false,false,"Too loud, often",false
media.example,noop,true,false,,true
"""


def test_a_mastodon_export_is_read() -> None:
    rows = parse_blocklist(MASTODON_EXPORT)
    assert rows == [
        CsvBlock(2, "spam.example", "suspend", True, True, "Spam and abuse", False),
        CsvBlock(3, "loud.example", "silence", False, False, "Too loud, often", False),
        CsvBlock(4, "media.example", "noop", True, False, None, True),
    ]


def test_export_then_parse_round_trips() -> None:
    rows = parse_blocklist(MASTODON_EXPORT)
    text = format_blocklist(rows)
    assert text.splitlines()[0] == (
        "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate"
    )
    assert text == MASTODON_EXPORT
    assert parse_blocklist(text) == rows


def test_header_in_another_order_without_hashes_and_a_bom() -> None:
    text = "\ufeffseverity,domain\r\nsilence,Bücher.Example.\r\n\r\n,plain.example\r\n"
    rows = parse_blocklist(text)
    assert [(r.line, r.domain, r.severity) for r in rows] == [
        (2, "xn--bcher-kva.example", "silence"),
        (4, "plain.example", "suspend"),  # Mastodon's default severity
    ]


def test_a_bare_list_of_domains_suspends_each() -> None:
    rows = parse_blocklist("a.example\nB.example.\n")
    assert [(r.domain, r.severity) for r in rows] == [("a.example", "suspend"),
                                                      ("b.example", "suspend")]


@pytest.mark.parametrize(
    ("line4", "message"),
    [
        ("bad.example,banish,false,false,,false",
         "line 4: severity must be suspend, silence or noop, not 'banish'"),
        ("bad example,silence,false,false,,false", "line 4: 'bad example' is not a valid domain"),
        ("bad.example,silence,false", "line 4: expected 6 columns, found 3"),
        ("bad.example,silence,maybe,false,,false",
         "line 4: reject_media must be true or false, not 'maybe'"),
        ("spam.example,silence,false,false,,false", "line 4: spam.example is already on line 2"),
    ],
)
def test_a_bad_row_names_its_line(line4: str, message: str) -> None:
    lines = MASTODON_EXPORT.splitlines()
    text = "\n".join([*lines[:3], line4, *lines[3:]]) + "\n"
    with pytest.raises(BlocklistError) as caught:
        parse_blocklist(text)
    assert message in caught.value.reason
    assert [line for line, _ in caught.value.problems] == [4]


def test_every_bad_row_is_reported_at_once() -> None:
    text = MASTODON_EXPORT + "x.example,banish,,,,\n,silence,,,,\n"
    with pytest.raises(BlocklistError) as caught:
        parse_blocklist(text)
    assert [line for line, _ in caught.value.problems] == [5, 6]
    assert "2 bad rows" in caught.value.reason


def test_line_numbers_count_quoted_newlines() -> None:
    text = '#domain,#severity\n"a.example",silence\n"b\nexample",silence\nc.example,nope\n'
    with pytest.raises(BlocklistError) as caught:
        parse_blocklist(text)
    assert [line for line, _ in caught.value.problems] == [3, 5]


def test_unknown_header_column_is_refused() -> None:
    with pytest.raises(BlocklistError, match="line 1: the header must name columns"):
        parse_blocklist("#domain,#colour\na.example,red\n")
