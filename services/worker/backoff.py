"""Retry delays: exponential backoff with full jitter, in whole seconds for SQS."""

from __future__ import annotations

import random
from collections.abc import Callable

from services.common.settings import SQS_MAX_VISIBILITY_SECONDS


def full_jitter_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    seconds_since_first_receive: float = 0.0,
    rng: Callable[[], float] = random.random,
) -> int:
    """A delay drawn uniformly from [0, min(cap, base * 2^(attempt-1))].

    SQS refuses a visibility timeout that reaches past 12 hours after the message was
    first received, so the ceiling shrinks as that limit approaches.
    """
    exponential = base * 2 ** max(0, min(attempt - 1, 30))
    left_in_sqs_window = SQS_MAX_VISIBILITY_SECONDS - seconds_since_first_receive - 1
    ceiling = max(0.0, min(cap, exponential, left_in_sqs_window))
    return int(rng() * ceiling)
