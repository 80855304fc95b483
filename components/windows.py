"""Backup, snapshot and maintenance windows: their forms and the rules AWS applies to a pair.

RDS and ElastiCache both take a daily window (backups, snapshots) and a weekly one
(maintenance), refuse windows shorter than their minimum, and refuse a pair that overlaps.
"""

from __future__ import annotations

import re

from components.tunables import Problem

MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_TIME = r"([01]\d|2[0-3]):[0-5]\d"
_DAY = "(" + "|".join(WEEKDAYS) + ")"
DAILY_WINDOW = rf"^{_TIME}-{_TIME}$"
WEEKLY_WINDOW = rf"^{_DAY}:{_TIME}-{_DAY}:{_TIME}$"
DAILY_FORM = "hh:mm-hh:mm (UTC)"
WEEKLY_FORM = "ddd:hh:mm-ddd:hh:mm (UTC, ddd = mon..sun)"


def _minute_of(moment: str) -> int:
    *day, hours, minutes = moment.split(":")
    offset = WEEKDAYS.index(day[0]) * MINUTES_PER_DAY if day else 0
    return offset + int(hours) * 60 + int(minutes)


def window_span(window: str) -> tuple[int, int]:
    """(start, length) in minutes of a UTC window, daily `hh:mm-hh:mm` or weekly
    `ddd:hh:mm-ddd:hh:mm`; a window may wrap past midnight or the end of the week."""
    start_text, end_text = window.split("-")
    period = MINUTES_PER_WEEK if start_text[:3] in WEEKDAYS else MINUTES_PER_DAY
    start = _minute_of(start_text)
    return start, (_minute_of(end_text) - start) % period


def windows_overlap(daily: str, weekly: str) -> bool:
    """Whether a daily window (repeated every day) meets a weekly window."""
    daily_start, daily_length = window_span(daily)
    weekly_start, weekly_length = window_span(weekly)
    daily_minutes = {
        (day * MINUTES_PER_DAY + daily_start + i) % MINUTES_PER_WEEK
        for day in range(7)
        for i in range(daily_length)
    }
    return any((weekly_start + i) % MINUTES_PER_WEEK in daily_minutes for i in range(weekly_length))


def window_pair_rules(
    daily: tuple[str, str], weekly: tuple[str, str], minimum_minutes: int, service: str
) -> list[Problem]:
    """A (field, daily window) and (field, weekly window) pair: each at least the service's
    minimum, and apart. Malformed windows are left to their declarations."""
    if not (re.match(DAILY_WINDOW, daily[1]) and re.match(WEEKLY_WINDOW, weekly[1])):
        return []
    problems = [
        Problem(name, window, f"a window of at least {minimum_minutes} minutes ({service} minimum)")
        for name, window in (daily, weekly)
        if window_span(window)[1] < minimum_minutes
    ]
    if not problems and windows_overlap(daily[1], weekly[1]):
        problems.append(
            Problem(
                weekly[0],
                weekly[1],
                f"a window that does not overlap {{{daily[0]}}} ({daily[1]}); "
                f"{service} rejects overlapping windows",
            )
        )
    return problems
