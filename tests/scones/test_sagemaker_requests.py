"""sagemaker_requests: every request dict is a valid boto3 input, checked by botocore's own SageMaker model."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from botocore.validate import ParamValidator

from include.scones import sagemaker_requests as requests
from include.scones.params import defaults, validate
from include.scones.records import CandidateMetadata, EvaluationResult, RunPlan
from include.scones.sagemaker_requests import run_name
from include.scones.teardown import RUN_NAME
from localcloud.sagemaker.exceptions import ValidationException
from localcloud.sagemaker.validation import operation_model, validate_input

NAME = run_name("manual__2025-01-02T03:04:05+00:00", datetime(2025, 1, 2, 3, 4, 5))
DATA_URI = "s3://scones-unlimited/datasets/cifar100/0123456789abcdef/"
CODE_URI = "s3://scones-unlimited/code/fedcba9876543210/sourcedir.tar.gz"
ARTIFACT = f"s3://scones-unlimited/models/{NAME}/output/model.tar.gz"


def make_plan(**params: Any) -> RunPlan:
    return RunPlan(
        name=NAME,
        bucket="scones-unlimited",
        region="us-east-1",
        role_arn="arn:aws:iam::123456789012:role/scones-sagemaker-execution",
        training_image="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311",
        inference_image="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311",
        endpoint_name="scones-vehicle-classifier",
        model_output_uri="s3://scones-unlimited/models/",
        capture_uri="s3://scones-unlimited/data_capture",
        model_package_group="scones-vehicle-classifier",
        params=validate(defaults() | params),
    )


RESULT = EvaluationResult(
    training_job_name=NAME,
    data_uri=DATA_URI,
    evaluation_uri=f"s3://scones-unlimited/models/{NAME}/output/evaluation.json",
    accuracy=0.945,
    pass_share_at_threshold=0.81,
    accuracy_among_passed=None,
)
PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/scones-vehicle-classifier/3"


def create_model_package(plan: RunPlan) -> dict[str, Any]:
    """The CreateModelPackage request the provider's register operator sends for these arguments."""
    registration = requests.model_package(plan, RESULT, ARTIFACT)
    return {
        "InferenceSpecification": {
            "Containers": [{"Image": registration["image_uri"], "ModelDataUrl": registration["model_url"]}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        "ModelPackageGroupName": registration["package_group_name"],
        "ModelPackageDescription": registration["package_desc"],
        "ModelApprovalStatus": "PendingManualApproval",
    } | registration["extras"]


def all_requests(plan: RunPlan) -> dict[str, dict[str, Any]]:
    return {
        "CreateTrainingJob": requests.training_job(plan, DATA_URI, CODE_URI),
        "CreateModel": requests.model(plan, ARTIFACT),
        "CreateModelPackage": create_model_package(plan),
        "CreateModel (serving)": requests.serving_model(plan, PACKAGE_ARN),
        "CreateTransformJob": requests.transform_job(plan, f"{DATA_URI}test/images/", NAME),
        "CreateEndpointConfig": requests.endpoint_config(plan),
        "CreateEndpoint": requests.endpoint(plan),
    }


@pytest.mark.parametrize("operation", list(all_requests(make_plan())))
def test_requests_are_valid_boto3_inputs(operation: str) -> None:
    request = all_requests(make_plan())[operation]
    model = operation_model(operation.split(" ")[0])
    # botocore's client-side checks (required members, types, minimums) ...
    report = ParamValidator().validate(request, model.input_shape)
    assert not report.has_errors(), report.generate_report()
    # ... and the server-side ones (maximum lengths, patterns, enums, ranges)
    validate_input(model, request)


def test_the_validators_do_reject_a_bad_request() -> None:
    # Guard: the checks above can fail
    request = requests.endpoint_config(make_plan()) | {"EndpointConfigName": "has spaces"}
    with pytest.raises(ValidationException, match="endpointConfigName"):
        validate_input(operation_model("CreateEndpointConfig"), request)
    bad = requests.training_job(make_plan(), DATA_URI, CODE_URI)
    bad["StoppingCondition"]["MaxRuntimeInSeconds"] = "3600"
    assert ParamValidator().validate(bad, operation_model("CreateTrainingJob").input_shape).has_errors()


def test_training_job() -> None:
    job = requests.training_job(make_plan(epochs=3, learning_rate=0.1), DATA_URI, CODE_URI)
    assert job["TrainingJobName"] == NAME
    assert job["HyperParameters"] == {
        "epochs": "3",
        "learning_rate": "0.1",
        "batch_size": "64",
        "weight_decay": "0.0005",
        "seed": "42",
        "members": "2",
        "confidence_threshold": "0.93",
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": json.dumps(CODE_URI),
        "sagemaker_region": '"us-east-1"',
        "sagemaker_container_log_level": "20",
    }
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels == {"train": f"{DATA_URI}train/", "test": f"{DATA_URI}test/"}
    assert all(uri.endswith("/") for uri in channels.values())
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("pytorch-training:2.5.1-cpu-py311")
    assert job["OutputDataConfig"] == {"S3OutputPath": "s3://scones-unlimited/models/"}
    assert job["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert {m["Name"] for m in job["AlgorithmSpecification"]["MetricDefinitions"]} == {
        "train:loss",
        "test:accuracy",
    }


def test_default_hyperparameters_are_json_encoded() -> None:
    hyper = requests.training_job(make_plan(), DATA_URI, CODE_URI)["HyperParameters"]
    assert hyper["epochs"] == "120" and hyper["sagemaker_program"] == '"train.py"'
    assert {k: json.loads(v) for k, v in hyper.items() if k in defaults()} == {
        "epochs": 120,
        "learning_rate": 0.05,
        "batch_size": 64,
        "weight_decay": 0.0005,
        "seed": 42,
        "members": 2,
        "confidence_threshold": 0.93,
    }


def test_model_transform_and_endpoint() -> None:
    plan = make_plan(inference_instance_type="ml.c5.large", model_server_workers=3)
    model = requests.model(plan, ARTIFACT)
    assert model["ModelName"] == NAME
    assert model["PrimaryContainer"]["ModelDataUrl"] == ARTIFACT
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_REGION"] == "us-east-1"
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == "3"
    transform = requests.transform_job(plan, f"{DATA_URI}test/images/", "job-1")
    assert transform["TransformJobName"] == f"{NAME}-eval"
    assert transform["ModelName"] == NAME
    assert transform["TransformOutput"]["S3OutputPath"] == "s3://scones-unlimited/models/job-1/evaluation/predictions/"
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"{DATA_URI}test/images/"
    assert transform["TransformResources"] == {"InstanceType": "ml.c5.large", "InstanceCount": 1}
    assert requests.endpoint(plan) == {
        "EndpointName": "scones-vehicle-classifier",
        "EndpointConfigName": NAME,
        "DeploymentConfig": {  # the default rollout: a 20% canary, baked 5 minutes, then 5 more on all traffic
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 300,
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
                },
                "TerminationWaitInSeconds": 300,
                "MaximumExecutionTimeoutInSeconds": 1200,
            },
            "AutoRollbackConfiguration": {
                "Alarms": [
                    {"AlarmName": "scones-vehicle-classifier-5xx-errors"},
                    {"AlarmName": "scones-vehicle-classifier-model-latency"},
                ]
            },
        },
        "Tags": [{"Key": "project", "Value": "scones-unlimited"}],
    }


def test_the_rollout_params_choose_the_traffic_shift_and_the_alarms_name_the_endpoint() -> None:
    linear = requests.endpoint(make_plan(rollout="linear", rollout_percent=30, bake_seconds=10))["DeploymentConfig"]
    routing = linear["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 10,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 30},
    }
    assert linear["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] == 640  # 3 steps + final, + start
    at_once = requests.endpoint(make_plan(rollout="all_at_once", bake_seconds=0))["DeploymentConfig"]
    assert at_once["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "ALL_AT_ONCE",
        "WaitIntervalInSeconds": 0,
    }
    assert at_once["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] == 600  # AWS's minimum
    errors, latency = requests.rollback_alarms(make_plan(), latency_ms=250)
    assert errors["MetricName"] == "Invocation5XXErrors" and errors["Statistic"] == "Sum" and errors["Threshold"] == 1
    assert latency["MetricName"] == "ModelLatency" and latency["Threshold"] == 250_000  # microseconds
    for alarm in (errors, latency):
        assert alarm["Namespace"] == "AWS/SageMaker" and alarm["TreatMissingData"] == "notBreaching"
        assert alarm["Dimensions"] == [
            {"Name": "EndpointName", "Value": "scones-vehicle-classifier"},
            {"Name": "VariantName", "Value": "AllTraffic"},
            {"Name": "EndpointConfigName", "Value": NAME},  # the new fleet's own series: the old one's errors
        ]  # neither trip this rollout nor block an update that replaces a failing champion


def test_endpoint_config_captures_everything() -> None:
    config = requests.endpoint_config(make_plan())
    assert config["EndpointConfigName"] == NAME
    assert config["ProductionVariants"][0]["ModelName"] == f"{NAME}-serving"  # the model from the version
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://scones-unlimited/data_capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }
    assert (
        requests.endpoint_config(make_plan(capture_percentage=20))["DataCaptureConfig"]["InitialSamplingPercentage"]
        == 20
    )


def test_run_name_is_short_deterministic_and_matches_teardown() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5)
    name = run_name("manual__1", when)
    assert name == run_name("manual__1", when)
    assert name != run_name("manual__2", when)
    assert name.startswith("scones-20250102-030405-")
    assert RUN_NAME.match(name)
    assert len(name) <= 63 and len(f"{name}-eval") <= 63
    assert not RUN_NAME.match(f"{name}-eval")  # teardown never mistakes other names for run names
    assert RUN_NAME.match(f"{name}-serving") and len(f"{name}-serving") <= 63  # the served model is the run's


def test_the_registration_replaces_the_providers_csv_and_carries_the_evaluation() -> None:
    plan = make_plan()
    registration = requests.model_package(plan, RESULT, ARTIFACT)
    extras = registration["extras"]
    assert registration["package_group_name"] == "scones-vehicle-classifier"
    assert extras["ClientToken"] == NAME  # a retried registration is the same version
    spec = extras["InferenceSpecification"]
    assert (spec["SupportedContentTypes"], spec["SupportedResponseMIMETypes"]) == (["image/png"], ["application/json"])
    assert spec["Containers"] == [requests.model(plan, ARTIFACT)["PrimaryContainer"]]  # what was evaluated
    assert extras["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json",
        "S3Uri": RESULT.evaluation_uri,
    }
    metadata = CandidateMetadata.from_properties(extras["CustomerMetadataProperties"])
    assert metadata == CandidateMetadata.of(plan, RESULT)


def test_the_served_model_is_made_from_the_version() -> None:
    served = requests.serving_model(make_plan(), PACKAGE_ARN)
    assert served["ModelName"] == f"{NAME}-serving"
    assert served["PrimaryContainer"] == {"ModelPackageName": PACKAGE_ARN}


def test_run_plan_round_trips_through_json() -> None:
    plan = make_plan(classes=["bus", "tractor"])
    again = RunPlan.from_xcom(json.loads(json.dumps(plan.to_xcom())))
    assert again == plan == RunPlan.from_json(plan.to_json())
    assert again.params.classes == ("bus", "tractor")
    assert again.evaluation_output_uri("job") == "s3://scones-unlimited/models/job/evaluation/"


def test_bad_params_never_make_a_plan() -> None:
    from include.scones.params import InvalidParams

    with pytest.raises(InvalidParams, match="epochs: 0 is less than the minimum of 1"):
        make_plan(epochs=0)


def test_a_plan_with_a_renamed_or_mistyped_field_fails_where_it_is_read() -> None:
    from pydantic import ValidationError

    data = make_plan().to_xcom()
    with pytest.raises(ValidationError, match="endpoint_name"):
        RunPlan.from_xcom({("endpoint" if k == "endpoint_name" else k): v for k, v in data.items()})
    with pytest.raises(ValidationError, match="epochs"):
        RunPlan.from_xcom(data | {"params": data["params"] | {"epochs": "many"}})


def test_float_capture_percentage_never_reaches_create_endpoint_config() -> None:
    plan = make_plan(capture_percentage=50.0)
    try:
        config = requests.endpoint_config(plan)
    except ValueError:
        return  # rejected up front: fine
    report = ParamValidator().validate(config, operation_model("CreateEndpointConfig").input_shape)
    assert not report.has_errors(), report.generate_report()
