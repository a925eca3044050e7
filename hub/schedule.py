"""When routes run: a route's schedule (cron or interval, in a time zone), its slots, jitter and
maintenance windows.

APScheduler's triggers compute the fire times; nothing else of APScheduler is used (its job
stores cannot be shared between processes). Every worker computes the same slots from the same
schedule, without randomness, and the database decides which worker runs a slot
(`hub.engine.claims`): a slot is the un-jittered fire time, jitter is a delay derived from the
route and the slot, and an interval counts from a fixed anchor, not from when a worker started.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

    from hub.config import Schedule

#: Where interval slots count from, so that workers started at different times agree on them.
ANCHOR = datetime(2000, 1, 1)

#: The most missed slots one look back returns when they are not coalesced.
MAX_CATCH_UP = 100

_EVERY = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_END = re.compile(r"^(?:(?P<day>[A-Za-z]{3}) )?(?P<hour>\d{1,2}):(?P<minute>\d{2})$")


class ScheduleError(ValueError):
    """A schedule that cannot be computed; the message says which key and why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def parse_every(text: str) -> timedelta:
    """An interval written as ``90s``, ``15m``, ``2h``, ``1d`` or ``1h30m``."""
    match = _EVERY.match(text.strip())
    if not text.strip() or match is None:
        raise ScheduleError("every", f"{text!r} is not an interval like 30s, 15m, 2h or 1d")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if interval < timedelta(seconds=1):
        raise ScheduleError("every", "must be at least 1s")
    return interval


@dataclass(frozen=True)
class Window:
    """A maintenance window: daily (``01:00-02:00``) or weekly (``Sat 22:00-Sun 04:00``), in the
    schedule's time zone; it may cross midnight or the week's end."""

    text: str
    #: Minutes since Monday 00:00 (weekly) or since midnight (daily), end exclusive.
    start: int
    end: int
    weekly: bool

    @classmethod
    def parse(cls, text: str, key: str) -> Window:
        halves = [part.strip() for part in text.split("-")]
        ends = [_WINDOW_END.match(half) for half in halves]
        if len(ends) != 2 or None in ends:
            raise ScheduleError(key, f"{text!r} is not like 01:00-02:00 or Sat 22:00-Sun 04:00")
        days = [m["day"] for m in ends if m is not None]
        if len([d for d in days if d]) == 1:
            raise ScheduleError(key, f"{text!r}: give a day on both ends or on neither")
        minutes = []
        for match in ends:
            assert match is not None
            hour, minute = int(match["hour"]), int(match["minute"])
            if hour > 23 or minute > 59:
                raise ScheduleError(key, f"{text!r}: {hour:02}:{minute:02} is not a time of day")
            day = 0
            if match["day"]:
                if match["day"].lower() not in _DAYS:
                    raise ScheduleError(key, f"{text!r}: {match['day']!r} is not a day (Mon-Sun)")
                day = _DAYS.index(match["day"].lower())
            minutes.append(day * 1440 + hour * 60 + minute)
        if minutes[0] == minutes[1]:
            raise ScheduleError(key, f"{text!r} is empty")
        return cls(text, minutes[0], minutes[1], weekly=bool(days[0]))

    def covers(self, local: datetime) -> bool:
        """Whether the local time `local` falls inside the window."""
        at = local.hour * 60 + local.minute
        if self.weekly:
            at += local.weekday() * 1440
        if self.start < self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end  # across midnight or the week's end


class Timetable:
    """A route's schedule, compiled: its slots, each one's start time, and its windows."""

    def __init__(self, route: str, schedule: Schedule, default_timezone: str) -> None:
        self.route = route
        self.schedule = schedule
        name = schedule.timezone or default_timezone
        try:
            self.zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError("timezone", f"{name!r} is not a known time zone") from None
        self.trigger = _trigger(schedule, self.zone)
        self.windows = [
            Window.parse(text, f"maintenance.{index}")
            for index, text in enumerate(schedule.maintenance)
        ]
        if schedule.jitter_seconds < 0:
            raise ScheduleError("jitter_seconds", "must not be negative")
        if schedule.misfire_grace_seconds < 0:
            raise ScheduleError("misfire_grace_seconds", "must not be negative")

    def next_slot(self, after: datetime) -> datetime | None:
        """The first slot strictly after `after`."""
        # As a first fire time after a moment, not as the successor of a fire time: an interval
        # trigger adds its interval to any previous time given, aligned with its anchor or not.
        moment = after.astimezone(UTC) + timedelta(microseconds=1)  # UTC: no wall-clock folds
        slot = self.trigger.get_next_fire_time(None, moment)
        if slot is not None and slot.fold and self.schedule.cron is not None:
            # The hour clocks repeat when daylight saving time ends: a cron slot in it runs
            # once, at its first occurrence, as cron itself does.
            return self.next_slot(slot)
        return None if slot is None else slot.astimezone(UTC)

    def due(self, last: datetime | None, now: datetime) -> tuple[list[datetime], bool]:
        """The slots to run now, after the last slot handled (`last`; None: none before now),
        and whether any were missed (older than the misfire grace, or coalesced into one)."""
        if last is None:
            return [], False
        grace = timedelta(seconds=self.schedule.misfire_grace_seconds)
        oldest = now - grace
        first = self.next_slot(last)
        missed = first is not None and first < oldest
        # Slots older than the grace are not run: look from the oldest that still may be.
        slot = first if not missed else self.next_slot(oldest - timedelta(microseconds=1))
        slots: list[datetime] = []
        while slot is not None and slot <= now:
            slots.append(slot)
            slot = self.next_slot(slot)
        if self.schedule.coalesce:
            missed = missed or len(slots) > 1
            slots = slots[-1:]
        elif len(slots) > MAX_CATCH_UP:
            missed, slots = True, slots[-MAX_CATCH_UP:]
        return slots, missed

    def start_at(self, slot: datetime) -> datetime:
        """When `slot` starts: the slot plus its jitter, the same on every worker."""
        spread = self.schedule.jitter_seconds
        if not spread:
            return slot
        digest = hashlib.blake2b(f"{self.route}|{slot.isoformat()}".encode(), digest_size=8)
        return slot + timedelta(seconds=int.from_bytes(digest.digest()) % (spread + 1))

    def in_maintenance(self, when: datetime) -> Window | None:
        """The maintenance window `when` falls into, if any."""
        local = when.astimezone(self.zone)
        return next((w for w in self.windows if w.covers(local)), None)


def _trigger(schedule: Schedule, zone: ZoneInfo) -> BaseTrigger:
    # Imported here: only commands that meet a schedule need APScheduler (3 MiB), not a sync.
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if (schedule.cron is None) == (schedule.every is None):
        raise ScheduleError("cron", "give exactly one of cron and every")
    if schedule.cron is not None:
        try:
            return CronTrigger.from_crontab(schedule.cron, timezone=zone)
        except ValueError as error:
            raise ScheduleError("cron", f"{schedule.cron!r}: {error}") from None
    interval = parse_every(schedule.every or "")
    return IntervalTrigger(
        seconds=int(interval.total_seconds()),
        start_date=ANCHOR.replace(tzinfo=zone),
        timezone=zone,
    )


def schedule_problems(schedule: Schedule, default_timezone: str) -> list[tuple[str, str]]:
    """(key, reason) for what is wrong with a schedule; empty if it can be computed."""
    try:
        Timetable("check", schedule, default_timezone)
    except ScheduleError as error:
        return [(error.key, error.reason)]
    return []
