"""UpcomingCronTimetable: unpausing a DAG starts no run for a past tick; the weekly cadence is unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable

from include.scones import timetables
from include.scones.timetables import UpcomingCronTimetable

START = datetime(2026, 1, 1, tzinfo=UTC)
# A Wednesday; @weekly ticks on Sundays at 00:00 UTC.
NOW = pendulum.datetime(2026, 12, 2, 10, 30, tz="UTC")
LAST_SUNDAY = pendulum.datetime(2026, 11, 29, tz="UTC")
NEXT_SUNDAY = pendulum.datetime(2026, 12, 6, tz="UTC")


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.timetables.trigger as trigger

    monkeypatch.setattr(timetables, "utcnow", lambda: NOW)
    monkeypatch.setattr(trigger, "utcnow", lambda: NOW)


def restriction(catchup: bool = False) -> TimeRestriction:
    return TimeRestriction(earliest=pendulum.instance(START), latest=None, catchup=catchup)


def test_airflows_own_timetable_starts_the_past_tick_on_unpause() -> None:
    """The behaviour this timetable exists to avoid (if Airflow changes it, this test says so)."""
    info = CronTriggerTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=restriction()
    )
    assert info is not None and info.run_after == LAST_SUNDAY


def test_a_dag_first_unpaused_midweek_waits_for_next_sunday() -> None:
    info = UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=restriction()
    )
    assert info is not None and info.run_after == NEXT_SUNDAY


def test_a_dag_unpaused_after_missing_ticks_runs_none_of_them() -> None:
    three_weeks_ago = pendulum.datetime(2026, 11, 8, tz="UTC")
    info = UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=DataInterval(three_weeks_ago, three_weeks_ago), restriction=restriction()
    )
    assert info is not None and info.run_after == NEXT_SUNDAY


def test_the_cadence_is_one_run_per_tick() -> None:
    # Just after the scheduler created Sunday's run, the next one is a week later, not Sunday again.
    info = UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=DataInterval(NEXT_SUNDAY, NEXT_SUNDAY), restriction=restriction()
    )
    assert info is not None and info.run_after == pendulum.datetime(2026, 12, 13, tz="UTC")


def test_catchup_keeps_airflows_behaviour() -> None:
    for last in (None, DataInterval(LAST_SUNDAY, LAST_SUNDAY)):
        ours = UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
            last_automated_data_interval=last, restriction=restriction(catchup=True)
        )
        theirs = CronTriggerTimetable("@weekly", timezone="UTC").next_dagrun_info(
            last_automated_data_interval=last, restriction=restriction(catchup=True)
        )
        assert ours == theirs


def test_a_latest_bound_before_the_next_tick_ends_the_schedule() -> None:
    bounded = TimeRestriction(earliest=pendulum.instance(START), latest=NOW, catchup=False)
    assert (
        UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
            last_automated_data_interval=None, restriction=bounded
        )
        is None
    )


def test_it_round_trips_through_serialization() -> None:
    timetable = UpcomingCronTimetable("0 * * * *", timezone="UTC")
    again = UpcomingCronTimetable.deserialize(timetable.serialize())
    assert type(again) is UpcomingCronTimetable and again.serialize() == timetable.serialize()
    assert again.summary == "0 * * * * (upcoming ticks only)"
