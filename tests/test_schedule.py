"""Schedules (issue #6, item 1): slots from cron and interval triggers in a time zone, the same on
every worker; jitter, misfire grace, coalescing and maintenance windows; mistakes as
configuration errors naming the key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.config import ConfigError, Schedule, load_config
from hub.schedule import ScheduleError, Timetable, Window, parse_every

NEW_YORK = ZoneInfo("America/New_York")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def table(**schedule: object) -> Timetable:
    return Timetable("eastview-payroll", Schedule(**schedule), "America/New_York")


def test_cron_slots_are_read_in_the_schedule_time_zone():
    hourly_at_two = table(cron="0 2 * * *")
    assert hourly_at_two.next_slot(at("2026-11-30T12:00:00+00:00")) == at(
        "2026-12-01T02:00:00-05:00"
    )
    in_london = table(cron="0 2 * * *", timezone="Europe/London")
    assert in_london.next_slot(at("2026-11-30T12:00:00+00:00")) == at("2026-12-01T02:00:00+00:00")


def test_a_cron_slot_in_the_hour_daylight_saving_time_skips_runs_once_an_hour_later():
    nightly = table(cron="30 2 * * *")
    # 2027-03-14 02:30 does not exist in New York: clocks jump from 02:00 to 03:00.
    slot = nightly.next_slot(at("2027-03-14T00:00:00-05:00"))
    assert slot == at("2027-03-14T03:30:00-04:00")
    assert nightly.next_slot(slot) == at("2027-03-15T02:30:00-04:00")


def test_a_cron_slot_in_the_hour_daylight_saving_time_repeats_runs_once():
    nightly = table(cron="30 1 * * *")
    # 2027-11-07 01:30 happens twice in New York: at 05:30 and at 06:30 UTC.
    slot = nightly.next_slot(at("2027-11-07T00:00:00-04:00"))
    assert slot == at("2027-11-07T05:30:00+00:00")
    assert nightly.next_slot(slot) == at("2027-11-08T06:30:00+00:00")


def test_interval_slots_are_anchored_so_workers_started_apart_agree():
    one = table(every="15m")
    other = table(every="15m")
    assert one.next_slot(at("2026-11-30T12:07:13+00:00")) == at("2026-11-30T12:15:00+00:00")
    assert other.next_slot(at("2026-11-30T12:14:59+00:00")) == at("2026-11-30T12:15:00+00:00")
    assert one.next_slot(at("2026-11-30T12:15:00+00:00")) == at("2026-11-30T12:30:00+00:00")


def test_missed_slots_coalesce_into_one_run_of_the_latest():
    hourly = table(every="1h", misfire_grace_seconds=7200)
    now = at("2026-11-30T12:30:00+00:00")
    slots, missed = hourly.due(at("2026-11-30T00:00:00+00:00"), now)
    assert slots == [at("2026-11-30T12:00:00+00:00")]
    assert missed  # twelve hours of slots, one run


def test_without_coalescing_every_slot_within_the_grace_runs():
    hourly = table(every="1h", misfire_grace_seconds=3 * 3600, coalesce=False)
    now = at("2026-11-30T12:30:00+00:00")
    slots, missed = hourly.due(at("2026-11-30T00:00:00+00:00"), now)
    assert slots == [at(f"2026-11-30T{h}:00:00+00:00") for h in (10, 11, 12)]
    assert missed  # 01:00 to 09:00 were older than the grace


def test_a_slot_older_than_the_misfire_grace_is_not_run():
    quarter = table(every="15m", misfire_grace_seconds=300)
    slots, missed = quarter.due(at("2026-11-30T11:50:00+00:00"), at("2026-11-30T12:07:00+00:00"))
    assert slots == [] and missed
    slots, missed = quarter.due(at("2026-11-30T11:50:00+00:00"), at("2026-11-30T12:04:00+00:00"))
    assert slots == [at("2026-11-30T12:00:00+00:00")] and not missed


def test_a_route_new_to_the_daemon_has_no_backlog():
    assert table(every="1m").due(None, at("2026-11-30T12:00:00+00:00")) == ([], False)


def test_jitter_is_bounded_spread_and_the_same_on_every_worker():
    slot = at("2026-12-01T02:00:00-05:00")
    starts = {
        Timetable(f"route-{n}", Schedule(cron="0 2 * * *", jitter_seconds=600), "UTC").start_at(
            slot
        )
        for n in range(200)
    }
    assert all(slot <= s <= slot + timedelta(seconds=600) for s in starts)
    assert len(starts) > 100  # spread, not one moment
    jittered = table(cron="0 2 * * *", jitter_seconds=600)
    assert jittered.start_at(slot) == table(cron="0 2 * * *", jitter_seconds=600).start_at(slot)
    assert table(cron="0 2 * * *").start_at(slot) == slot


@pytest.mark.parametrize(
    ("window", "inside", "outside"),
    [
        ("01:00-02:00", "2026-12-01T01:30", "2026-12-01T02:00"),
        ("23:30-00:30", "2026-12-01T00:10", "2026-12-01T00:30"),
        ("Sat 22:00-Sun 04:00", "2026-12-06T03:59", "2026-12-05T21:59"),
        ("Sun 23:00-Mon 01:00", "2026-12-07T00:30", "2026-12-07T01:00"),
    ],
)
def test_maintenance_windows_cover_their_local_times(window, inside, outside):
    timetable = table(every="5m", maintenance=[window])
    assert timetable.in_maintenance(datetime.fromisoformat(inside).replace(tzinfo=NEW_YORK))
    assert (
        timetable.in_maintenance(datetime.fromisoformat(outside).replace(tzinfo=NEW_YORK)) is None
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Sat 22:00", "is not like"),
        ("Sat 22:00-04:00", "a day on both ends or on neither"),
        ("Fun 22:00-Sun 04:00", "'Fun' is not a day"),
        ("25:00-26:00", "is not a time of day"),
        ("10:00-10:00", "is empty"),
    ],
)
def test_a_bad_maintenance_window_says_why(text, message):
    with pytest.raises(ScheduleError, match=message):
        Window.parse(text, "maintenance.0")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)]
)
def test_intervals(text, seconds):
    assert parse_every(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "m", "1w", "0s", "15 m"])
def test_bad_intervals(text):
    with pytest.raises(ScheduleError):
        parse_every(text)


def test_schedule_mistakes_are_configuration_errors_naming_the_key(config_dir: Path):
    routes = config_dir / "routes.toml"
    text = routes.read_text()
    text = text.replace(
        "[routes.eastview-payroll]\n",
        "[routes.eastview-payroll]\nschedule = { cron = '0 25 * * *' }\n",
    )
    text = text.replace(
        "[routes.millbrook-payroll]\n",
        "[routes.millbrook-payroll]\nschedule = { every = '15m', cron = '0 * * * *', "
        "timezone = 'Mars/Olympus' }\nrestart = { backoff_seconds = 0 }\n",
    )
    text = text.replace(
        "[routes.harbor-falls-payroll]\n",
        "[routes.harbor-falls-payroll]\nstall_seconds = 0\n"
        "schedule = { every = '1h', maintenance = ['noon'] }\n",
    )
    routes.write_text(text)
    cooperative = config_dir / "cooperative.toml"
    cooperative.write_text(
        cooperative.read_text() + "\n[worker]\nlease_seconds = 10\nheartbeat_seconds = 8\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config_dir)
    found = {(Path(i.file).name, i.key) for i in caught.value.issues}
    assert found == {
        ("routes.toml", "routes.eastview-payroll.schedule.cron"),
        ("routes.toml", "routes.millbrook-payroll.schedule.timezone"),
        ("routes.toml", "routes.millbrook-payroll.restart.backoff_seconds"),
        ("routes.toml", "routes.harbor-falls-payroll.stall_seconds"),
        ("routes.toml", "routes.harbor-falls-payroll.schedule.maintenance.0"),
        ("cooperative.toml", "worker.heartbeat_seconds"),
    }
    messages = "\n".join(str(i) for i in caught.value.issues)
    assert "higher than the maximum value (23)" in messages
    assert "'Mars/Olympus' is not a known time zone" in messages
