"""The execution roles `make up` creates in the local IAM, as an AWS account has them once set up as the README says.

- The project's roles, from `include/iam/` (the same trust and permission policies the README asks AWS users to
  create, with SCONES_BUCKET, REGION and ACCOUNT filled in for the local cloud): `scones-sagemaker-execution`,
  `scones-lambda-execution` and `scones-states-execution`.
- The SageMaker Python SDK's own execution roles, `SageMaker-AutoRole-Training` and `SageMaker-AutoRole-Serving`,
  made by the SDK itself (`IamRoleResolver().create_execution_role`, what the SDK v3 tells a fresh account to
  run), so that v3's role check (`iam:GetRole`, `iam:SimulatePrincipalPolicy`) passes as it does on AWS. Their S3
  permissions are scoped to the SDK's default bucket `sagemaker-<region>-<account>` and the project's bucket.

Idempotent: a project role that exists has its trust and permission policies put again (the same documents),
nothing else; an SDK role that exists is left as the SDK made it. The SDK waits 10 s for IAM propagation after
creating a role (as AWS needs), so a fresh cloud's first `up` creates the two in parallel.

The launcher runs this module (`python -m localcloud.roles`) once MiniStack is healthy, in a process whose
environment is the env file's (`launcher.environment`): every client, the SDK's included, goes to the local cloud
and signs with the install's keys, whatever the shell of `make up` holds."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from localcloud.config import ACCOUNT_ID, PROJECT_ROOT, REGION

IAM_DIR = PROJECT_ROOT / "include" / "iam"
SDK_ROLE_TYPES = ("training", "serving")
SDK_DEFAULT_BUCKET = f"sagemaker-{REGION}-{ACCOUNT_ID}"


@dataclass(frozen=True)
class ProjectRole:
    name: str
    documents: str  # include/iam/<documents>-trust-policy.json and <documents>-execution-policy.json

    def trust_policy(self) -> str:
        return (IAM_DIR / f"{self.documents}-trust-policy.json").read_text()

    def permission_policy(self, bucket: str) -> str:
        text = (IAM_DIR / f"{self.documents}-execution-policy.json").read_text()
        for placeholder, value in (("SCONES_BUCKET", bucket), ("REGION", REGION), ("ACCOUNT", ACCOUNT_ID)):
            text = text.replace(placeholder, value)
        return json.dumps(json.loads(text))


def _settings_defaults() -> dict[str, Any]:
    """include/scones/settings.py's defaults: the role names and bucket are defined there once."""
    from include.scones.settings import Settings

    return {name: field.default for name, field in Settings.model_fields.items()}


def project_roles() -> tuple[ProjectRole, ...]:
    """The role settings' defaults, with the documents the README names for each."""
    defaults = _settings_defaults()
    return (
        ProjectRole(defaults["sagemaker_role"], "sagemaker"),
        ProjectRole(defaults["lambda_role"], "lambda"),
        ProjectRole(defaults["states_role"], "states"),
    )


def project_bucket() -> str:
    return str(_settings_defaults()["bucket"])


def ensure_project_role(iam: Any, role: ProjectRole, bucket: str) -> str:
    trust = role.trust_policy()
    try:
        arn = iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
        iam.update_assume_role_policy(RoleName=role.name, PolicyDocument=trust)
        arn = iam.get_role(RoleName=role.name)["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=role.name, PolicyName=f"{role.name}-policy", PolicyDocument=role.permission_policy(bucket)
    )
    return str(arn)


def ensure_sdk_roles(session: boto3.Session, buckets: list[str]) -> list[str]:
    # The SDK is imported here only: it is heavy, and nothing else in the local cloud needs it.
    from sagemaker.core.helper.iam_policies import IAM_POLICY_CONFIG
    from sagemaker.core.helper.iam_role_resolver import IamRoleResolver
    from sagemaker.core.helper.session_helper import Session

    resolver = IamRoleResolver(Session(boto_session=session, default_bucket=SDK_DEFAULT_BUCKET))
    iam = session.client("iam")

    def ensure(kind: str) -> str:
        try:
            return str(iam.get_role(RoleName=IAM_POLICY_CONFIG[kind]["role_name"])["Role"]["Arn"])
        except iam.exceptions.NoSuchEntityException:
            return str(resolver.create_execution_role(kind, s3_resource=buckets, kms_resource="*"))

    with ThreadPoolExecutor(max_workers=len(SDK_ROLE_TYPES)) as pool:
        return list(pool.map(ensure, SDK_ROLE_TYPES))


def ensure_roles(session: boto3.Session) -> list[str]:
    """Create (or refresh) every role; returns their ARNs."""
    bucket = project_bucket()
    arns = [ensure_project_role(session.client("iam"), role, bucket) for role in project_roles()]
    return arns + ensure_sdk_roles(session, [SDK_DEFAULT_BUCKET, bucket])


def main() -> int:
    arns = ensure_roles(boto3.Session())
    print(", ".join(Path(arn.split(":role/", 1)[1]).name for arn in arns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
