"""The Airflow amazon provider's SageMaker operators and sensors run unchanged against the local
SageMaker: training with print_log, model, endpoint config, endpoint create and then update, and the
training and endpoint sensors, via dag.test()."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parent / "provider_fixture"
DAGS = Path(__file__).parent / "provider_dags"
BUCKET = "scones-provider-test"


def sourcedir_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("train.py", "inference.py"):
            tar.add(FIXTURE / name, arcname=name)
    return buffer.getvalue()


def test_provider_operators_train_deploy_and_update(
    local_cloud: Any, airflow_db: None, s3: Any, sagemaker: Any, runtime: Any, capfd: Any
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=sourcedir_tar())
    for index in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"data/train/sample-{index}.txt", Body=b"x")
    dag = DagBag(dag_folder=str(DAGS)).get_dag("localcloud_provider_roundtrip")

    for suffix, answer in (("a", "first"), ("b", "second")):  # run b updates the endpoint blue/green
        dag_run = dag.test(run_conf={"suffix": suffix, "answer": answer})
        assert dag_run.state == DagRunState.SUCCESS
        assert {ti.task_id: ti.state for ti in dag_run.get_task_instances()} == dict.fromkeys(
            ["train", "training_done", "model", "endpoint_config", "endpoint", "endpoint_in_service"], "success"
        )
        assert (
            sagemaker.describe_training_job(TrainingJobName=f"provider-job-{suffix}")["TrainingJobStatus"]
            == "Completed"
        )
        endpoint = sagemaker.describe_endpoint(EndpointName="provider-endpoint")
        assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == (
            "InService",
            f"provider-config-{suffix}",
        )
        reply = runtime.invoke_endpoint(
            EndpointName="provider-endpoint", Body=b"abcd", ContentType="application/octet-stream"
        )
        assert json.loads(reply["Body"].read()) == {"answer": answer, "bytes": 4}

    # print_log=True streamed the job's own output from CloudWatch Logs into the task log.
    captured = capfd.readouterr()
    assert "training on 3 files with answer=second" in captured.out + captured.err
