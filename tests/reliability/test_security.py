"""Scenario 7, security: every socket the local cloud listens on is on 127.0.0.1 (checked with `ss`, while a model
is served and the Lambdas are warm); model weights load only with `weights_only=True`, so a pickled object in place
of the weights is refused; the repository holds no credentials but the local cloud's dummy keys; and the IAM
policies for AWS mode grant exactly the actions the DAGs, the Lambdas and the state machine use, on the project's
resources only (`*` solely for actions that have no resource-level permissions)."""

from __future__ import annotations

import ast
import io
import json
import pickle
import re
import subprocess
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from include.scones import settings as scones_settings
from include.scones.lambda_deploy import FUNCTIONS
from include.scones.params import validate
from include.scones.records import RunPlan
from include.scones.sagemaker_requests import endpoint_config, model, training_job, transform_job
from include.scones.state_machine import BATCH_MAP_STATE, batch_definition, load_definition
from include.scones.state_machine_deploy import BATCH_STATE_MACHINE_NAME
from localcloud import launcher
from tests.conftest import LocalCloud
from tests.localcloud.helpers import unique
from tests.localcloud.test_hosting import Deployer, worker_pids
from tests.reliability.aws_calls import PROJECT_ROOT, UnclassifiedCall, actions_in_file, actions_used
from tests.reliability.conftest import BUCKET, Clients
from tests.reliability.dag_runs import LoggedRun
from tests.scones.helpers import ShellPayload

IAM_DIR = PROJECT_ROOT / "include" / "iam"


# --- sockets -------------------------------------------------------------------------------------------------
def _descendants(roots: set[int]) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found = set(roots)
    while True:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        if not more:
            return found
        found |= more


@pytest.mark.e2e
def test_every_listening_socket_of_the_local_cloud_is_on_loopback(
    cloud: LocalCloud, deployment: dict[str, Any], first_workflow_run: LoggedRun
) -> None:
    roots = {launcher.read_pid(s.pid_file(cloud.cfg)) for s in launcher.services(cloud.cfg)}
    assert None not in roots
    pids = _descendants({pid for pid in roots if pid is not None})
    listing = subprocess.run(["ss", "-ltnupH"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in listing.splitlines() if {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids]
    listeners = {int(p) for line in ours for p in re.findall(r"pid=(\d+)", line)}
    # The model server of the deployed endpoint is among them: the check covers what the services start too.
    assert worker_pids(cloud, deployment["endpoint_name"]) & listeners, "the model server should be listening"
    local_addresses = [line.split()[4] for line in ours]
    assert all(address.startswith("127.0.0.1:") for address in local_addresses), local_addresses


# --- model weights -------------------------------------------------------------------------------------------
def torch_load_calls(root: Path) -> list[tuple[str, bool]]:
    """(`file:line`, passes weights_only=True) for every `torch.load(...)` in the project's Python files."""
    calls = []
    for path in sorted(root.rglob("*.py")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # virtual environments and the local cloud's state
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                safe = any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in node.keywords)
                calls.append((f"{path.relative_to(root)}:{node.lineno}", safe))
    return calls


def test_every_torch_load_passes_weights_only_true() -> None:
    calls = torch_load_calls(PROJECT_ROOT)
    assert any(place.startswith("include/model/inference.py") for place, _ in calls), calls  # the scan sees it
    assert [place for place, safe in calls if not safe] == []


def test_the_torch_load_scan_flags_a_load_without_weights_only(tmp_path: Path) -> None:
    (tmp_path / "loader.py").write_text(
        "import torch\nstate = torch.load('m.pth')\nok = torch.load('m.pth', weights_only=True)\n"
    )
    assert torch_load_calls(tmp_path) == [("loader.py:2", False), ("loader.py:3", True)]


def with_weights_replaced(archive: bytes, weights: bytes) -> bytes:
    """The same model.tar.gz with every *.pth member's bytes replaced."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as source, tarfile.open(fileobj=out, mode="w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith(".pth"):
                data, member.size = weights, len(weights)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@pytest.mark.e2e
def test_the_deployed_model_code_refuses_a_pickled_object_in_place_of_its_weights(
    aws: Clients, deployment: dict[str, Any], tmp_path: Path
) -> None:
    # Given the deployed model.tar.gz with its weights file replaced by a pickle that runs a shell command
    artifact = aws.sagemaker.describe_training_job(TrainingJobName=deployment["training_job_name"])["ModelArtifacts"]
    bucket, key = artifact["S3ModelArtifacts"].removeprefix("s3://").split("/", 1)
    marker = tmp_path / "pwned"
    exploit = pickle.dumps(ShellPayload(f"touch {marker}"), protocol=2)
    assert b"system" in exploit
    tampered = with_weights_replaced(aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read(), exploit)
    tampered_key = f"security/{uuid.uuid4().hex[:8]}/model.tar.gz"
    aws.s3.put_object(Bucket=BUCKET, Key=tampered_key, Body=tampered)
    # When it is served with the project's inference code (model_fn loads the weights)
    deployed = aws.sagemaker.describe_model(ModelName=deployment["model_name"])
    version = aws.sagemaker.describe_model_package(ModelPackageName=deployed["PrimaryContainer"]["ModelPackageName"])
    served = unique("tampered-weights")
    container = version["InferenceSpecification"]["Containers"][0] | {"ModelDataUrl": f"s3://{BUCKET}/{tampered_key}"}
    aws.sagemaker.create_model(
        ModelName=served, PrimaryContainer=container, ExecutionRoleArn=deployed["ExecutionRoleArn"]
    )
    deployer = Deployer(aws.sagemaker, aws.s3, BUCKET)
    endpoint = deployer.endpoint(deployer.config(("AllTraffic", served, 1.0)), wait_for_status="Failed")
    # Then model_fn refused it (the endpoint never passed /ping) and the command never ran
    assert (
        "did not pass the ping health check" in aws.sagemaker.describe_endpoint(EndpointName=endpoint)["FailureReason"]
    )
    assert not marker.exists()
    deployer.delete(endpoint)


# --- credentials ---------------------------------------------------------------------------------------------
# Placeholders in unit tests' fake connections: neither AWS nor the local cloud (which checks signatures against
# per-install keys, localcloud/credentials.py) accepts them.
PLACEHOLDER = "test"
ALLOWED_CREDENTIALS = {PLACEHOLDER}
# A reference to a value kept elsewhere, not a value: compose's `${LOCALCLOUD_SECRET_ACCESS_KEY:?...}` and the
# README's `<LOCALCLOUD_SECRET_ACCESS_KEY>`.
REFERENCE = re.compile(r"\$\{[A-Z][A-Z0-9_]*(?::[-?][^}]*)?\}|<[A-Z][A-Z0-9_]*>")
CREDENTIAL_PATTERNS = {
    # AWS's long-term and temporary keys, and the local cloud's own (LKIA), which live only in .localcloud/env
    "AWS access key id": re.compile(r"(?<![0-9A-Z])(?P<value>(?:AKIA|ASIA|LKIA)[0-9A-Z]{16})(?![0-9A-Z])"),
    "AWS secret access key": re.compile(
        r"(?i)aws_?secret_?access_?key\W{0,3}\s*[:=]\s*\W{0,2}(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
    ),
    # A quoted value given to a credential setting, in code, JSON or YAML
    "credential set to a literal": re.compile(
        r"""(?i)\b(?:aws_access_key_id|aws_secret_access_key|aws_session_token|password|login)\b["']?\s*[:=]\s*"""
        r"""(?P<quote>["'])(?P<value>.*?)(?P=quote)"""
    ),
    # ... or in a shell or .env file (AWS_SECRET_ACCESS_KEY=...), where values go unquoted.
    "credential in the environment": re.compile(
        r"(?m)^\s*(?:export\s+)?(?:AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN)=(?P<value>[^\s\"'$]\S*)"
    ),
    "private key": re.compile(r"(?P<value>-----BEGIN [A-Z ]*PRIVATE KEY-----)"),
}


@dataclass(frozen=True)
class Finding:
    place: str
    kind: str
    value: str


def find_credentials(root: Path, files: list[str]) -> list[Finding]:
    findings = []
    for name in files:
        try:
            data = (root / name).read_bytes()
        except OSError:  # deleted in the working tree
            continue
        if b"\0" in data[:8192]:
            continue  # binary (the dataset's PNGs)
        text = data.decode("utf-8", errors="replace")
        for kind, pattern in CREDENTIAL_PATTERNS.items():
            for match in pattern.finditer(text):
                if match["value"] not in ALLOWED_CREDENTIALS and not REFERENCE.fullmatch(match["value"]):
                    line = text.count("\n", 0, match.start()) + 1
                    findings.append(Finding(f"{name}:{line}", kind, match["value"][:8] + "…"))
    return findings


def repository_files() -> list[str]:
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]  # tracked, and new files not ignored
    return subprocess.run(listing, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.splitlines()


def test_the_repository_holds_no_credentials() -> None:
    files = repository_files()
    assert len(files) > 100
    assert find_credentials(PROJECT_ROOT, files) == []


def test_the_scanner_finds_planted_credentials_and_allows_only_placeholders(tmp_path: Path) -> None:
    # The planted values are assembled here, so this file itself holds none of them.
    key_id, secret = "AKIA" + "QX7" * 5 + "Z", "wJalr" + "K7MDENG/bPxRfiCY" * 2 + "Ab1"
    local_key = "LKIA" + "LOCAL" * 3 + "K"
    stolen = "hunter" + "2"
    lines = {
        "leak.env": [
            f"{name}={value}" for name, value in (("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", secret))
        ],
        "conn.json": [json.dumps({"conn_type": "aws", "login": PLACEHOLDER, "password": stolen})],
        "placeholder.py": [json.dumps({"login": PLACEHOLDER, "password": PLACEHOLDER})],
        "placeholder.env": [f"export {name}={PLACEHOLDER}" for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")],
        "local.env": [f"LOCALCLOUD_ACCESS_KEY_ID={local_key}"],
        "references.yaml": ['password: "${LOCALCLOUD_SECRET_ACCESS_KEY:?run make credentials}"', 'login: "<KEY_ID>"'],
        "id_rsa": ["-----BEGIN OPENSSH " + "PRIVATE KEY-----", "b3BlbnNzaC1rZXk="],
    }
    for name, content in lines.items():
        (tmp_path / name).write_text("\n".join(content) + "\n")
    found = find_credentials(tmp_path, sorted(lines))
    assert {(f.place, f.kind) for f in found} == {
        ("leak.env:1", "AWS access key id"),
        ("leak.env:1", "credential in the environment"),
        ("leak.env:2", "AWS secret access key"),
        ("leak.env:2", "credential in the environment"),
        ("conn.json:1", "credential set to a literal"),
        ("local.env:1", "AWS access key id"),
        ("id_rsa:1", "private key"),
    }
    assert all(secret not in f.value and key_id not in f.value for f in found)  # the report does not repeat them


# --- IAM policies for AWS mode -------------------------------------------------------------------------------
AIRFLOW_SOURCES = ("dags", "include/scones", "plugins")
AIRFLOW_SERVICES = ("s3", "sagemaker", "lambda", "stepfunctions", "sts", "logs", "cloudwatch")
NOT_RUN_BY_AIRFLOW = ("include/scones/load_generator.py",)  # a CLI tool, run with the operator's own credentials
# The Lambda service writes a function's logs with the function's role (AWSLambdaBasicExecutionRole's actions).
LAMBDA_PLATFORM_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
# What SageMaker itself does with the execution role for the jobs, models and endpoints the DAG creates: pull the
# framework image, write the containers' logs and the training metrics (MetricDefinitions); its S3 use is derived
# from the request builders below.
SAGEMAKER_PLATFORM_ACTIONS = {
    "ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
    "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams",
    "cloudwatch:PutMetricData",
}  # fmt: skip
# Actions with no resource-level permissions: IAM accepts only "Resource": "*" for them (Service Authorization
# Reference, "Resource types" column empty).
WILDCARD_ONLY = {
    "sts:GetCallerIdentity": "identifies the caller; no resource",
    "sagemaker:ListModels": "a List* across the account",
    "sagemaker:ListEndpointConfigs": "a List* across the account",
    "sagemaker:ListModelPackages": "a List* across the account",
    "states:ListStateMachines": "a List* across the account",
    "ecr:GetAuthorizationToken": "a registry login token, not tied to a repository",
    "cloudwatch:PutMetricData": "metrics have no ARN (a namespace condition is the only scope)",
}
# What a resource of this project looks like in a policy (placeholders SCONES_BUCKET, REGION, ACCOUNT).
PROJECT_RESOURCE = re.compile(
    r"arn:aws:s3:::SCONES_BUCKET(/.*)?"
    r"|arn:aws:(sagemaker|lambda|states|cloudwatch):REGION:ACCOUNT:[A-Za-z-]+[:/]scones-[\w*:-]*(/\*)?"
    r"|arn:aws:iam::ACCOUNT:role/scones-[\w-]+"
    r"|arn:aws:logs:REGION:ACCOUNT:log-group:/aws/(sagemaker|lambda/scones-)[\w/*-]*(:\*)?"
    r"|arn:aws:ecr:\*:\*:repository/pytorch-(training|inference)"
)


def statements(policy_file: str) -> list[dict[str, Any]]:
    document = json.loads((IAM_DIR / policy_file).read_text())
    return [
        {
            "Sid": s.get("Sid"),
            "Action": [s["Action"]] if isinstance(s["Action"], str) else s["Action"],
            "Resource": [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"],
        }
        for s in document["Statement"]
    ]


def granted(*policy_files: str) -> set[str]:
    return {action for name in policy_files for s in statements(name) for action in s["Action"]}


def permission_policies() -> list[str]:
    return sorted(p.name for p in IAM_DIR.glob("*-policy.json") if not p.name.endswith("-trust-policy.json"))


def test_the_airflow_policies_grant_exactly_the_actions_the_dags_make() -> None:
    used = actions_used(AIRFLOW_SOURCES, AIRFLOW_SERVICES, NOT_RUN_BY_AIRFLOW)
    allowed = granted("airflow-training-policy.json", "airflow-workflow-policy.json")
    missing = {action: sorted(used[action])[:2] for action in set(used) - allowed}
    assert missing == {}, f"used but not granted: {missing}"
    assert allowed - set(used) == set(), "granted but never used"


def test_the_lambda_policy_grants_exactly_what_the_functions_call() -> None:
    used = set(actions_used(["lambdas"], ("s3", "sagemaker-runtime")))
    # HeadObject and GetObject; InvokeEndpoint; collect_batch_results's results and summaries
    assert used == {"s3:GetObject", "s3:PutObject", "sagemaker:InvokeEndpoint"}
    assert granted("lambda-execution-policy.json") == used | LAMBDA_PLATFORM_ACTIONS
    batch_prefix = scones_settings.load(env={}).batch_prefix
    [writes] = [s for s in statements("lambda-execution-policy.json") if "s3:PutObject" in s["Action"]]
    assert writes["Action"] == ["s3:PutObject"]
    assert writes["Resource"] == [f"arn:aws:s3:::SCONES_BUCKET/{batch_prefix}/*"]  # only where results go


def _tasks(states: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Task state, those of a Map's ItemProcessor included."""
    found = []
    for state in states.values():
        if state["Type"] == "Task":
            found.append(state)
        elif state["Type"] == "Map":
            found += _tasks(state["ItemProcessor"]["States"])
    return found


def test_the_states_policy_grants_exactly_what_the_two_state_machines_do() -> None:
    batch = batch_definition()
    tasks = _tasks(load_definition()["States"]) + _tasks(batch["States"])
    assert {task["Resource"] for task in tasks} == {"arn:aws:states:::lambda:invoke"}
    placeholders = {task["Parameters"]["FunctionName"] for task in tasks}
    invoked = {spec.name for spec in FUNCTIONS if "${" + spec.placeholder + "}" in placeholders}
    assert invoked == {spec.name for spec in FUNCTIONS} and len(placeholders) == 4
    grants = {(s["Sid"], a, r) for s in statements("states-execution-policy.json") for a in s["Action"]
              for r in s["Resource"]}  # fmt: skip
    invoke = {(a, r) for sid, a, r in grants if sid == "InvokeWorkflowFunctions"}
    assert invoke == {("lambda:InvokeFunction", f"arn:aws:lambda:REGION:ACCOUNT:function:{n}") for n in invoked}
    # The Distributed Map starts and watches its own children, lists the images (ItemReader) and writes its
    # results (ResultWriter) under the batch prefix, nothing else (AWS's Distributed Map and ResultWriter policies).
    the_map = batch["States"][BATCH_MAP_STATE]
    assert the_map["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert the_map["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert the_map["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    machine = f"arn:aws:states:REGION:ACCOUNT:stateMachine:{BATCH_STATE_MACHINE_NAME}"
    children = f"arn:aws:states:REGION:ACCOUNT:execution:{BATCH_STATE_MACHINE_NAME}/*"
    results = f"arn:aws:s3:::SCONES_BUCKET/{scones_settings.load(env={}).batch_prefix}/*"
    writer = ("s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload")
    assert {(a, r) for sid, a, r in grants if sid != "InvokeWorkflowFunctions"} == {
        ("states:StartExecution", machine), ("states:DescribeExecution", children),
        ("states:StopExecution", children), ("s3:ListBucket", "arn:aws:s3:::SCONES_BUCKET"),
        *((action, results) for action in writer),
    }  # fmt: skip


def test_the_sagemaker_execution_policy_covers_exactly_the_s3_prefixes_the_jobs_read_and_write() -> None:
    settings = scones_settings.load(env={})
    plan = RunPlan(
        name="scones-20260101-000000-00000000", bucket="SCONES_BUCKET", region="us-east-1",
        role_arn="arn:aws:iam::123456789012:role/r", training_image="i", inference_image="i",
        endpoint_name=settings.endpoint_name, model_output_uri=f"s3://SCONES_BUCKET/{settings.model_prefix}/",
        capture_uri=f"s3://SCONES_BUCKET/{settings.capture_prefix}", model_package_group=settings.model_package_group,
        params=validate({}),
    )  # fmt: skip
    data = f"s3://SCONES_BUCKET/{settings.data_prefix}/dataset/"
    code = f"s3://SCONES_BUCKET/{settings.code_prefix}/hash/sourcedir.tar.gz"
    job, served = training_job(plan, data, code), model(plan, f"{plan.model_output_uri}{plan.name}/model.tar.gz")
    transform = transform_job(plan, f"{data}test/images/", plan.name)
    reads = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]] + [
        json.loads(job["HyperParameters"]["sagemaker_submit_directory"]),
        served["PrimaryContainer"]["ModelDataUrl"],
        transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"],
    ]
    writes = [
        job["OutputDataConfig"]["S3OutputPath"],
        transform["TransformOutput"]["S3OutputPath"],
        endpoint_config(plan)["DataCaptureConfig"]["DestinationS3Uri"],
    ]

    def top_folders(uris: list[str]) -> set[str]:
        return {f"arn:aws:s3:::SCONES_BUCKET/{uri.removeprefix('s3://SCONES_BUCKET/').split('/')[0]}/*" for uri in uris}

    by_action: dict[str, set[str]] = {}
    for statement in statements("sagemaker-execution-policy.json"):
        for action in statement["Action"]:
            by_action.setdefault(action, set()).update(statement["Resource"])
    assert by_action.pop("s3:GetObject") == top_folders(reads)
    assert by_action.pop("s3:PutObject") == top_folders(writes)
    assert by_action.pop("s3:ListBucket") == {"arn:aws:s3:::SCONES_BUCKET"}  # S3Prefix inputs are listed
    assert set(by_action) == SAGEMAKER_PLATFORM_ACTIONS


@pytest.mark.parametrize("policy_file", permission_policies())
def test_resources_are_the_projects_and_wildcards_only_where_iam_allows_nothing_narrower(policy_file: str) -> None:
    for statement in statements(policy_file):
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"], statement
            assert set(statement["Action"]) <= set(WILDCARD_ONLY), f"{statement['Sid']}: narrow its Resource"
        else:
            outside = [r for r in statement["Resource"] if not PROJECT_RESOURCE.fullmatch(r)]
            assert outside == [], f"{statement['Sid']} names resources outside the project: {outside}"


def test_the_call_scan_maps_calls_to_iam_actions_and_refuses_to_guess(tmp_path: Path) -> None:
    source = tmp_path / "steps.py"
    source.write_text(
        "def deploy(client, hook, lambda_client):\n"
        "    client.create_endpoint(EndpointName='e', EndpointConfigName='c')\n"
        "    hook.check_for_key('k', bucket_name='b')\n"
        "    lambda_client.get_waiter('function_active_v2').wait(FunctionName='f')\n"
        "    lambda_client.create_function(FunctionName='f')\n"
    )
    found = actions_in_file(source, AIRFLOW_SERVICES, tmp_path)
    assert found == {
        "sagemaker:CreateEndpoint": {"steps.py:2"},
        "s3:GetObject": {"steps.py:3"},
        "lambda:GetFunction": {"steps.py:4"},
        "lambda:CreateFunction": {"steps.py:5"},
        "iam:PassRole": {"steps.py:5"},
    }
    source.write_text("def tags(client):\n    client.list_tags(Resource='x')\n")
    with pytest.raises(UnclassifiedCall, match="list_tags exists in"):
        actions_in_file(source, AIRFLOW_SERVICES, tmp_path)
