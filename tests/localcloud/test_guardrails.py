"""Deployment guardrails and endpoint metrics through boto3: the per-variant metrics in CloudWatch, canary and
linear traffic shifting measured over real requests, and the automatic rollback on an alarm (set by hand, and
tripped by a real burst of 5XX errors from a broken model), with no failed request outside the canary's share.

The models are pure Python (tests/localcloud/helpers.py): the old fleet answers with scale 2, the new one with
scale 3, so each answer says which fleet served it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import PYTORCH_INFERENCE_IMAGE, ROLE_ARN
from tests.localcloud.helpers import (
    PURE_PYTHON_INFERENCE,
    assert_valid_output,
    error_of,
    pure_python_model_archive,
    unique,
    wait_for,
)

BROKEN_INFERENCE = PURE_PYTHON_INFERENCE.replace(
    "def transform_fn(model, body, content_type, accept):",
    "def transform_fn(model, body, content_type, accept):\n    raise RuntimeError('this challenger is broken')",
)


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = unique("guardrails")
    s3.create_bucket(Bucket=name)
    archives = {
        "old": pure_python_model_archive(2),
        "new": pure_python_model_archive(3),
        "broken": pure_python_model_archive(3, BROKEN_INFERENCE),
    }
    for kind, archive in archives.items():
        s3.put_object(Bucket=name, Key=f"{kind}/model.tar.gz", Body=archive)
    return name


def config(sagemaker: Any, bucket: str, kind: str) -> str:
    """A model of `kind` (old, new, broken) and an endpoint config serving it; returns the config's name."""
    name = unique(f"gr-{kind}")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": PYTORCH_INFERENCE_IMAGE, "ModelDataUrl": f"s3://{bucket}/{kind}/model.tar.gz"},
        ExecutionRoleArn=ROLE_ARN,
    )
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    return name


def wait_status(sagemaker: Any, endpoint: str, timeout_s: float = 90) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        return described if described["EndpointStatus"] in ("InService", "Failed") else None

    return dict(wait_for(settled, timeout_s))


def endpoint_on(sagemaker: Any, bucket: str, kind: str = "old") -> tuple[str, str]:
    name, config_name = unique("gr-endpoint"), config(sagemaker, bucket, kind)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config_name)
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    return name, config_name


def baking(sagemaker: Any, endpoint: str, timeout_s: float = 90) -> dict[str, Any]:
    """The description once the new fleet is up and a bake runs."""

    def bake() -> dict[str, Any] | None:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        variants = described.get("PendingDeploymentSummary", {}).get("ProductionVariants", [])
        return described if variants and variants[0]["VariantStatus"][0]["Status"] == "Baking" else None

    described = wait_for(bake, timeout_s)
    assert described, sagemaker.describe_endpoint(EndpointName=endpoint)
    return dict(described)


def canary(size: int, wait_s: int, alarms: list[str] | None = None, kind: str = "CANARY") -> dict[str, Any]:
    routing: dict[str, Any] = {"Type": kind, "WaitIntervalInSeconds": wait_s}
    if kind == "CANARY":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": size}
    elif kind == "LINEAR":
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": size}
    deployment: dict[str, Any] = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing}}
    if alarms:
        deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return deployment


def served_by(runtime: Any, endpoint: str) -> str:
    """ "old" or "new": which fleet answered one request."""
    reply = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"scone", ContentType="image/png")
    return {2: "old", 3: "new"}[json.loads(reply["Body"].read())["scale"]]


@dataclass
class Traffic:
    """Requests sent one after another from a thread: who served each, and the failures."""

    served: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, runtime: Any, endpoint: str) -> None:
        while not self.stop.is_set():
            try:
                self.served.append(served_by(runtime, endpoint))
            except ClientError as error:
                self.failures.append(str(error))
                self.served.append("failed")


@contextmanager
def traffic(runtime: Any, endpoint: str) -> Iterator[Traffic]:
    sent = Traffic()
    thread = threading.Thread(target=sent.run, args=(runtime, endpoint), daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        sent.stop.set()
        thread.join(timeout=30)


def errors_alarm(cloudwatch: Any, endpoint: str) -> str:
    name = unique("gr-5xx")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    return name


@pytest.fixture(scope="module")
def serving(sagemaker: Any, bucket: str) -> Iterator[str]:
    """One InService endpoint for the refusals (none of them starts anything)."""
    endpoint, _ = endpoint_on(sagemaker, bucket)
    yield endpoint
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_invocation_metrics_reach_cloudwatch_per_variant(
    sagemaker: Any, runtime: Any, cloudwatch: Any, bucket: str
) -> None:
    endpoint, _ = endpoint_on(sagemaker, bucket)
    started = datetime.now(UTC) - timedelta(minutes=1)
    for _ in range(5):
        served_by(runtime, endpoint)
    for _ in range(2):  # the model raises on FAIL: a 500 from the model, a ModelError for the caller
        with pytest.raises(ClientError) as raised:
            runtime.invoke_endpoint(EndpointName=endpoint, Body=b"FAIL", ContentType="image/png")
        assert raised.value.response["Error"]["Code"] == "ModelError"
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]

    def query(metric: str, stat: str) -> dict[str, Any]:
        return {
            "Id": f"{metric.lower()}_{stat.lower()}",
            "MetricStat": {
                "Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric, "Dimensions": dimensions},
                "Period": 60,
                "Stat": stat,
            },
        }

    queries = [
        query("Invocations", "Sum"),
        query("Invocation5XXErrors", "Sum"),
        query("Invocation4XXErrors", "Sum"),
        query("InvocationModelErrors", "Sum"),
        query("ModelLatency", "SampleCount"),
        query("ModelLatency", "Average"),
        query("OverheadLatency", "Average"),
    ]

    def totals() -> dict[str, float] | None:
        got = cloudwatch.get_metric_data(
            MetricDataQueries=queries, StartTime=started, EndTime=datetime.now(UTC) + timedelta(minutes=1)
        )
        values = {r["Id"]: sum(r["Values"]) for r in got["MetricDataResults"]}
        return values if values.get("invocations_sum") == 7 else None

    values = wait_for(totals, 15, interval_s=0.5)
    assert values["invocation5xxerrors_sum"] == 2 and values["invocation4xxerrors_sum"] == 0
    assert values["invocationmodelerrors_sum"] == 2 and values["modellatency_samplecount"] == 7
    # Microseconds, as on AWS: a local round trip to the model takes more than 50 µs and less than 5 s.
    assert 50 < values["modellatency_average"] < 5_000_000
    assert 0 < values["overheadlatency_average"] < 5_000_000
    listed = cloudwatch.list_metrics(Namespace="AWS/SageMaker", Dimensions=[dimensions[0]])["Metrics"]
    assert {"Invocations", "InvocationsPerInstance", "ModelLatency", "OverheadLatency"} <= {
        m["MetricName"] for m in listed
    }
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_a_canary_gets_its_share_then_the_new_fleet_takes_all(sagemaker: Any, runtime: Any, bucket: str) -> None:
    endpoint, old_config = endpoint_on(sagemaker, bucket)
    new_config = config(sagemaker, bucket, "new")
    deployment = canary(20, wait_s=15)
    deployment["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] = 1
    sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config, DeploymentConfig=deployment)

    during = baking(sagemaker, endpoint)
    assert_valid_output("DescribeEndpoint", during)
    assert during["EndpointStatus"] == "Updating" and during["EndpointConfigName"] == old_config
    pending = during["PendingDeploymentSummary"]
    assert pending["EndpointConfigName"] == new_config
    assert pending["ProductionVariants"][0]["VariantStatus"][0]["StatusMessage"].startswith("Baking canary")
    assert during["LastDeploymentConfig"] == deployment

    shares = [served_by(runtime, endpoint) for _ in range(400)]
    still = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert still["EndpointStatus"] == "Updating", "the bake ended before 400 requests were measured"
    assert abs(shares.count("new") / len(shares) - 0.20) <= 0.05, shares.count("new")
    assert "failed" not in shares

    after = wait_status(sagemaker, endpoint)
    assert after["EndpointStatus"] == "InService" and after["EndpointConfigName"] == new_config
    assert "PendingDeploymentSummary" not in after and "FailureReason" not in after
    assert {served_by(runtime, endpoint) for _ in range(20)} == {"new"}
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_linear_steps_shift_traffic_one_step_at_a_time(sagemaker: Any, runtime: Any, bucket: str) -> None:
    endpoint, _ = endpoint_on(sagemaker, bucket)
    new_config = config(sagemaker, bucket, "new")
    sagemaker.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=new_config, DeploymentConfig=canary(34, wait_s=6, kind="LINEAR")
    )
    baking(sagemaker, endpoint)
    steps: dict[float, list[str]] = {}  # the weight each step gave the new fleet -> who served during it
    while (described := sagemaker.describe_endpoint(EndpointName=endpoint))["EndpointStatus"] == "Updating":
        weight = described["PendingDeploymentSummary"]["ProductionVariants"][0].get("CurrentWeight")
        batch = [served_by(runtime, endpoint) for _ in range(50)]
        now = sagemaker.describe_endpoint(EndpointName=endpoint)
        if (
            weight is not None
            and now.get("PendingDeploymentSummary", {}).get("ProductionVariants", [{}])[0].get("CurrentWeight")
            == weight
        ):  # the whole batch ran within one step
            steps.setdefault(round(weight, 2), []).extend(batch)
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == new_config
    assert [0.34, 0.68] == sorted(w for w in steps if w < 1), steps.keys()  # two steps, then all traffic
    for weight, served in steps.items():
        assert abs(served.count("new") / len(served) - weight) <= 0.05, (weight, served.count("new"), len(served))
    sagemaker.delete_endpoint(EndpointName=endpoint)


def canary_baking(sagemaker: Any, cloudwatch: Any, bucket: str, model: str, percent: int) -> tuple[str, str, str]:
    """An endpoint on the old model, updated to `model` as a canary of `percent` held for 120 s with the 5XX alarm
    watched, once its bake has begun: (endpoint, old config, alarm)."""
    endpoint, old_config = endpoint_on(sagemaker, bucket)
    alarm = errors_alarm(cloudwatch, endpoint)
    sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=config(sagemaker, bucket, model),
        DeploymentConfig=canary(percent, wait_s=120, alarms=[alarm]),
    )
    baking(sagemaker, endpoint)
    return endpoint, old_config, alarm


def test_an_alarm_set_to_alarm_during_the_bake_rolls_back(
    sagemaker: Any, runtime: Any, cloudwatch: Any, bucket: str
) -> None:
    endpoint, old_config, alarm = canary_baking(sagemaker, cloudwatch, bucket, "new", 50)
    with traffic(runtime, endpoint) as sent:
        wait_for(lambda: "new" in sent.served, 10)
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="a person pulled the brake")
        after = wait_status(sagemaker, endpoint, timeout_s=30)  # well before the 120 s bake would end
        sent_before = len(sent.served)
        wait_for(lambda: len(sent.served) > sent_before + 20, 10)
    assert after["EndpointStatus"] == "InService" and after["EndpointConfigName"] == old_config
    assert alarm in after["FailureReason"] and "a person pulled the brake" in after["FailureReason"]
    assert "PendingDeploymentSummary" not in after
    assert not sent.failures, sent.failures[:3]  # the new fleet was healthy: nobody saw the rollback
    assert set(sent.served[sent_before:]) == {"old"}
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_a_burst_of_5xx_from_a_broken_model_trips_the_alarm_and_rolls_back(
    sagemaker: Any, runtime: Any, cloudwatch: Any, bucket: str
) -> None:
    endpoint, old_config, alarm = canary_baking(sagemaker, cloudwatch, bucket, "broken", 20)
    with traffic(runtime, endpoint) as sent:
        after = wait_status(sagemaker, endpoint, timeout_s=30)  # the alarm, not the bake, ends it
        rolled_back_at = len(sent.served)
        wait_for(lambda: len(sent.served) > rolled_back_at + 50, 15)
    assert after["EndpointStatus"] == "InService" and after["EndpointConfigName"] == old_config
    assert alarm in after["FailureReason"], after["FailureReason"]
    assert all("ModelError" in failure and "this challenger is broken" in failure for failure in sent.failures)
    assert sent.failures, "the broken canary took no request"
    # Only the canary's share failed, and nothing failed once traffic was back on the old fleet.
    assert sent.served.count("failed") / rolled_back_at <= 0.20 + 0.05
    assert "failed" not in sent.served[rolled_back_at + 5 :]
    assert set(sent.served[rolled_back_at + 5 :]) == {"old"}
    history = cloudwatch.describe_alarm_history(AlarmName=alarm, HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    assert any(json.loads(item["HistoryData"])["newState"]["stateValue"] == "ALARM" for item in history)
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_a_retained_deployment_config_is_reused(sagemaker: Any, bucket: str) -> None:
    name, config_name = unique("gr-endpoint"), config(sagemaker, bucket, "old")
    deployment = canary(50, wait_s=1)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config_name, DeploymentConfig=deployment)
    created = wait_status(sagemaker, name)
    assert "LastDeploymentConfig" not in created  # CreateEndpoint only stores it
    sagemaker.update_endpoint(
        EndpointName=name, EndpointConfigName=config(sagemaker, bucket, "new"), RetainDeploymentConfig=True
    )
    assert baking(sagemaker, name)["LastDeploymentConfig"] == deployment
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    sagemaker.delete_endpoint(EndpointName=name)


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (canary(60, 10), "CanarySize (60% of 1 instance(s)) must be less than or equal to 50%"),
        (canary(5, 10, kind="LINEAR"), "LinearStepSize (5% of 1 instance(s)) must be 10-50%"),
        (
            {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 1}}},
            "CanarySize is required with Type CANARY",
        ),
        (
            {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "ALL_AT_ONCE",
                        "WaitIntervalInSeconds": 0,
                        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                    }
                }
            },
            "CanarySize is only valid with Type CANARY",
        ),
        (
            {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": canary(20, 400)["BlueGreenUpdatePolicy"][
                        "TrafficRoutingConfiguration"
                    ],
                    "TerminationWaitInSeconds": 300,
                    "MaximumExecutionTimeoutInSeconds": 600,
                }
            },
            "MaximumExecutionTimeoutInSeconds (600) must be greater than the sum",
        ),
        (
            {
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                    "WaitIntervalInSeconds": 1,
                }
            },
            "RollingUpdatePolicy is not supported by the local SageMaker",
        ),
        (canary(20, 10, alarms=["no-such-alarm-anywhere"]), "alarms that do not exist: no-such-alarm-anywhere"),
        (
            {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {"Type": "LINEAR", "WaitIntervalInSeconds": 4000}
                }
            },
            "Member must have value less than or equal to 3600",
        ),
    ],
)
def test_a_deployment_config_aws_refuses_is_refused_and_nothing_changes(
    sagemaker: Any, bucket: str, serving: str, deployment: dict[str, Any], message: str
) -> None:
    endpoint = serving
    before = sagemaker.describe_endpoint(EndpointName=endpoint)
    error = error_of(
        sagemaker.update_endpoint,
        EndpointName=endpoint,
        EndpointConfigName=config(sagemaker, bucket, "new"),
        DeploymentConfig=deployment,
    )
    assert error["Code"] == "ValidationException" and message in error["Message"], error
    after = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert after["EndpointStatus"] == "InService" and after["EndpointConfigName"] == before["EndpointConfigName"]
