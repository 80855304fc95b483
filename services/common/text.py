"""Which text the services accept from outside (H1): valid Unicode, no control characters.

One rule for every field a client or producer supplies (titles, creators, source
references, event fields), so a string that PostgreSQL's driver, a JSON log line or a
terminal would choke on, or that would hide a line break, never reaches them.
"""

from __future__ import annotations

import re

# C0 controls and DEL (U+0000-U+001F, U+007F), C1 controls (U+0080-U+009F: U+0085 is a
# line break, U+009B a terminal escape), the line and paragraph separators U+2028/U+2029,
# and UTF-16 surrogates, which are never valid on their own in a Python str.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` is not acceptable text, or None if it is."""
    found = _FORBIDDEN.search(value)
    if found is None:
        return None
    code = ord(found.group())
    if 0xD800 <= code <= 0xDFFF:
        return "is not valid Unicode (a lone surrogate)"
    return f"must not contain control characters (U+{code:04X})"
