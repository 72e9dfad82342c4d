"""DAG runs for the reliability suite: `dag.test()` against the package's own cloud, keeping the task logs (Airflow
prints them) so a test can read what a failed try said, plus the crash scenario 1 injects while a run trains."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from localcloud import launcher
from localcloud.config import LocalCloudConfig
from tests.e2e.test_training_pipeline import _run, _states
from tests.localcloud.helpers import wait_for
from tests.reliability import faults


class _Tee(io.TextIOBase):
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


@dataclass
class LoggedRun:
    run: Any  # airflow.models.DagRun
    log: str  # every task's log, as dag.test() printed it
    seconds: float

    @property
    def states(self) -> dict[str, str]:
        return _states(self.run)

    @property
    def succeeded(self) -> bool:
        return str(self.run.state) == "success"

    def xcom(self, task_id: str) -> Any:
        return self.run.get_task_instance(task_id).xcom_pull(task_ids=task_id)

    def try_number(self, task_id: str) -> int:
        return int(self.run.get_task_instance(task_id).try_number)


def run_dag(dag_id: str, conf: dict[str, Any] | None = None) -> LoggedRun:
    """One dag.test() run (retries included, as the scheduler would) whose task logs are kept."""
    buffer = io.StringIO()
    began = time.monotonic()
    with contextlib.redirect_stdout(_Tee(sys.stdout, buffer)):
        run = _run(dag_id, conf)
    return LoggedRun(run, buffer.getvalue(), time.monotonic() - began)


@dataclass
class CrashDuringTraining:
    """In a background thread: wait until a training job is really training, then `kill -9` the local SageMaker
    and bring the local cloud up again as `make up` does. The DAG run stays in the foreground (dag.test() must
    own the main thread); what the crash did is recorded for the tests."""

    cfg: LocalCloudConfig
    sagemaker: Any  # a boto3 client made in the main thread (client creation is not thread-safe)
    timeout_s: float = 300
    job: str = ""
    job_processes: set[int] = field(default_factory=set)  # the toolkit and script, before the crash
    orphans_after_crash: set[int] = field(default_factory=set)  # what the crash left running
    survivors_after_up: set[int] = field(default_factory=set)  # what was still running once it was back up
    killed_pid: int = 0
    recovery_s: float = 0.0  # from the kill until `up` returned with both services healthy
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> CrashDuringTraining:
        self._thread = threading.Thread(target=self._watch, name="crash-during-training", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._thread is not None
        self._thread.join(self.timeout_s)
        if self.error is not None:
            raise self.error

    def _watch(self) -> None:
        try:
            self.job = wait_for(self._training_job, self.timeout_s, 0.1)
            if not self.job:
                raise TimeoutError(f"no training job reached SecondaryStatus Training in {self.timeout_s:.0f} s")
            job = self.job
            self.job_processes = wait_for(lambda: faults.processes_of_job(job), 30, 0.1)
            self.killed_pid = faults.crash(self.cfg, "sagemaker")
            killed_at = time.monotonic()
            self.orphans_after_crash = faults.processes_of_job(job)
            launcher.up(self.cfg)
            self.recovery_s = time.monotonic() - killed_at
            self.survivors_after_up = faults.processes_of_job(job)
        except BaseException as error:  # re-raised in the main thread by __exit__
            self.error = error

    def _training_job(self) -> str:
        summaries = self.sagemaker.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"]
        return next((s["TrainingJobName"] for s in summaries if s["SecondaryStatus"] == "Training"), "")
