"""The IAM actions the project's code needs, found from its source: an AST scan for boto3 client calls (waiters and
paginators included), provider S3Hook methods, hook attributes that call AWS, and provider operators, each mapped to
the IAM action it requires. tests/reliability/test_security.py checks include/iam/*.json against the result.

What the source cannot show is kept in small explicit tables below, each saying where it comes from."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import boto3

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# boto3 service name -> IAM service prefix.
IAM_PREFIX = {
    "s3": "s3",
    "sagemaker": "sagemaker",
    "sagemaker-runtime": "sagemaker",
    "lambda": "lambda",
    "stepfunctions": "states",
    "sts": "sts",
    "logs": "logs",
    "cloudwatch": "cloudwatch",
}

# S3 authorises several API operations under another action's name (S3 user guide, "Amazon S3 actions").
S3_IAM_ACTION = {"HeadBucket": "ListBucket", "ListObjectsV2": "ListBucket", "HeadObject": "GetObject",
                 "DeleteObjects": "DeleteObject"}  # fmt: skip

# The provider's S3Hook methods the code calls -> the S3 operations they make (providers-amazon 9.39, hooks/s3.py).
# get_key's object is HeadObject-loaded and then read with .get(), a GetObject.
S3_HOOK_METHODS = {
    "check_for_bucket": ("HeadBucket",),
    "create_bucket": ("CreateBucket",),
    "check_for_key": ("HeadObject",),
    "get_key": ("HeadObject", "GetObject"),
    "read_key": ("GetObject",),
    "load_bytes": ("PutObject",),
    "load_string": ("PutObject",),
    "list_keys": ("ListObjectsV2",),
    "delete_objects": ("DeleteObjects",),
}

# Hook attributes that make a call when read (base_aws.py: account_id asks STS).
HOOK_ATTRIBUTES = {"account_id": "sts:GetCallerIdentity"}

# Provider operators used by the DAGs -> the actions they make (providers-amazon 9.39 operators/sagemaker.py,
# hooks/sagemaker.py, operators/step_function.py; the calls are listed in shared/docs/aws-contracts.md §1.5).
# Requests with Tags need sagemaker:AddTags; a RoleArn needs iam:PassRole; the S3 checks of training and transform
# inputs are HeadBucket, HeadObject and ListObjectsV2; print_log reads the training log streams.
_S3_INPUT_CHECKS = ("s3:ListBucket", "s3:GetObject")
OPERATOR_ACTIONS = {
    "SageMakerTrainingOperator": (
        "sagemaker:DescribeTrainingJob", "sagemaker:CreateTrainingJob", "sagemaker:AddTags", "iam:PassRole",
        *_S3_INPUT_CHECKS, "logs:DescribeLogStreams", "logs:GetLogEvents",
    ),
    "SageMakerModelOperator": ("sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:AddTags", "iam:PassRole"),
    "SageMakerTransformOperator": (
        "sagemaker:DescribeTransformJob", "sagemaker:DescribeModel", "sagemaker:CreateTransformJob",
        "sagemaker:AddTags", *_S3_INPUT_CHECKS,
    ),
    "SageMakerEndpointConfigOperator": (
        "sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig", "sagemaker:AddTags",
    ),
    "SageMakerEndpointOperator": (
        "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint",
        "sagemaker:DescribeEndpointConfig", "sagemaker:AddTags",
    ),
    "StepFunctionStartExecutionOperator": ("states:StartExecution",),
    "StepFunctionExecutionSensor": ("states:DescribeExecution",),
    # The group once (DeleteModelPackageGroup undoes it when the version cannot be created), then the version.
    "SageMakerRegisterModelVersionOperator": (
        "sagemaker:CreateModelPackageGroup", "sagemaker:CreateModelPackage", "sagemaker:DeleteModelPackageGroup",
    ),
}  # fmt: skip
# include/scones/operators.py's subclasses, which the DAG names: the registration changes only which fields are
# templated; the guarded deploy settles a rolled-back version (registry.py's calls, scanned there), and an update
# that names rollback alarms needs DescribeAlarms on them (aws-contracts-2.md §2.1: SageMaker reads their state).
OPERATOR_ACTIONS["RegisterModelVersionOperator"] = OPERATOR_ACTIONS["SageMakerRegisterModelVersionOperator"]
OPERATOR_ACTIONS["GuardedEndpointOperator"] = (
    *OPERATOR_ACTIONS["SageMakerEndpointOperator"],
    "cloudwatch:DescribeAlarms",
)

# Operations whose request carries a role the service will assume: the caller needs iam:PassRole on it.
PASSES_ROLE = {"lambda:CreateFunction", "lambda:UpdateFunctionConfiguration", "states:CreateStateMachine",
               "states:UpdateStateMachine"}  # fmt: skip

# A method name two candidate services share, resolved by the place it is called from.
AMBIGUOUS_CALLS = {("include/scones/teardown.py", "list_tags"): "sagemaker"}  # called with the SageMaker client

# Calls that only share a name with an AWS operation.
NOT_AWS_CALLS = {("include/scones/monitoring/capture.py", "_HOUR_IN_KEY.search")}  # a compiled regex


class UnclassifiedCall(Exception):
    """A call the scan cannot attribute to one service: add it to AMBIGUOUS_CALLS or NOT_AWS_CALLS."""


@cache
def _operations(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name."""
    return dict(boto3.client(service, region_name="us-east-1").meta.method_to_api_mapping)


@cache
def _waiter_operation(service: str, waiter: str) -> str | None:
    client = boto3.client(service, region_name="us-east-1")
    return client.get_waiter(waiter).config.operation if waiter in client.waiter_names else None


def iam_action(service: str, operation: str) -> str:
    if service == "s3":
        return f"s3:{S3_IAM_ACTION.get(operation, operation)}"
    return f"{IAM_PREFIX[service]}:{operation}"


def _constant_argument(call: ast.Call) -> str | None:
    first = call.args[0] if call.args else None
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _client_call_actions(where: tuple[str, str], call: ast.Call, services: tuple[str, ...]) -> set[str]:
    assert isinstance(call.func, ast.Attribute)
    method = call.func.attr
    found: set[tuple[str, str]] = set()
    for service in services:
        if method in ("get_waiter", "get_paginator") and (name := _constant_argument(call)):
            operation = _waiter_operation(service, name) if method == "get_waiter" else _operations(service).get(name)
        else:
            operation = _operations(service).get(method)
        if operation:
            found.add((service, operation))
    if len(found) > 1:
        chosen = AMBIGUOUS_CALLS.get((where[0], method))
        if chosen is None:
            raise UnclassifiedCall(f"{where[0]}:{where[1]}: {method} exists in {sorted(s for s, _ in found)}")
        found = {(service, operation) for service, operation in found if service == chosen}
    return {iam_action(service, operation) for service, operation in found}


def actions_in_file(path: Path, services: tuple[str, ...], root: Path = PROJECT_ROOT) -> dict[str, set[str]]:
    """IAM action -> the places (`file:line`) in one file that need it."""
    relative = path.relative_to(root).as_posix()
    needs: dict[str, set[str]] = {}

    def need(actions: Iterable[str], line: int) -> None:
        for action in actions:
            needs.setdefault(action, set()).add(f"{relative}:{line}")
            if action in PASSES_ROLE:
                needs.setdefault("iam:PassRole", set()).add(f"{relative}:{line}")

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Name) and node.id in OPERATOR_ACTIONS:
            need(OPERATOR_ACTIONS[node.id], node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr in HOOK_ATTRIBUTES:
            need([HOOK_ATTRIBUTES[node.attr]], node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if (relative, ast.unparse(node.func)) in NOT_AWS_CALLS:
                continue
            if node.func.attr in S3_HOOK_METHODS and "s3" in services:
                need((iam_action("s3", op) for op in S3_HOOK_METHODS[node.func.attr]), node.lineno)
            else:
                need(_client_call_actions((relative, str(node.lineno)), node, services), node.lineno)
    return needs


def actions_used(
    folders: Iterable[str], services: tuple[str, ...], excluded: Iterable[str] = (), root: Path = PROJECT_ROOT
) -> dict[str, set[str]]:
    """IAM action -> every place under `folders` (relative to root) that needs it, `excluded` files left out."""
    skip = set(excluded)
    needs: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            if path.relative_to(root).as_posix() in skip:
                continue
            for action, places in actions_in_file(path, services, root).items():
                needs.setdefault(action, set()).update(places)
    return needs
