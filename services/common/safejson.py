"""The one JSON decoder for input from outside (H1, H3): request bodies, list cursors and
queue messages.

`json.loads` alone turns hostile input into the wrong exceptions: nesting deeper than the
interpreter's recursion limit raises `RecursionError`, an integer literal longer than 4,300
digits `ValueError` (CPython's int conversion limit), and `"\\ud800"` decodes to a lone
surrogate that no UTF-8 consumer (the database driver, a log, a stream) can encode. Here
every such input is a `JsonError` naming the limit it broke, checked before or while
parsing, so callers catch one exception and answer 4xx or dead-letter the message.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

DEFAULT_MAX_DEPTH = 32
"""Objects and arrays nested inside each other; the services' documents use 2."""
DEFAULT_MAX_NUMBER_CHARS = 64
"""Characters of one number literal; the services' numbers are small counts and versions."""

# A backslash pair first, so an escaped quote never ends a string.
_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonError(ValueError):
    """The input is not a JSON document within the limits; the message says which rule."""


def loads(
    data: str | bytes,
    *,
    max_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_number_chars: int = DEFAULT_MAX_NUMBER_CHARS,
) -> Any:
    """The document in `data` (UTF-8 if bytes), or JsonError."""
    text = _text(data, max_bytes)
    _check_depth(text, max_depth)

    def number(kind: type) -> Any:
        def convert(literal: str) -> Any:
            if len(literal) > max_number_chars:
                raise JsonError(f"a number is longer than {max_number_chars} characters")
            value = kind(literal)
            if not math.isfinite(value):  # 1e400 parses as infinity
                raise JsonError("a number is out of range")
            return value

        return convert

    try:
        document = json.loads(
            text,
            parse_int=number(int),
            parse_float=number(float),
            parse_constant=_reject_constant,
        )
    except JsonError:
        raise
    except RecursionError:  # a guard behind the depth check, never expected to trigger
        raise JsonError(f"nested deeper than {max_depth} levels") from None
    except ValueError:  # JSONDecodeError, and anything a hook's conversion raises
        raise JsonError("not valid JSON") from None
    _check_strings(document)
    return document


def _text(data: str | bytes, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise JsonError(f"larger than {max_bytes} bytes")
    if isinstance(data, str):
        if _SURROGATE.search(data):
            raise JsonError("not valid Unicode (a lone surrogate)")
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise JsonError("not valid UTF-8") from None
    if len(text.encode("utf-8")) > max_bytes:
        raise JsonError(f"larger than {max_bytes} bytes")
    return text.removeprefix("\ufeff")


def _check_depth(text: str, max_depth: int) -> None:
    """Bracket depth outside string literals: one linear scan that cannot recurse."""
    depth, in_string = 0, False
    for token in _TOKENS.findall(text):
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > max_depth:
                raise JsonError(f"nested deeper than {max_depth} levels")
        else:
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number")


def _check_strings(document: Any) -> None:
    """Reject a lone surrogate (from a `\\udXXX` escape) in any key or string value."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise JsonError("a string is not valid Unicode (a lone surrogate escape)")
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
