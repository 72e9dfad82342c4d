"""MiniStack answering as AWS does, through the real local cloud: the patches that close a gap between the two
(localcloud/ministack/patches). s3-kms-default-key.patch: an `aws:kms` write that names no key uses the account's
AWS managed key `aws/s3` (as the SageMaker SDK's source-tarball upload needs). iam-simulate-unknown-principal.patch:
SimulatePrincipalPolicy on a role or user that does not exist is 404 NoSuchEntity, not an implicitDeny."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.localcloud.helpers import error_of, unique

pytestmark = pytest.mark.e2e


# --- S3: SSE-KMS with the AWS managed key ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = unique("scones-kms")
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def account(local_cloud: Any) -> str:
    return str(local_cloud.client("sts").get_caller_identity()["Account"])


@pytest.fixture(scope="module")
def aws_managed_key_arn(account: str, s3: Any) -> re.Pattern[str]:
    """What SSEKMSKeyId must look like: a full key ARN in this account and region (not an alias, not empty)."""
    uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    return re.compile(rf"arn:aws:kms:{re.escape(s3.meta.region_name)}:{account}:key/{uuid}")


def test_put_object_with_aws_kms_and_no_key_uses_the_aws_managed_key(
    s3: Any, bucket: str, aws_managed_key_arn: re.Pattern[str]
) -> None:
    first = s3.put_object(Bucket=bucket, Key="a.tar.gz", Body=b"source", ServerSideEncryption="aws:kms")
    second = s3.put_object(Bucket=bucket, Key="b.tar.gz", Body=b"source", ServerSideEncryption="aws:kms")

    assert first["ServerSideEncryption"] == "aws:kms"
    assert aws_managed_key_arn.fullmatch(first["SSEKMSKeyId"]), first["SSEKMSKeyId"]
    assert second["SSEKMSKeyId"] == first["SSEKMSKeyId"]  # one aws/s3 key per account and region
    head = s3.head_object(Bucket=bucket, Key="a.tar.gz")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", first["SSEKMSKeyId"])
    got = s3.get_object(Bucket=bucket, Key="a.tar.gz")
    assert (got["SSEKMSKeyId"], got["Body"].read()) == (first["SSEKMSKeyId"], b"source")


def test_multipart_and_copy_with_aws_kms_and_no_key_use_the_same_key(
    s3: Any, bucket: str, aws_managed_key_arn: re.Pattern[str]
) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big.bin", ServerSideEncryption="aws:kms")
    s3.abort_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"])
    s3.put_object(Bucket=bucket, Key="plain.txt", Body=b"x")
    copied = s3.copy_object(
        Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "plain.txt"}, ServerSideEncryption="aws:kms"
    )

    assert upload["ServerSideEncryption"] == "aws:kms"
    assert aws_managed_key_arn.fullmatch(upload["SSEKMSKeyId"]), upload["SSEKMSKeyId"]
    assert (copied["ServerSideEncryption"], copied["SSEKMSKeyId"]) == ("aws:kms", upload["SSEKMSKeyId"])


def test_an_explicit_kms_key_id_is_still_stored_and_echoed(s3: Any, bucket: str) -> None:
    key_id = "arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555"
    put = s3.put_object(Bucket=bucket, Key="k.txt", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)

    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", key_id)
    assert s3.head_object(Bucket=bucket, Key="k.txt")["SSEKMSKeyId"] == key_id


def test_upload_file_with_aws_kms_as_the_sagemaker_sdk_sends_it(
    s3: Any, bucket: str, aws_managed_key_arn: re.Pattern[str], tmp_path: Path
) -> None:
    """sagemaker.Session.upload_data / the estimator's source tarball: upload_file with ServerSideEncryption only."""
    tarball = tmp_path / "sourcedir.tar.gz"
    tarball.write_bytes(b"not really a tarball")

    s3.upload_file(str(tarball), bucket, "code/sourcedir.tar.gz", ExtraArgs={"ServerSideEncryption": "aws:kms"})

    head = s3.head_object(Bucket=bucket, Key="code/sourcedir.tar.gz")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert aws_managed_key_arn.fullmatch(head["SSEKMSKeyId"]), head["SSEKMSKeyId"]


# --- IAM: SimulatePrincipalPolicy on a principal that does not exist ------------------------------------------
SAGEMAKER_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
PUT_OBJECTS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::scones-*/*"}],
}


@pytest.fixture(scope="module")
def iam(local_cloud: Any) -> Any:
    return local_cloud.client("iam")


def decisions(iam: Any, principal_arn: str, actions: list[str]) -> dict[str, str]:
    results = iam.simulate_principal_policy(
        PolicySourceArn=principal_arn, ActionNames=actions, ResourceArns=["arn:aws:s3:::scones-bucket/model.tar.gz"]
    )["EvaluationResults"]
    return {result["EvalActionName"]: result["EvalDecision"] for result in results}


@pytest.mark.parametrize("path", ["/", "/service-role/"])
def test_simulate_principal_policy_on_an_existing_role_evaluates_its_policies(iam: Any, path: str) -> None:
    name = unique("scones-sim")
    arn = iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="put-objects", PolicyDocument=json.dumps(PUT_OBJECTS))

    assert arn.endswith(f":role{path}{name}")  # the ARN's resource carries the path; the name is its last segment
    assert decisions(iam, arn, ["s3:PutObject", "s3:DeleteObject"]) == {
        "s3:PutObject": "allowed",
        "s3:DeleteObject": "implicitDeny",
    }


@pytest.mark.parametrize("resource", ["role/scones-no-such-role", "role/service-role/scones-no-such-role"])
def test_simulate_principal_policy_on_an_unknown_role_is_no_such_entity(iam: Any, account: str, resource: str) -> None:
    error = error_of(
        iam.simulate_principal_policy,
        PolicySourceArn=f"arn:aws:iam::{account}:{resource}",
        ActionNames=["s3:PutObject"],
    )

    assert (error["Code"], error["Message"]) == (
        "NoSuchEntity",
        "The role with name scones-no-such-role cannot be found.",
    )


def test_simulate_principal_policy_on_an_unknown_user_is_no_such_entity(iam: Any, account: str) -> None:
    error = error_of(
        iam.simulate_principal_policy,
        PolicySourceArn=f"arn:aws:iam::{account}:user/scones-no-such-user",
        ActionNames=["s3:PutObject"],
    )

    assert (error["Code"], error["Message"]) == (
        "NoSuchEntity",
        "The user with name scones-no-such-user cannot be found.",
    )
