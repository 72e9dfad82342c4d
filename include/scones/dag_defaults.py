"""What every project DAG shares in its header: a fixed, timezone-aware start date and the default task args."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_ARGS = {"owner": "scones-ml", "retries": 2, "retry_delay": timedelta(seconds=30)}
