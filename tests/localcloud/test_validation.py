"""Unit tests for the botocore-model validator: AWS's server-side constraints and message shape."""

from __future__ import annotations

import pytest

from localcloud.sagemaker import validation
from localcloud.sagemaker.exceptions import SerializationException, UnknownOperationException, ValidationException

CREATE_MODEL = validation.operation_model("CreateModel")


def test_path_like_name_fails_the_pattern_with_aws_message_shape() -> None:
    with pytest.raises(ValidationException) as raised:
        validation.validate_input(CREATE_MODEL, {"ModelName": "../x", "PrimaryContainer": {"Image": "i"}})
    assert raised.value.message == (
        "1 validation error detected: Value '../x' at 'modelName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?"
    )


def test_pattern_must_match_the_whole_value_not_a_prefix() -> None:
    # re.match would accept the leading "a"; AWS (Java's matches()) does not.
    with pytest.raises(ValidationException, match="modelName"):
        validation.validate_input(CREATE_MODEL, {"ModelName": "a/../x", "PrimaryContainer": {"Image": "i"}})


def test_over_long_name_and_bad_enum_are_reported_together() -> None:
    operation = validation.operation_model("CreateEndpointConfig")
    params = {
        "EndpointConfigName": "c" * 64,
        "ProductionVariants": [{"VariantName": "v", "ModelName": "m", "InstanceType": "ml.not.real"}],
    }
    with pytest.raises(ValidationException) as raised:
        validation.validate_input(operation, params)
    message = raised.value.message
    # length and pattern both fail for the name, as on AWS
    assert message.startswith("3 validation errors detected: ")
    assert (
        "at 'endpointConfigName' failed to satisfy constraint: Member must have length less than or equal to 63"
        in message
    )
    assert (
        "at 'productionVariants.1.member.instanceType' failed to satisfy constraint: Member must satisfy enum value set"
        in message
    )


def test_missing_required_member_is_null() -> None:
    with pytest.raises(
        ValidationException,
        match="Value 'null' at 'endpointName' failed to satisfy constraint: Member must not be null",
    ):
        validation.validate_input(validation.operation_model("DescribeEndpoint"), {})


def test_wrong_type_is_a_serialization_error() -> None:
    with pytest.raises(SerializationException):
        validation.validate_input(validation.operation_model("DescribeEndpoint"), {"EndpointName": 5})


def test_unknown_member_is_refused() -> None:
    with pytest.raises(SerializationException, match="Unknown member 'Bogus'"):
        validation.validate_input(validation.operation_model("DescribeEndpoint"), {"EndpointName": "e", "Bogus": 1})


def test_unknown_operation() -> None:
    with pytest.raises(UnknownOperationException):
        validation.operation_model("MakeCoffee")


def test_capture_destination_pattern_is_not_enforced_literally() -> None:
    operation = validation.operation_model("CreateEndpointConfig")
    params = {
        "EndpointConfigName": "c",
        "ProductionVariants": [{"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large"}],
        "DataCaptureConfig": {
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://scones-bucket/data_capture",
            "CaptureOptions": [{"CaptureMode": "Input"}],
        },
    }
    validation.validate_input(operation, params)


def test_output_errors_flag_a_missing_required_member() -> None:
    errors = validation.output_errors(validation.operation_model("DescribeModel"), {"ModelName": "m"})
    assert any("modelArn" in e for e in errors)
