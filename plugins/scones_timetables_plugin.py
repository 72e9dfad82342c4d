"""Registers the project's timetable (include/scones/timetables.py) so DAGs that use it can be serialized and
scheduled: Airflow refuses a custom timetable that no plugin names."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from include.scones.timetables import UpcomingCronTimetable


class SconesTimetablesPlugin(AirflowPlugin):
    name = "scones_timetables"
    timetables = [UpcomingCronTimetable]
