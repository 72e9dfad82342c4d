"""The Model Registry through boto3 (aws-contracts-2.md section 1): groups, numbered versions with metrics and an
approval status, the approval transitions, AWS's error codes, and a model (and endpoint) made from a version.
Every successful response is checked against botocore's output shape."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import PYTORCH_INFERENCE_IMAGE, ROLE_ARN
from tests.localcloud.helpers import assert_valid_output, error_of, pure_python_model_archive, unique

pytestmark = pytest.mark.e2e

METRICS = {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/evaluation.json"}}}


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = unique("registry")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="model/model.tar.gz", Body=pure_python_model_archive())
    return name


def new_group(sagemaker: Any) -> str:
    name = unique("Scones-Group")  # mixed case: ARNs lower-case it, lookups must not care
    created = sagemaker.create_model_package_group(ModelPackageGroupName=name, ModelPackageGroupDescription="g")
    assert_valid_output("CreateModelPackageGroup", created)
    return name


def new_version(sagemaker: Any, group: str, bucket: str = "b", **extra: Any) -> str:
    spec = {
        "Containers": [
            {
                "Image": PYTORCH_INFERENCE_IMAGE,
                "ModelDataUrl": f"s3://{bucket}/model/model.tar.gz",
                "Environment": {"FROM_PACKAGE": "1"},
            }
        ],
        "SupportedContentTypes": ["image/png"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    created = sagemaker.create_model_package(
        ModelPackageGroupName=group, InferenceSpecification=spec, ModelMetrics=METRICS, **extra
    )
    assert_valid_output("CreateModelPackage", created)
    return str(created["ModelPackageArn"])


def test_a_group_is_created_once_and_described_by_name_or_arn(sagemaker: Any) -> None:
    group = new_group(sagemaker)
    described = sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    assert_valid_output("DescribeModelPackageGroup", described)
    assert (described["ModelPackageGroupName"], described["ModelPackageGroupStatus"]) == (group, "Completed")
    by_arn = sagemaker.describe_model_package_group(ModelPackageGroupName=described["ModelPackageGroupArn"])
    assert by_arn["ModelPackageGroupName"] == group
    duplicate = error_of(sagemaker.create_model_package_group, ModelPackageGroupName=group)
    assert duplicate["Code"] == "ValidationException"
    assert duplicate["Message"].startswith("Model Package Group already exists")  # what Airflow's operator matches
    listed = sagemaker.list_model_package_groups(NameContains=group)
    assert_valid_output("ListModelPackageGroups", listed)
    assert [g["ModelPackageGroupName"] for g in listed["ModelPackageGroupSummaryList"]] == [group]
    missing = error_of(sagemaker.describe_model_package_group, ModelPackageGroupName=unique("nope"))
    assert missing["Code"] == "ValidationException" and "does not exist" in missing["Message"]


def test_versions_are_numbered_per_group_and_carry_their_metrics(sagemaker: Any) -> None:
    group = new_group(sagemaker)
    first = new_version(sagemaker, group, CustomerMetadataProperties={"accuracy": "0.94"})
    second = new_version(sagemaker, group, ModelApprovalStatus="Approved")
    assert first.endswith(f"model-package/{group.lower()}/1") and second.endswith(f"/{group.lower()}/2")
    described = sagemaker.describe_model_package(ModelPackageName=first)
    assert_valid_output("DescribeModelPackage", described)
    assert described["ModelPackageVersion"] == 1 and described["ModelPackageGroupName"] == group
    assert described["ModelApprovalStatus"] == "PendingManualApproval"  # the default for a version
    assert described["ModelMetrics"] == METRICS and described["CustomerMetadataProperties"] == {"accuracy": "0.94"}
    assert described["ModelPackageStatus"] == "Completed"
    assert described["InferenceSpecification"]["SupportedContentTypes"] == ["image/png"]

    listed = sagemaker.list_model_package_groups(NameContains=group)  # the group itself is unchanged
    assert len(listed["ModelPackageGroupSummaryList"]) == 1
    versions = sagemaker.list_model_packages(ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Ascending")
    assert_valid_output("ListModelPackages", versions)
    summaries = versions["ModelPackageSummaryList"]
    assert [s["ModelPackageVersion"] for s in summaries] == [1, 2]
    assert all("ModelPackageName" not in s for s in summaries)  # as AWS answers for versions
    approved = sagemaker.list_model_packages(ModelPackageGroupName=group, ModelApprovalStatus="Approved")
    assert [s["ModelPackageArn"] for s in approved["ModelPackageSummaryList"]] == [second]
    paged = sagemaker.list_model_packages(ModelPackageGroupName=group, MaxResults=1)
    assert len(paged["ModelPackageSummaryList"]) == 1 and paged["NextToken"]


def test_approval_moves_as_the_developer_guide_allows(sagemaker: Any) -> None:
    version = new_version(sagemaker, new_group(sagemaker))
    updated = sagemaker.update_model_package(
        ModelPackageArn=version, ModelApprovalStatus="Approved", ApprovalDescription="approved by ana: fine"
    )
    assert_valid_output("UpdateModelPackage", updated)
    described = sagemaker.describe_model_package(ModelPackageName=version)
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == (
        "Approved",
        "approved by ana: fine",
    )
    assert described["LastModifiedTime"] >= described["CreationTime"]
    sagemaker.update_model_package(ModelPackageArn=version, ModelApprovalStatus="Rejected")
    back = error_of(
        sagemaker.update_model_package, ModelPackageArn=version, ModelApprovalStatus="PendingManualApproval"
    )
    assert back == {
        "Code": "ValidationException",
        "Message": "Cannot update ModelApprovalStatus from Rejected to PendingManualApproval.",
    }
    bad = error_of(sagemaker.update_model_package, ModelPackageArn=version, ModelApprovalStatus="Maybe")
    assert bad["Code"] == "ValidationException" and "modelApprovalStatus" in bad["Message"]
    assert error_of(sagemaker.update_model_package, ModelPackageArn=f"{version}0")["Code"] == "ValidationException"
    not_arn = error_of(sagemaker.update_model_package, ModelPackageArn="just-a-name", ModelApprovalStatus="Approved")
    assert not_arn["Code"] == "ValidationException"


def test_metadata_properties_are_merged_removed_and_limited(sagemaker: Any) -> None:
    version = new_version(sagemaker, new_group(sagemaker), CustomerMetadataProperties={"a": "1", "b": "2"})
    sagemaker.update_model_package(
        ModelPackageArn=version, CustomerMetadataProperties={"c": "3"}, CustomerMetadataPropertiesToRemove=["a"]
    )
    assert sagemaker.describe_model_package(ModelPackageName=version)["CustomerMetadataProperties"] == {
        "b": "2",
        "c": "3",
    }
    too_many = {f"k{i}": "v" for i in range(51)}
    refused = error_of(sagemaker.update_model_package, ModelPackageArn=version, CustomerMetadataProperties=too_many)
    assert refused["Code"] == "ValidationException"


def test_which_name_a_package_gets_is_never_ambiguous(sagemaker: Any) -> None:
    group = new_group(sagemaker)
    spec = {"Containers": [{"Image": PYTORCH_INFERENCE_IMAGE}]}
    both = error_of(
        sagemaker.create_model_package, ModelPackageGroupName=group, ModelPackageName="x", InferenceSpecification=spec
    )
    assert both["Message"] == (
        "Both ModelPackageName and ModelPackageGroupName are provided in the input. Cannot determine which one to use."
    )
    assert error_of(sagemaker.create_model_package, InferenceSpecification=spec)["Message"] == "Missing ARN."
    unknown = error_of(
        sagemaker.create_model_package, ModelPackageGroupName=unique("nope"), InferenceSpecification=spec
    )
    assert unknown["Code"] == "ValidationException" and "does not exist" in unknown["Message"]


def test_deleted_versions_keep_their_numbers_and_a_group_with_versions_stays(sagemaker: Any) -> None:
    group = new_group(sagemaker)
    first, second = new_version(sagemaker, group), new_version(sagemaker, group)
    conflict = error_of(sagemaker.delete_model_package_group, ModelPackageGroupName=group)
    assert conflict["Code"] == "ConflictException"
    sagemaker.delete_model_package(ModelPackageName=second)
    assert error_of(sagemaker.describe_model_package, ModelPackageName=second)["Code"] == "ValidationException"
    assert new_version(sagemaker, group).endswith("/3")  # a number is never reused
    for version in sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]:
        sagemaker.delete_model_package(ModelPackageName=version["ModelPackageArn"])
    assert first not in json.dumps(sagemaker.list_model_packages(ModelPackageGroupName=group))
    sagemaker.delete_model_package_group(ModelPackageGroupName=group)
    assert (
        error_of(sagemaker.describe_model_package_group, ModelPackageGroupName=group)["Code"] == "ValidationException"
    )


def serve(sagemaker: Any, name: str) -> dict[str, Any]:
    """An endpoint (and its config) named `name` serving the model `name`, once InService; its description."""
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deadline = time.monotonic() + 60
    while (described := sagemaker.describe_endpoint(EndpointName=name))["EndpointStatus"] == "Creating":
        assert time.monotonic() < deadline, "the endpoint did not leave Creating"
        time.sleep(0.5)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return dict(described)


def test_a_client_token_makes_a_retried_registration_one_version(sagemaker: Any) -> None:
    group = new_group(sagemaker)
    first = new_version(sagemaker, group, ClientToken="run-1")
    assert new_version(sagemaker, group, ClientToken="run-1") == first  # the retry: nothing new
    assert new_version(sagemaker, group, ClientToken="run-2").endswith("/2")
    listed = sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert len(listed) == 2
    other = new_group(sagemaker)  # a token is scoped to its group
    assert new_version(sagemaker, other, ClientToken="run-1").endswith(f"{other.lower()}/1")
    sagemaker.delete_model_package(ModelPackageName=first)
    assert new_version(sagemaker, group, ClientToken="run-1").endswith("/3")  # its version is gone: a new one


def test_a_model_keeps_its_versions_container_after_the_version_is_deleted(
    sagemaker: Any, runtime: Any, bucket: str
) -> None:
    version = new_version(sagemaker, new_group(sagemaker), bucket=bucket, ModelApprovalStatus="Approved")
    name = unique("pruned-model")
    sagemaker.create_model(ModelName=name, PrimaryContainer={"ModelPackageName": version}, ExecutionRoleArn=ROLE_ARN)
    sagemaker.delete_model_package(ModelPackageName=version)  # pruned from the registry
    described = sagemaker.describe_model(ModelName=name)
    assert_valid_output("DescribeModel", described)
    assert described["PrimaryContainer"] == {"ModelPackageName": version}  # no private field leaks
    serve(sagemaker, name)
    reply = runtime.invoke_endpoint(EndpointName=name, ContentType="application/json", Body=b"{}")
    assert json.loads(reply["Body"].read())["scale"] == 2
    sagemaker.delete_endpoint(EndpointName=name)


def test_an_endpoint_serves_a_model_made_from_a_version(sagemaker: Any, runtime: Any, bucket: str) -> None:
    version = new_version(sagemaker, new_group(sagemaker), bucket=bucket, ModelApprovalStatus="Approved")
    missing = error_of(
        sagemaker.create_model,
        ModelName=unique("pkg-model"),
        PrimaryContainer={"ModelPackageName": f"{version}9"},
        ExecutionRoleArn=ROLE_ARN,
    )
    assert missing["Code"] == "ValidationException" and "does not exist" in missing["Message"]
    name = unique("pkg-model")
    sagemaker.create_model(ModelName=name, PrimaryContainer={"ModelPackageName": version}, ExecutionRoleArn=ROLE_ARN)
    assert sagemaker.describe_model(ModelName=name)["PrimaryContainer"] == {"ModelPackageName": version}
    described = serve(sagemaker, name)
    assert described["ProductionVariants"][0]["DeployedImages"][0]["SpecifiedImage"] == PYTORCH_INFERENCE_IMAGE
    reply = runtime.invoke_endpoint(EndpointName=name, ContentType="application/json", Body=b"{}")
    assert json.loads(reply["Body"].read())["scale"] == 2  # the version's model data, served
    sagemaker.delete_endpoint(EndpointName=name)


def test_the_providers_register_operator_registers_versions(local_cloud: Any, sagemaker: Any) -> None:
    """Airflow's SageMakerRegisterModelVersionOperator, unchanged: it creates the group once (swallowing "already
    exists" by its message) and a version per call; `extras` replaces its hard-coded text/csv content types."""
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerRegisterModelVersionOperator

    group = unique("provider-group")
    extras = {
        "InferenceSpecification": {
            "Containers": [{"Image": PYTORCH_INFERENCE_IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"}],
            "SupportedContentTypes": ["image/png"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "ModelMetrics": METRICS,
    }
    arns = [
        SageMakerRegisterModelVersionOperator(
            task_id=f"register_{i}",
            image_uri=PYTORCH_INFERENCE_IMAGE,
            model_url="s3://b/model.tar.gz",
            package_group_name=group,
            package_desc="a candidate",
            extras=extras,
        ).execute(context={})  # type: ignore[arg-type]
        for i in range(2)
    ]
    assert [arn.rsplit("/", 1)[1] for arn in arns] == ["1", "2"]
    described = sagemaker.describe_model_package(ModelPackageName=arns[1])
    assert described["InferenceSpecification"]["SupportedContentTypes"] == ["image/png"]
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
