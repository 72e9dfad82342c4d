"""`UpcomingCronTimetable`: a cron schedule that never starts a run for a tick already in the past.

Airflow's `CronTriggerTimetable` with `catchup=False` still starts the most recent *past* tick the moment a DAG
is unpaused (or first seen). The trigger form ticks "Unpause on trigger" by default, so a user who triggered the
paused training DAG with their own Params got a scheduled run with the default Params as well, and with
`max_active_runs=1` it took the slot ahead of theirs. Here the first scheduled run after an unpause is the next
tick: the run the user triggered is the one that runs. With `catchup=True` it behaves like its parent.

A custom timetable must be registered by a plugin (`plugins/scones_timetables_plugin.py`) wherever DAGs are
parsed or scheduled. Like `airflow_runtime.py`, this module imports Airflow: a timetable is an Airflow class.
"""

from __future__ import annotations

from airflow.sdk.timezone import coerce_datetime, utcnow
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable


class UpcomingCronTimetable(CronTriggerTimetable):
    """Runs at each cron tick from now on; a tick missed while paused is skipped, not run late."""

    @property
    def summary(self) -> str:
        return f"{self._expression} (upcoming ticks only)"

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        if restriction.catchup:
            return super().next_dagrun_info(
                last_automated_data_interval=last_automated_data_interval, restriction=restriction
            )
        # The parent's candidates, except that "now" rounds up to the next tick instead of down to the last one.
        candidates = [self._align_to_next(coerce_datetime(utcnow()))]
        if last_automated_data_interval is not None:
            candidates.append(self._get_next(last_automated_data_interval.end))
        if restriction.earliest is not None:
            candidates.append(self._align_to_next(restriction.earliest))
        next_start = max(candidates)
        if restriction.latest is not None and restriction.latest < next_start:
            return None
        return DagRunInfo.interval(coerce_datetime(next_start - self._interval), next_start)
