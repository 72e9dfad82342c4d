"""Where a workflow execution's time goes: the per-state split the bench reads from execution histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from benchmarks.workflow_bench import state_durations

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_state_durations_split_an_execution_at_each_state_entry() -> None:
    events = [
        {"type": "ExecutionStarted", "timestamp": at(0)},
        {"type": "TaskStateEntered", "timestamp": at(150), "stateEnteredEventDetails": {"name": "Serialize"}},
        {"type": "TaskSucceeded", "timestamp": at(200)},
        {"type": "TaskStateEntered", "timestamp": at(210), "stateEnteredEventDetails": {"name": "Classify"}},
        {"type": "TaskStateEntered", "timestamp": at(280), "stateEnteredEventDetails": {"name": "Filter"}},
    ]
    assert state_durations(events, at(400)) == {"(start)": 150.0, "Serialize": 60.0, "Classify": 70.0, "Filter": 120.0}


def test_a_state_entered_twice_adds_up() -> None:
    events = [
        {"type": "ExecutionStarted", "timestamp": at(0)},
        {"type": "PassStateEntered", "timestamp": at(10), "stateEnteredEventDetails": {"name": "Loop"}},
        {"type": "PassStateEntered", "timestamp": at(30), "stateEnteredEventDetails": {"name": "Loop"}},
    ]
    assert state_durations(events, at(35)) == {"(start)": 10.0, "Loop": 25.0}
