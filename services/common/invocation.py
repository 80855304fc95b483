"""What a Lambda invocation can tell about its own time budget."""

from __future__ import annotations

from typing import Any


def function_timeout(context: Any, default: float) -> float:
    """The time this invocation has left, which on the first one is about the function's
    timeout; `default` when the context cannot tell (a test, a malformed context)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            return max(1.0, float(remaining()) / 1000)
        except (TypeError, ValueError):
            pass
    return default
