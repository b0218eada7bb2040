"""Reading ids from query strings and forms: strict, bounded, never an exception."""

from __future__ import annotations

import re

_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is True), and fits in a 64-bit column


def parse_id(value) -> int | None:
    """``value`` as a positive database id, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**63 else None
    text = str(value or "").strip()
    return int(text) if _ID.fullmatch(text) and int(text) > 0 else None
