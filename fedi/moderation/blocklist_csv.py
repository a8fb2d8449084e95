"""Mastodon's domain-block CSV, both ways. Pure: text in, rows out (and back).

    #domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate
    spam.example,suspend,true,true,Spam,false

The header may name the columns in any order, with or without `#`; only `domain` is required.
A file without a header is read in the order above (a bare list of domains works: each is
suspended). severity is suspend (the default when empty), silence or noop; the flags are
true or false (empty means false). Every bad row is reported with its line number, and the
whole file is refused: nothing is half-imported.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from fedi.errors import ValidationError
from fedi.privacy.domains import SEVERITIES, Severity, normalise_domain

COLUMNS = ("domain", "severity", "reject_media", "reject_reports", "public_comment", "obfuscate")
HEADER = tuple(f"#{name}" for name in COLUMNS)
MAX_ERRORS = 20
_BOOLEANS = {"true": True, "false": False, "": False}


class BlocklistError(ValidationError):
    """A blocklist file is malformed; `problems` lists (line, what is wrong)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        shown = "; ".join(f"line {line}: {what}" for line, what in problems[:MAX_ERRORS])
        more = len(problems) - MAX_ERRORS
        suffix = f"; and {more} more" if more > 0 else ""
        super().__init__(
            f"the blocklist was not imported ({len(problems)} bad "
            f"{'row' if len(problems) == 1 else 'rows'}): {shown}{suffix}"
        )
        self.problems = problems


@dataclass(frozen=True)
class CsvBlock:
    line: int
    domain: str  # normalised
    severity: Severity
    reject_media: bool = False
    reject_reports: bool = False
    public_comment: str | None = None
    obfuscate: bool = False


def _header(row: list[str]) -> tuple[str, ...] | None:
    names = tuple(cell.strip().lstrip("#").strip().lower() for cell in row)
    return names if "domain" in names else None


def _boolean(value: str, column: str) -> bool:
    found = _BOOLEANS.get(value.strip().lower())
    if found is None:
        raise ValueError(f"{column} must be true or false, not {value.strip()[:40]!r}")
    return found


def _row(line: int, columns: tuple[str, ...], cells: list[str]) -> CsvBlock:
    values = dict(zip(columns, cells, strict=False))
    try:
        domain = normalise_domain(values.get("domain", ""))
    except ValidationError as exc:
        raise ValueError(exc.reason) from None
    severity = values.get("severity", "").strip().lower() or "suspend"
    if severity not in SEVERITIES:
        raise ValueError(
            f"severity must be {_choices(SEVERITIES)}, not {values['severity'].strip()[:40]!r}"
        )
    comment = values.get("public_comment", "").strip()
    return CsvBlock(
        line=line,
        domain=domain,
        severity=severity,
        reject_media=_boolean(values.get("reject_media", ""), "reject_media"),
        reject_reports=_boolean(values.get("reject_reports", ""), "reject_reports"),
        public_comment=comment or None,
        obfuscate=_boolean(values.get("obfuscate", ""), "obfuscate"),
    )


def parse_blocklist(text: str) -> list[CsvBlock]:
    """Parse a whole file; raise BlocklistError naming every bad line, or return all rows."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    columns: tuple[str, ...] | None = None
    with_header = False
    blocks: list[CsvBlock] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    end = 0
    try:
        for cells in reader:
            line, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if columns is None:
                columns = _header(cells)
                if columns is not None:
                    with_header = True
                    if any(c not in COLUMNS for c in columns) or len(set(columns)) != len(columns):
                        problems.append((line, "the header must name columns among "
                                               f"{', '.join(HEADER)}, each once"))
                    continue
                columns = COLUMNS
            if with_header and len(cells) != len(columns):
                problems.append((line, f"expected {len(columns)} columns, found {len(cells)}"))
                continue
            if len(cells) > len(COLUMNS):
                problems.append(
                    (line, f"expected at most {len(COLUMNS)} columns, found {len(cells)}")
                )
                continue
            try:
                block = _row(line, columns, cells)
            except ValueError as exc:
                problems.append((line, str(exc)))
                continue
            if block.domain in seen:
                problems.append((line, f"{block.domain} is already on line {seen[block.domain]}"))
                continue
            seen[block.domain] = line
            blocks.append(block)
    except csv.Error as exc:
        problems.append((end + 1, f"not valid CSV: {exc}"))
    if problems:
        raise BlocklistError(problems)
    return blocks


def format_blocklist(blocks: Iterable[CsvBlock]) -> str:
    """Mastodon's export format, header first, one block a line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for block in blocks:
        writer.writerow([
            block.domain, block.severity, _text(block.reject_media), _text(block.reject_reports),
            block.public_comment or "", _text(block.obfuscate),
        ])
    return out.getvalue()


def _choices(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _text(flag: bool) -> str:
    return "true" if flag else "false"
