"""Numbers from paths, query strings and headers, read without trusting them.

`str.isdigit()` is true for "²" and "٣", which `int()` then refuses or reads; a 5,000-digit
string trips Python's int-string limit; and a number past 2**63 - 1 makes PostgreSQL's
driver raise on a bigint column. Each of those would be a 500, so each is refused here.
"""

from __future__ import annotations

import re
from typing import Final

MAX_ROW_ID: Final = 2**63 - 1
_DIGITS: Final = re.compile(r"[0-9]{1,19}")


def non_negative(raw: str | None, maximum: int = MAX_ROW_ID) -> int | None:
    """An ASCII decimal in 0..maximum, or None for anything else."""
    if raw is None or _DIGITS.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if value <= maximum else None


def row_id(raw: str) -> int | None:
    """A database id from a path segment; None (answer 404) unless it could be one."""
    value = non_negative(raw)
    return value if value is not None and value >= 1 else None
