"""Scenario 1, training crash: `kill -9` of the local SageMaker while the training DAG's job trains, then `make up`.

The job must end Failed with a reason naming the restart (never stuck InProgress), with a terminal transition the
provider's print_log notices; nothing the crash orphaned may keep running; the DAG's `train` task must fail with
that reason, and Airflow's retry of it must complete the run and deploy a model that serves."""

from __future__ import annotations

import re
from typing import Any

import pytest

from localcloud.sagemaker.models.training import RESTART_REASON
from tests.localcloud.helpers import assert_valid_output
from tests.reliability.conftest import Clients, TrainingCrash, classifies, held_out_image

pytestmark = pytest.mark.e2e


def test_the_killed_job_is_failed_with_a_reason_naming_the_restart(training_crash: TrainingCrash, aws: Clients) -> None:
    described = aws.sagemaker.describe_training_job(TrainingJobName=training_crash.crash.job)
    assert_valid_output("DescribeTrainingJob", described)
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"] == RESTART_REASON and "restarted" in described["FailureReason"]
    # print_log keeps a description only when the last StatusMessage changes: the failure must add one.
    before, last = described["SecondaryStatusTransitions"][-2:]
    assert (before["Status"], last["Status"]) == ("Training", "Failed")
    assert last["StatusMessage"] != before["StatusMessage"]
    assert described["TrainingEndTime"] >= described["TrainingStartTime"]


def test_the_crash_orphaned_the_jobs_processes_and_the_restart_killed_them(training_crash: TrainingCrash) -> None:
    crash = training_crash.crash
    assert crash.job_processes, "the job had no process to orphan: it was not really training"
    assert crash.orphans_after_crash, "kill -9 of the server should leave the training process running"
    assert crash.survivors_after_up == set()


def test_the_train_task_fails_with_that_reason_and_its_retry_completes_the_run(
    training_crash: TrainingCrash, aws: Clients
) -> None:
    logged, job = training_crash.logged, training_crash.crash.job
    assert f"Error training {job}: Failed Reason: {RESTART_REASON}" in logged.log
    assert logged.try_number("train") == 2 and logged.states["train"] == "success"
    assert logged.succeeded, logged.states
    # The retry could not reuse the name (SageMaker never reuses one): the provider's `timestamp` policy renamed it.
    retried = logged.xcom("train")["Training"]
    assert re.fullmatch(rf"{job}-\d+", retried["TrainingJobName"]), retried["TrainingJobName"]
    assert aws.sagemaker.describe_training_job(TrainingJobName=retried["TrainingJobName"])["TrainingJobStatus"] == (
        "Completed"
    )


def test_the_recovered_run_deployed_a_model_that_serves(
    training_crash: TrainingCrash, deployment: dict[str, Any], aws: Clients
) -> None:
    endpoint = aws.sagemaker.describe_endpoint(EndpointName=deployment["endpoint_name"])
    assert endpoint["EndpointStatus"] == "InService"
    assert deployment["training_job_name"] == training_crash.logged.xcom("train")["Training"]["TrainingJobName"]
    assert classifies(aws, deployment, held_out_image(aws, deployment))
