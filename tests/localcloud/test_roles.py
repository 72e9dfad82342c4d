"""The execution roles `make up` creates (localcloud/roles.py): the project's, from include/iam/, and the SageMaker
SDK's own, made by the SDK; a second `up` leaves one of each; the SDK v3's role check finds what it looks for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localcloud import launcher, roles
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

# What the SDK v3 simulates before it trains (sagemaker.core.helper.iam_role_resolver._get_smoke_test_actions).
V3_TRAINING_CHECK = ["ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "ec2:CreateNetworkInterface"]


@pytest.fixture(scope="module")
def iam(local_cloud: LocalCloud) -> Any:
    return local_cloud.client("iam")


def role_names(iam: Any) -> list[str]:
    return [r["RoleName"] for page in iam.get_paginator("list_roles").paginate() for r in page["Roles"]]


def test_project_roles_carry_the_documents_from_include_iam(iam: Any) -> None:
    for role in roles.project_roles():
        described = iam.get_role(RoleName=role.name)["Role"]
        assert described["AssumeRolePolicyDocument"] == json.loads(role.trust_policy())
        inline = iam.get_role_policy(RoleName=role.name, PolicyName=f"{role.name}-policy")["PolicyDocument"]
        document = json.loads(role.permission_policy(roles.project_bucket()))
        assert inline == document
        text = json.dumps(document)
        assert "SCONES_BUCKET" not in text and "ACCOUNT" not in text and "REGION" not in text


def test_sdk_roles_trust_sagemaker_and_pass_the_v3_role_check(iam: Any) -> None:
    for name in ("SageMaker-AutoRole-Training", "SageMaker-AutoRole-Serving"):
        trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        assert {s["Principal"]["Service"] for s in trust["Statement"]} == {"sagemaker.amazonaws.com"}
    training = iam.get_role(RoleName="SageMaker-AutoRole-Training")["Role"]["Arn"]
    results = iam.simulate_principal_policy(PolicySourceArn=training, ActionNames=V3_TRAINING_CHECK)
    assert {r["EvalActionName"]: r["EvalDecision"] for r in results["EvaluationResults"]} == dict.fromkeys(
        V3_TRAINING_CHECK, "allowed"
    )
    staging = iam.simulate_principal_policy(
        PolicySourceArn=training,
        ActionNames=["s3:PutObject"],
        ResourceArns=[f"arn:aws:s3:::{roles.SDK_DEFAULT_BUCKET}/*"],
    )
    assert staging["EvaluationResults"][0]["EvalDecision"] == "allowed"  # v3 stages code in the default bucket


def test_a_second_up_leaves_one_of_each_role(local_cloud: LocalCloud, iam: Any) -> None:
    before = sorted(role_names(iam))
    report = launcher.up(local_cloud.cfg)
    assert any(line.startswith("roles ") and "SageMaker-AutoRole-Training" in line for line in report)
    assert sorted(role_names(iam)) == before
    expected = {role.name for role in roles.project_roles()} | {
        "SageMaker-AutoRole-Training",
        "SageMaker-AutoRole-Serving",
    }
    assert expected <= set(before)
