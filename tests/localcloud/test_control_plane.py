"""The local SageMaker's control plane through plain boto3: models, endpoint configs, tags, paging,
AWS error codes and messages, and state that survives a restart. Bad names and enums: tests/reliability/."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.conftest import PYTORCH_INFERENCE_IMAGE, ROLE_ARN
from tests.localcloud.helpers import assert_valid_output, error_of, signed_headers

pytestmark = pytest.mark.e2e


def create_model(sagemaker: Any, name: str) -> dict[str, Any]:
    return sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": PYTORCH_INFERENCE_IMAGE, "ModelDataUrl": "s3://scones-test/model.tar.gz"},
        ExecutionRoleArn=ROLE_ARN,
    )


def test_model_round_trip_and_lower_cased_arn(sagemaker: Any) -> None:
    created = create_model(sagemaker, "Scones-Model-A")
    assert created["ModelArn"] == "arn:aws:sagemaker:us-east-1:000000000000:model/scones-model-a"
    assert_valid_output("CreateModel", created)
    described = sagemaker.describe_model(ModelName="Scones-Model-A")
    assert described["PrimaryContainer"]["Image"] == PYTORCH_INFERENCE_IMAGE
    assert_valid_output("DescribeModel", described)
    sagemaker.delete_model(ModelName="Scones-Model-A")
    error = error_of(sagemaker.describe_model, ModelName="Scones-Model-A")
    assert error == {
        "Code": "ValidationException",
        "Message": 'Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/scones-model-a".',
    }


def test_duplicate_model_and_config_are_validation_exceptions(sagemaker: Any) -> None:
    create_model(sagemaker, "dup-model")
    error = error_of(create_model, sagemaker=sagemaker, name="dup-model")
    assert error["Code"] == "ValidationException"
    assert (
        error["Message"]
        == 'Cannot create already existing model "arn:aws:sagemaker:us-east-1:000000000000:model/dup-model".'
    )

    variants = [
        {
            "VariantName": "AllTraffic",
            "ModelName": "dup-model",
            "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large",
        }
    ]
    sagemaker.create_endpoint_config(EndpointConfigName="dup-config", ProductionVariants=variants)
    error = error_of(sagemaker.create_endpoint_config, EndpointConfigName="dup-config", ProductionVariants=variants)
    assert error["Message"].startswith('Cannot create already existing endpoint configuration "arn:aws:sagemaker:')


def test_endpoint_config_needs_an_existing_model(sagemaker: Any) -> None:
    variants = [
        {"VariantName": "AllTraffic", "ModelName": "ghost", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    ]
    error = error_of(sagemaker.create_endpoint_config, EndpointConfigName="orphan-config", ProductionVariants=variants)
    assert error == {
        "Code": "ValidationException",
        "Message": 'Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/ghost".',
    }


def test_endpoint_config_round_trip_keeps_data_capture(sagemaker: Any) -> None:
    create_model(sagemaker, "capture-model")
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://scones-test/data_capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }
    variants = [
        {
            "VariantName": "AllTraffic",
            "ModelName": "capture-model",
            "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large",
        }
    ]
    created = sagemaker.create_endpoint_config(
        EndpointConfigName="capture-config", ProductionVariants=variants, DataCaptureConfig=capture
    )
    assert_valid_output("CreateEndpointConfig", created)
    described = sagemaker.describe_endpoint_config(EndpointConfigName="capture-config")
    assert described["DataCaptureConfig"] == capture
    assert described["ProductionVariants"][0]["InitialVariantWeight"] == 1.0
    assert_valid_output("DescribeEndpointConfig", described)
    error = error_of(sagemaker.describe_endpoint_config, EndpointConfigName="nope-config")
    assert error == {"Code": "ValidationException", "Message": 'Could not find endpoint configuration "nope-config".'}


def test_list_paging_omits_next_token_on_the_last_page(sagemaker: Any) -> None:
    for index in range(3):
        create_model(sagemaker, f"paged-model-{index}")
    first = sagemaker.list_models(NameContains="paged-model", MaxResults=2, SortBy="Name", SortOrder="Ascending")
    assert [m["ModelName"] for m in first["Models"]] == ["paged-model-0", "paged-model-1"]
    assert_valid_output("ListModels", first)
    second = sagemaker.list_models(
        NameContains="paged-model", MaxResults=2, SortBy="Name", SortOrder="Ascending", NextToken=first["NextToken"]
    )
    assert [m["ModelName"] for m in second["Models"]] == ["paged-model-2"]
    assert "NextToken" not in second


def test_tags_round_trip(sagemaker: Any) -> None:
    arn = create_model(sagemaker, "tagged-model")["ModelArn"]
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "accuracy", "Value": "0.95"}, {"Key": "run", "Value": "1"}])
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "accuracy", "Value": "0.97"}])
    sagemaker.delete_tags(ResourceArn=arn, TagKeys=["run"])
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "accuracy", "Value": "0.97"}]


def raw_post(url: str, body: bytes, target: str) -> tuple[int, dict[str, Any]]:
    headers = signed_headers(url, body, {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_wire_errors_use_the_json_protocol_shape(local_cloud: Any) -> None:
    url = local_cloud.cfg.sagemaker_url + "/"
    assert raw_post(url, b"{not json", "SageMaker.DescribeModel") == (
        400,
        {"__type": "SerializationException", "message": "The request body is not valid JSON."},
    )
    status, body = raw_post(url, b"{}", "SageMaker.MakeCoffee")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, body = raw_post(url, b"{}", "SageMaker.DescribeModel")
    assert (status, body["__type"]) == (400, "ValidationException")


def test_state_survives_a_restart(local_cloud: Any, sagemaker: Any) -> None:
    create_model(sagemaker, "durable-model")
    local_cloud.restart_sagemaker()
    assert sagemaker.describe_model(ModelName="durable-model")["ModelName"] == "durable-model"
