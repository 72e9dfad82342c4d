"""Scenario 3b, MiniStack crash during a deploy (#13, crash durability): `kill -9` of MiniStack at random points of
what the workflow deploys (bucket and objects, IAM roles and their policies, the three Lambdas created then updated,
the state machine created then updated), then `make up` of it, and once more after the deploy finished.

After every restart, every write that MiniStack acknowledged (a 2xx answer botocore saw before the kill) is there
with its content: a function's CodeSha256 and environment, a role's inline policy, a state machine's definition, an
object's ETag. A write still in flight when MiniStack died may have landed or not; the deploy then retries its
step, as a rerun of the DAG would. The kills land at random calls (seeded: SCONES_CRASH_SEED replays a run) and a
random few milliseconds into them: before the request, while MiniStack handles it, or just after its answer.

Its own local cloud, none of the package's fixtures (no training): only MiniStack is killed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from include.scones.lambda_deploy import FUNCTIONS, LAMBDAS_DIR, code_sha256, deploy_functions, lambda_zip
from include.scones.state_machine_deploy import (
    STATE_MACHINE_NAME,
    STATE_MACHINE_TYPE,
    ensure_state_machine,
    render_definition,
)
from localcloud import launcher
from tests.conftest import LocalCloud, running_local_cloud
from tests.reliability import faults
from tests.reliability.conftest import MEASUREMENTS

pytestmark = pytest.mark.e2e

BUCKET = "scones-crash"
LAMBDA_ROLE, STATES_ROLE = "scones-crash-lambda", "scones-crash-states"
RANDOM_KILLS = 3
FIRST_CALLS = 40  # the random kills fall among the deploy's first 40 calls (it makes about 50)
KILL_WITHIN_S = 0.02  # how far into its call a kill lands
STEP_TRIES = 4
SETTLED_S = 1.5  # DurableWrites' settle save comes SETTLE_S = 1 s after a change

Resource = tuple[str, str]


def trust(service: str) -> str:
    statement = {"Effect": "Allow", "Principal": {"Service": f"{service}.amazonaws.com"}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def policy(action: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})


def writes(operation: str, params: dict[str, Any]) -> list[tuple[Resource, Any]]:
    """The resources a call writes and the value each then has, from the call's own parameters."""
    if operation == "CreateBucket":
        return [(("bucket", params["Bucket"]), True)]
    if operation == "PutObject":
        return [(("object", f"{params['Bucket']}/{params['Key']}"), f'"{hashlib.md5(params["Body"]).hexdigest()}"')]
    if operation == "CreateRole":
        return [(("role", params["RoleName"]), True)]
    if operation == "PutRolePolicy":
        return [(("role policy", f"{params['RoleName']}/{params['PolicyName']}"), json.loads(params["PolicyDocument"]))]
    if operation == "CreateFunction":
        name = params["FunctionName"]
        variables = params.get("Environment", {}).get("Variables", {})
        return [(("code", name), code_sha256(params["Code"]["ZipFile"])), (("environment", name), variables)]
    if operation == "UpdateFunctionCode":
        return [(("code", params["FunctionName"]), code_sha256(params["ZipFile"]))]
    if operation == "UpdateFunctionConfiguration" and "Environment" in params:
        return [(("environment", params["FunctionName"]), params["Environment"].get("Variables", {}))]
    if operation in ("CreateStateMachine", "UpdateStateMachine"):
        name = params.get("name") or params["stateMachineArn"].rsplit(":", 1)[-1]
        return [(("state machine", name), json.loads(params["definition"]))]
    return []


@dataclass
class Attempt:
    resource: Resource
    value: Any
    status: int | None = None  # the HTTP status of its answer; None when none came (MiniStack was killed)

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Kill(threading.Thread):
    """`kill -9` of MiniStack a moment after the call it was drawn for began."""

    def __init__(self, cloud: LocalCloud, delay_s: float, call: int) -> None:
        super().__init__(daemon=True)
        self.cloud, self.delay_s, self.call = cloud, delay_s, call
        self.error: BaseException | None = None

    def run(self) -> None:
        threading.Event().wait(self.delay_s)
        try:
            faults.crash(self.cloud.cfg, "ministack")
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            self.error = error


@dataclass
class CrashingDeploy:
    """The clients' writes (botocore's event hooks), and the kills drawn for their calls."""

    cloud: LocalCloud
    seed: int
    attempts: list[Attempt] = field(default_factory=list)
    calls: int = 0
    kills: list[Kill] = field(default_factory=list)
    pending: Kill | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.kill_calls = sorted(self.rng.sample(range(1, FIRST_CALLS), RANDOM_KILLS))

    def client(self, service: str) -> Any:
        client = self.cloud.client(service, config=Config(retries={"max_attempts": 1}, read_timeout=30))
        client.meta.events.register("provide-client-params", self._attempt)
        client.meta.events.register("before-call", self._call)
        client.meta.events.register("after-call", self._answered)
        return client

    def _attempt(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["attempts"] = [Attempt(resource, value) for resource, value in writes(model.name, params)]
        self.attempts.extend(context["attempts"])

    def _call(self, **_: Any) -> None:
        self.calls += 1
        if self.pending is None and self.kill_calls and self.calls >= self.kill_calls[0]:  # one kill at a time
            self.kill_calls.pop(0)
            self.pending = Kill(self.cloud, self.rng.uniform(0, KILL_WITHIN_S), self.calls)
            self.pending.start()

    def _answered(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        for attempt in context.get("attempts", []):
            attempt.status = http_response.status_code

    def allowed(self) -> dict[Resource, list[Any]]:
        """Per resource with an acknowledged write: its last acknowledged value, or that of a later attempt that got
        no answer (it may have landed)."""
        allowed: dict[Resource, list[Any]] = {}
        for attempt in self.attempts:
            if attempt.acknowledged:
                allowed[attempt.resource] = [attempt.value]
            elif attempt.status is None and attempt.resource in allowed:
                allowed[attempt.resource].append(attempt.value)
        return allowed

    def kill_now(self) -> None:
        self.pending = Kill(self.cloud, 0.0, self.calls)
        self.pending.start()

    def restart_if_killed(self) -> bool:
        """After a drawn kill: wait for it, start MiniStack as `make up` does. False when none was drawn."""
        if self.pending is None:
            return False
        kill, self.pending = self.pending, None
        kill.join(timeout=15)
        if kill.error is not None:
            raise kill.error
        self.kills.append(kill)
        launcher.start(faults.service(self.cloud.cfg, "ministack"), self.cloud.cfg)
        return True

    def run(self, step: Callable[[], None]) -> None:
        """Run a deploy step; after a kill, restart MiniStack, check what it kept, and rerun an interrupted step."""
        for _ in range(STEP_TRIES):
            try:
                step()
                interrupted: BotoCoreError | None = None
            except BotoCoreError as error:  # connection refused or reset, a waiter cut short
                interrupted = error
            if not self.restart_if_killed():
                if interrupted is not None:
                    raise interrupted
                return
            self.check()
            if interrupted is None:
                return
        raise AssertionError(f"a step was interrupted {STEP_TRIES} times; {self.describe()}")

    def describe(self) -> str:
        points = ", ".join(f"call {k.call} + {k.delay_s * 1000:.0f} ms" for k in self.kills)
        return f"seed {self.seed} (SCONES_CRASH_SEED), kills at {points or 'none yet'}"

    def check(self) -> None:
        aws = {service: self.cloud.client(service) for service in ("s3", "iam", "lambda", "stepfunctions")}
        lost = {}
        for resource, values in self.allowed().items():
            found = observe(aws, resource)
            if found not in values:
                lost[resource] = f"found {found!r}, expected one of {values!r}"
        assert lost == {}, f"acknowledged writes lost after kill -9: {lost}; {self.describe()}"


def observe(aws: dict[str, Any], resource: Resource) -> Any:
    """The resource's value as MiniStack answers it now, None when it is missing."""
    kind, name = resource
    try:
        if kind == "bucket":
            return True if name in {b["Name"] for b in aws["s3"].list_buckets()["Buckets"]} else None
        if kind == "object":
            bucket, key = name.split("/", 1)
            return aws["s3"].head_object(Bucket=bucket, Key=key)["ETag"]
        if kind == "role":
            return bool(aws["iam"].get_role(RoleName=name)["Role"])
        if kind == "role policy":
            role, policy_name = name.split("/", 1)
            document = aws["iam"].get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
            return json.loads(unquote(document)) if isinstance(document, str) else document
        if kind in ("code", "environment"):
            configuration = aws["lambda"].get_function(FunctionName=name)["Configuration"]
            if kind == "code":
                return configuration["CodeSha256"]
            return (configuration.get("Environment") or {}).get("Variables", {})
        if kind == "state machine":
            for machine in aws["stepfunctions"].list_state_machines()["stateMachines"]:
                if machine["name"] == name:
                    described = aws["stepfunctions"].describe_state_machine(stateMachineArn=machine["stateMachineArn"])
                    return json.loads(described["definition"])
            return None
    except ClientError as error:
        if error.response["ResponseMetadata"]["HTTPStatusCode"] == 404 or "NoSuch" in error.response["Error"]["Code"]:
            return None
        raise
    raise ValueError(kind)


@pytest.fixture
def own_cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    """Not the package's `cloud`: this scenario needs no model, and kills its own MiniStack."""
    with running_local_cloud(tmp_path / "cloud") as started:
        yield started


def test_kill_9_during_a_deploy_loses_no_acknowledged_write(own_cloud: LocalCloud, tmp_path: Path) -> None:
    cloud = own_cloud
    seed = int(os.environ.get("SCONES_CRASH_SEED") or random.randrange(1_000_000))
    deploy = CrashingDeploy(cloud, seed)
    s3, iam, lambda_, sfn = (deploy.client(s) for s in ("s3", "iam", "lambda", "stepfunctions"))
    roles: dict[str, str] = {}
    functions: dict[str, dict[str, str]] = {}
    changed_code = tmp_path / "lambdas"
    shutil.copytree(LAMBDAS_DIR, changed_code)
    with (changed_code / FUNCTIONS[2].folder / "lambda_function.py").open("a") as source:
        source.write("\n# a code change: a new CodeSha256\n")

    def bucket() -> None:
        try:
            s3.head_bucket(Bucket=BUCKET)
        except ClientError:
            s3.create_bucket(Bucket=BUCKET)

    def role(name: str, service: str, action: str) -> Callable[[], None]:
        def ensure() -> None:
            try:
                roles[name] = iam.get_role(RoleName=name)["Role"]["Arn"]
            except iam.exceptions.NoSuchEntityException:
                roles[name] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust(service))["Role"]["Arn"]
            iam.put_role_policy(RoleName=name, PolicyName="scones", PolicyDocument=policy(action))

        return ensure

    def lambdas(threshold: float, folder: Path = LAMBDAS_DIR) -> Callable[[], None]:
        return lambda: functions.update(
            deploy_functions(lambda_, roles[LAMBDA_ROLE], "scones-crash-endpoint", threshold, {}, folder)
        )

    def state_machine(comment: str) -> Callable[[], None]:
        def ensure() -> None:
            definition = json.loads(render_definition(functions)) | {"Comment": comment}
            ensure_state_machine(
                sfn, STATE_MACHINE_NAME, json.dumps(definition), roles[STATES_ROLE], STATE_MACHINE_TYPE
            )

        return ensure

    def objects(version: int) -> Callable[[], None]:
        def put() -> None:
            for number in range(3):
                body = json.dumps({"object": number, "version": version}).encode()
                s3.put_object(Bucket=BUCKET, Key=f"registry/model-{number}.json", Body=body)

        return put

    steps = [
        bucket,
        role(LAMBDA_ROLE, "lambda", "s3:GetObject"),
        role(STATES_ROLE, "states", "lambda:InvokeFunction"),
        lambdas(0.93),
        state_machine("first deploy"),
        objects(1),
        lambdas(0.8),  # configuration updates
        state_machine("second deploy"),
        lambdas(0.8, changed_code),  # one code update
        objects(2),
    ]
    for step in steps:
        deploy.run(step)
    assert len(deploy.kills) == RANDOM_KILLS, f"only {len(deploy.kills)} drawn kills landed; {deploy.describe()}"
    time.sleep(SETTLED_S)  # Lambda's Pending -> Active happens after the answer; DurableWrites saves it then too
    deploy.kill_now()  # and once the deploy is done
    assert deploy.restart_if_killed()
    deploy.check()

    # Every step was rerun until it completed, so the end state is the whole deploy's, and it survived a crash too.
    aws = {service: cloud.client(service) for service in ("s3", "iam", "lambda", "stepfunctions")}
    for spec in FUNCTIONS:
        assert observe(aws, ("code", spec.name)) == code_sha256(lambda_zip(changed_code / spec.folder))
        assert observe(aws, ("environment", spec.name))["THRESHOLD"] == repr(0.8)
        configuration = aws["lambda"].get_function(FunctionName=spec.name)["Configuration"]
        assert (configuration["State"], configuration["LastUpdateStatus"]) == ("Active", "Successful")
    assert observe(aws, ("state machine", STATE_MACHINE_NAME))["Comment"] == "second deploy"
    assert observe(aws, ("role policy", f"{STATES_ROLE}/scones")) == json.loads(policy("lambda:InvokeFunction"))
    assert observe(aws, ("object", f"{BUCKET}/registry/model-2.json")) is not None
    acknowledged = {a.resource for a in deploy.attempts if a.acknowledged}
    in_flight = sum(a.status is None for a in deploy.attempts)
    MEASUREMENTS["MiniStack crash"] = (
        f"{len(deploy.kills)} kill -9 ({deploy.describe()}); {len(acknowledged)} resources' acknowledged writes "
        f"over {deploy.calls} calls all kept, {in_flight} write(s) cut off in flight and redone"
    )
