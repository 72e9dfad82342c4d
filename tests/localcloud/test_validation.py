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


def test_long_values_are_shortened_where_messages_echo_them() -> None:
    name = "a/" * 50_000
    with pytest.raises(ValidationException) as raised:
        validation.validate_input(CREATE_MODEL, {"ModelName": name, "PrimaryContainer": {"Image": "i"}})
    shown = name[: validation.MAX_ECHOED_CHARS] + "..."
    assert raised.value.message.startswith(f"2 validation errors detected: Value '{shown}' at 'modelName' failed")
    assert len(raised.value.message) < 1000
    with pytest.raises(SerializationException) as unknown:
        validation.validate_input(validation.operation_model("DescribeEndpoint"), {"EndpointName": "e", "x" * 10**6: 1})
    assert unknown.value.message == f"Unknown member '{'x' * validation.MAX_ECHOED_CHARS}...' at 'input'"


def test_every_error_is_counted_but_only_the_first_are_listed() -> None:
    operation = validation.operation_model("AddTags")
    tags: list[dict[str, str]] = [{}] * 100_000  # each misses Key and Value, and the list is over its 50
    with pytest.raises(ValidationException) as raised:
        validation.validate_input(
            operation, {"ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:model/m", "Tags": tags}
        )
    message = raised.value.message
    assert message.startswith("200001 validation errors detected: Value '[")
    assert message.endswith(f"; and {200_001 - validation.MAX_LISTED_ERRORS} more")
    assert message.count("failed to satisfy constraint") == validation.MAX_LISTED_ERRORS
    assert len(message) < 5000


@pytest.mark.parametrize("number", [1.5, 1.0, float("nan"), float("inf")])
def test_a_float_in_an_integer_field_is_a_serialization_error(number: float) -> None:
    with pytest.raises(
        SerializationException, match="^Expected an integer at 'stoppingCondition.maxRuntimeInSeconds'$"
    ):
        validation.validation_errors(
            validation.operation_model("CreateTrainingJob").input_shape,
            {"StoppingCondition": {"MaxRuntimeInSeconds": number}},
        )


def test_deep_nesting_is_refused_without_recursing() -> None:
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    params = {"ModelName": "m", "PrimaryContainer": {"Image": "i", "Environment": {"K": deep}}}
    with pytest.raises(SerializationException, match="nested more than 100 levels deep"):
        validation.validate_input(CREATE_MODEL, params)
    assert not validation.nesting_depth_exceeded({"a": [[{"b": 1}]]}, limit=4)
    assert validation.nesting_depth_exceeded({"a": [[{"b": [1]}]]}, limit=4)


RUNTIME = validation.service_model("sagemaker-runtime").operation_model("InvokeEndpoint").input_shape


@pytest.mark.parametrize(
    ("member", "value", "fails"),
    [
        ("InferenceId", "inference-1", None),
        ("InferenceId", "i" * 65, "length less than or equal to 64"),
        ("InferenceId", " leading-space", "regular expression pattern"),
        ("InferenceId", "tab\there", "regular expression pattern"),
        ("CustomAttributes", "a=1; b=2", None),
        ("CustomAttributes", "a" * 1025, "length less than or equal to 1024"),
        ("CustomAttributes", "caf\u00e9", "regular expression pattern"),
    ],
)
def test_runtime_header_patterns_from_the_model_are_enforced(member: str, value: str, fails: str | None) -> None:
    # \p{ASCII}, \p{Print} and \z are Java; the validator translates them instead of skipping the pattern.
    errors = validation.validation_errors(RUNTIME.members[member], value, member[0].lower() + member[1:])
    assert (fails is None) == (errors == []), errors
    if fails:
        assert fails in errors[0]


@pytest.mark.parametrize(
    ("destination", "valid"),
    [
        ("s3://scones-bucket/data_capture", True),
        ("s3://b", True),
        ("file:///tmp/capture", False),
        ("s3://", False),
        ("/tmp/capture", False),
    ],
)
def test_capture_destination_must_name_a_bucket(destination: str, valid: bool) -> None:
    shape = validation.service_model().shape_for("DataCaptureConfig").members["DestinationS3Uri"]
    errors = validation.validation_errors(shape, destination, "dataCaptureConfig.destinationS3Uri")
    assert (errors == []) is valid, errors
