"""The workflow DAG's modules (lambda_deploy, state_machine_deploy, smoke), offline: deterministic Lambda packages,
create-or-update only what changed (Lambdas and the state machine) against narrow fake clients, smoke image
picking, judging executions (including the cause the ASL's low-confidence Fail state produces), the outcome check,
and polling executions with a fake clock."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import re
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from include.scones import smoke, state_machine, state_machine_deploy
from include.scones.lambda_deploy import (
    FUNCTIONS,
    LAMBDAS_DIR,
    code_sha256,
    deploy_functions,
    endpoint_environment,
    ensure_function,
    lambda_zip,
)
from include.scones.smoke import Outcome, check_outcomes, judge_execution, pick_smoke_images
from include.scones.state_machine_deploy import ensure_state_machine, render_batch_definition, render_definition

ROLE = "arn:aws:iam::000000000000:role/scones-lambda"
OTHER_ROLE = "arn:aws:iam::000000000000:role/other"
LOCAL_EXTRA = {
    "endpoint_url": "http://127.0.0.1:4566",
    "service_config": {
        "sagemaker": {"endpoint_url": "http://127.0.0.1:4567"},
        "sagemaker-runtime": {"endpoint_url": "http://127.0.0.1:4567"},
    },
}
LOCAL_ENV = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
    "AWS_ENDPOINT_URL_SAGEMAKER": "http://127.0.0.1:4567",
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": "http://127.0.0.1:4567",
}
CLASSES = ["bicycle", "motorcycle"]
SPEC = FUNCTIONS[2]  # filter_inferences: scones-filter-inferences, 10 s, 128 MB


# --- lambda_zip / code_sha256 ------------------------------------------------------------------------------
@pytest.fixture
def package(tmp_path: Path) -> Path:
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "logic.py").write_text("def f():\n    return 1\n")
    (folder / "lambda_function.py").write_text("from logic import f\n\ndef lambda_handler(e, c):\n    return f()\n")
    (folder / "README.md").write_text("not packaged\n")
    (folder / "data.json").write_text("{}\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.py").write_text("x = 1\n")
    return folder


def test_lambda_zip_holds_only_the_top_level_py_files_sorted_with_fixed_metadata(package: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(lambda_zip(package))) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["lambda_function.py", "logic.py"]
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr == 0o644 << 16
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert archive.read(info) == (package / info.filename).read_bytes()


def test_lambda_zip_is_byte_identical_across_builds_and_file_mtimes(package: Path) -> None:
    first = lambda_zip(package)
    assert lambda_zip(package) == first
    for path in package.glob("*.py"):
        os.utime(path, (1_900_000_000, 1_900_000_000))
    assert lambda_zip(package) == first
    assert code_sha256(lambda_zip(package)) == code_sha256(first)


def test_lambda_zip_does_not_depend_on_directory_listing_order(
    tmp_path: Path, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for name in ("logic.py", "lambda_function.py")[::-1]:  # the other creation order from the fixture
        (other / name).write_bytes((package / name).read_bytes())
    expected = lambda_zip(package)
    listed = Path.glob
    # The filesystem decides listing order: make it reverse-sorted, so only lambda_zip's own sort can fix it.
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(sorted(listed(self, pattern), reverse=True)))
    assert lambda_zip(other) == expected
    with zipfile.ZipFile(io.BytesIO(lambda_zip(package))) as archive:
        assert archive.namelist() == ["lambda_function.py", "logic.py"]


def test_code_sha256_is_base64_of_the_sha256_and_changes_with_one_byte(package: Path) -> None:
    assert code_sha256(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # the well-known empty SHA-256
    before = lambda_zip(package)
    assert code_sha256(before) == base64.b64encode(hashlib.sha256(before).digest()).decode()
    source = package / "logic.py"
    source.write_bytes(source.read_bytes().replace(b"return 1", b"return 2"))
    after = lambda_zip(package)
    assert after != before
    assert code_sha256(after) != code_sha256(before)
    assert len(code_sha256(after)) == 44


def test_lambda_zip_of_each_shipped_function_has_its_handler_and_logic() -> None:
    for spec in FUNCTIONS:
        with zipfile.ZipFile(io.BytesIO(lambda_zip(LAMBDAS_DIR / spec.folder))) as archive:
            assert archive.namelist() == ["lambda_function.py", "logic.py"], spec.folder
            assert b"def lambda_handler(" in archive.read("lambda_function.py")


# --- endpoint_environment ----------------------------------------------------------------------------------
def test_endpoint_environment_is_empty_for_an_aws_connection() -> None:
    assert endpoint_environment({"region_name": "us-east-1"}) == {}
    assert endpoint_environment({}) == {}
    assert endpoint_environment({"endpoint_url": "", "service_config": None}) == {}


def test_endpoint_environment_maps_the_local_connection_to_aws_endpoint_variables() -> None:
    assert endpoint_environment({"region_name": "us-east-1", **LOCAL_EXTRA}) == LOCAL_ENV


def test_endpoint_environment_ignores_service_configs_that_are_not_dicts_or_have_no_url() -> None:
    extra = {
        "service_config": {
            "s3": "http://127.0.0.1:9000",
            "sts": ["http://127.0.0.1:1"],
            "lambda": {"addressing_style": "path"},
            "sagemaker-runtime": {"endpoint_url": "http://127.0.0.1:4567"},
        }
    }
    assert endpoint_environment(extra) == {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": "http://127.0.0.1:4567"}


# --- ensure_function / deploy_functions --------------------------------------------------------------------
class ResourceNotFoundException(Exception):
    pass


class FakeLambda:
    """The Lambda client calls ensure_function makes; keeps the functions it creates, as Lambda would."""

    exceptions = SimpleNamespace(ResourceNotFoundException=ResourceNotFoundException)

    def __init__(self, functions: dict[str, dict[str, Any]] | None = None) -> None:
        self.functions = functions or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_function(self, FunctionName: str) -> dict[str, Any]:
        self.calls.append(("get_function", {"FunctionName": FunctionName}))
        if FunctionName not in self.functions:
            raise ResourceNotFoundException(f"Function not found: {FunctionName}")
        return {"Configuration": copy.deepcopy(self.functions[FunctionName])}

    def create_function(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("create_function", kwargs))
        name = kwargs["FunctionName"]
        config = {k: v for k, v in kwargs.items() if k not in ("Code", "Publish")}
        config |= {"FunctionArn": arn_of(name), "CodeSha256": code_sha256(kwargs["Code"]["ZipFile"])}
        self.functions[name] = config
        return copy.deepcopy(config)

    def update_function_code(self, FunctionName: str, ZipFile: bytes) -> dict[str, Any]:
        self.calls.append(("update_function_code", {"FunctionName": FunctionName, "ZipFile": ZipFile}))
        self.functions[FunctionName]["CodeSha256"] = code_sha256(ZipFile)
        return {}

    def update_function_configuration(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("update_function_configuration", kwargs))
        self.functions[kwargs["FunctionName"]].update(kwargs)
        return {}

    def get_waiter(self, name: str) -> Any:
        return SimpleNamespace(wait=lambda **kwargs: self.calls.append((f"wait:{name}", kwargs)))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def arn_of(name: str) -> str:
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}"


def existing(code: bytes, environment: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """What get_function's Configuration says for SPEC deployed with this code and environment."""
    config = {
        "FunctionName": SPEC.name,
        "FunctionArn": arn_of(SPEC.name),
        "Runtime": "python3.11",
        "Handler": "lambda_function.lambda_handler",
        "Role": ROLE,
        "Timeout": SPEC.timeout_s,
        "MemorySize": SPEC.memory_mb,
        "Environment": {"Variables": dict(environment)},
        "CodeSha256": code_sha256(code),
        "LastModified": "2024-01-01T00:00:00.000+0000",
        "State": "Active",
    }
    return config | overrides


def test_ensure_function_creates_a_missing_function_and_waits_until_active(package: Path) -> None:
    client, code = FakeLambda(), lambda_zip(package)
    result = ensure_function(client, SPEC, ROLE, {"THRESHOLD": "0.93"}, code)
    assert result == {"name": "scones-filter-inferences", "arn": arn_of(SPEC.name), "action": "created"}
    assert client.names() == ["get_function", "create_function", "wait:function_active_v2"]
    assert client.calls[1][1] == {
        "FunctionName": "scones-filter-inferences",
        "Code": {"ZipFile": code},
        "Publish": False,
        "Runtime": "python3.11",
        "Handler": "lambda_function.lambda_handler",
        "Role": ROLE,
        "Timeout": 10,
        "MemorySize": 128,
        "Environment": {"Variables": {"THRESHOLD": "0.93"}},
    }
    assert client.calls[2][1] == {"FunctionName": "scones-filter-inferences"}


def test_ensure_function_leaves_an_identical_function_alone(package: Path) -> None:
    code, env = lambda_zip(package), {"THRESHOLD": "0.93", "ENDPOINT_NAME": "ep"}
    client = FakeLambda({SPEC.name: existing(code, env)})
    result = ensure_function(client, SPEC, ROLE, env, code)
    assert result == {"name": SPEC.name, "arn": arn_of(SPEC.name), "action": "unchanged"}
    assert client.names() == ["get_function"]


def test_ensure_function_treats_a_missing_environment_as_empty(package: Path) -> None:
    code = lambda_zip(package)
    config = existing(code, {})
    del config["Environment"]  # Lambda omits Environment for a function without variables
    client = FakeLambda({SPEC.name: config})
    assert ensure_function(client, SPEC, ROLE, {}, code)["action"] == "unchanged"
    assert client.names() == ["get_function"]


def test_ensure_function_updates_only_the_code_when_only_the_code_changed(package: Path) -> None:
    env = {"THRESHOLD": "0.93"}
    old = lambda_zip(package)
    (package / "logic.py").write_text("def f():\n    return 2\n")
    new = lambda_zip(package)
    client = FakeLambda({SPEC.name: existing(old, env)})
    result = ensure_function(client, SPEC, ROLE, env, new)
    assert result == {"name": SPEC.name, "arn": arn_of(SPEC.name), "action": "updated code"}
    assert client.names() == ["get_function", "update_function_code", "wait:function_updated_v2"]
    assert client.calls[1][1] == {"FunctionName": SPEC.name, "ZipFile": new}
    assert client.functions[SPEC.name]["CodeSha256"] == code_sha256(new)


def test_ensure_function_updates_only_the_configuration_with_the_wanted_one(package: Path) -> None:
    code = lambda_zip(package)
    client = FakeLambda({SPEC.name: existing(code, {"THRESHOLD": "0.5"})})
    result = ensure_function(client, SPEC, ROLE, {"THRESHOLD": "0.93"}, code)
    assert result["action"] == "updated configuration (Environment)"
    assert client.names() == ["get_function", "update_function_configuration", "wait:function_updated_v2"]
    assert client.calls[1][1] == {
        "FunctionName": SPEC.name,
        "Runtime": "python3.11",
        "Handler": "lambda_function.lambda_handler",
        "Role": ROLE,
        "Timeout": 10,
        "MemorySize": 128,
        "Environment": {"Variables": {"THRESHOLD": "0.93"}},
    }


def test_ensure_function_names_every_configuration_difference(package: Path) -> None:
    code, env = lambda_zip(package), {"THRESHOLD": "0.93"}
    stale = existing(code, env, Runtime="python3.9", Role=OTHER_ROLE, Timeout=3, MemorySize=1024)
    client = FakeLambda({SPEC.name: stale})
    result = ensure_function(client, SPEC, ROLE, env, code)
    assert result["action"] == "updated configuration (Runtime, Role, Timeout, MemorySize)"
    assert client.names() == ["get_function", "update_function_configuration", "wait:function_updated_v2"]


def test_ensure_function_updates_code_and_configuration_when_both_changed(package: Path) -> None:
    old = lambda_zip(package)
    (package / "lambda_function.py").write_text("def lambda_handler(e, c):\n    return None\n")
    new = lambda_zip(package)
    client = FakeLambda({SPEC.name: existing(old, {"THRESHOLD": "0.5"})})
    result = ensure_function(client, SPEC, ROLE, {"THRESHOLD": "0.93"}, new)
    assert result["action"] == "updated code and configuration (Environment)"
    assert client.names() == [
        "get_function",
        "update_function_code",
        "wait:function_updated_v2",
        "update_function_configuration",
        "wait:function_updated_v2",
    ]


def test_ensure_function_passes_other_client_errors_through(package: Path) -> None:
    class Denied(Exception):
        pass

    class DeniedLambda(FakeLambda):
        def get_function(self, FunctionName: str) -> dict[str, Any]:
            raise Denied(f"AccessDenied on {FunctionName}")

    client = DeniedLambda()
    with pytest.raises(Denied, match="AccessDenied on scones-filter-inferences"):
        ensure_function(client, SPEC, ROLE, {}, lambda_zip(package))
    assert client.calls == []


def test_deploy_functions_creates_the_four_functions_keyed_by_the_templates_placeholders() -> None:
    client = FakeLambda()
    deployed = deploy_functions(client, ROLE, "scones-endpoint", 0.93, {"region_name": "us-east-1", **LOCAL_EXTRA})
    per_image = state_machine.placeholders(state_machine.template_text())
    assert set(deployed) == per_image | state_machine.placeholders(state_machine.batch_template_text())
    assert set(deployed) - per_image == {"CollectBatchResultsArn"}
    assert deployed == {
        "SerializeImageDataArn": {
            "name": "scones-serialize-image-data",
            "arn": arn_of("scones-serialize-image-data"),
            "action": "created",
        },
        "ClassifyImageArn": {
            "name": "scones-classify-image",
            "arn": arn_of("scones-classify-image"),
            "action": "created",
        },
        "FilterInferencesArn": {
            "name": "scones-filter-inferences",
            "arn": arn_of("scones-filter-inferences"),
            "action": "created",
        },
        "CollectBatchResultsArn": {
            "name": "scones-collect-batch-results",
            "arn": arn_of("scones-collect-batch-results"),
            "action": "created",
        },
    }
    creates = [kwargs for name, kwargs in client.calls if name == "create_function"]
    assert [c["FunctionName"] for c in creates] == [spec.name for spec in FUNCTIONS]
    for spec, create in zip(FUNCTIONS, creates, strict=True):
        assert create["Environment"] == {
            "Variables": {"ENDPOINT_NAME": "scones-endpoint", "THRESHOLD": "0.93"} | LOCAL_ENV
        }
        assert create["Code"] == {"ZipFile": lambda_zip(LAMBDAS_DIR / spec.folder)}
        assert (create["Timeout"], create["MemorySize"]) == (spec.timeout_s, spec.memory_mb)


@pytest.mark.parametrize(("threshold", "variable"), [(0.93, "0.93"), ("0.93", "0.93"), (1, "1.0"), (0, "0.0")])
def test_deploy_functions_writes_the_threshold_as_a_float_literal(threshold: Any, variable: str) -> None:
    client = FakeLambda()
    deploy_functions(client, ROLE, "scones-endpoint", threshold, {})
    creates = [kwargs for name, kwargs in client.calls if name == "create_function"]
    assert [c["Environment"]["Variables"]["THRESHOLD"] for c in creates] == [variable] * len(FUNCTIONS)


def test_deploy_functions_twice_changes_nothing_and_a_new_threshold_updates_only_configuration() -> None:
    client = FakeLambda()
    deploy_functions(client, ROLE, "scones-endpoint", 0.93, {"region_name": "us-east-1"})
    client.calls.clear()
    again = deploy_functions(client, ROLE, "scones-endpoint", 0.93, {"region_name": "us-east-1"})
    assert {f["action"] for f in again.values()} == {"unchanged"}
    assert set(client.names()) == {"get_function"}

    client.calls.clear()
    changed = deploy_functions(client, ROLE, "scones-endpoint", 0.8, {"region_name": "us-east-1"})
    assert {f["action"] for f in changed.values()} == {"updated configuration (Environment)"}
    updates = [kwargs for name, kwargs in client.calls if name == "update_function_configuration"]
    assert [u["Environment"]["Variables"] for u in updates] == [
        {"ENDPOINT_NAME": "scones-endpoint", "THRESHOLD": "0.8"}
    ] * 4
    assert "update_function_code" not in client.names()


def test_function_timeouts_cover_the_lambdas_worst_case_client_retries() -> None:
    timeouts = {spec.folder: spec.timeout_s for spec in FUNCTIONS}
    assert timeouts == {"serialize_image_data": 60, "classify_image": 90, "filter_inferences": 10,
                        "collect_batch_results": 120}  # fmt: skip


# --- ensure_state_machine / render_definition --------------------------------------------------------------
MACHINE = "scones-image-classification"
MACHINE_ARN = f"arn:aws:states:us-east-1:000000000000:stateMachine:{MACHINE}"
SFN_ROLE = "arn:aws:iam::000000000000:role/scones-states"
DEFINITION = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}, indent=2)


class FakeStepFunctions:
    def __init__(self, pages: list[list[dict[str, str]]], described: dict[str, Any] | None = None) -> None:
        self.pages, self.described = pages, described
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_state_machines"
        return SimpleNamespace(paginate=lambda: iter([{"stateMachines": page} for page in self.pages]))

    def create_state_machine(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("create_state_machine", kwargs))
        return {"stateMachineArn": MACHINE_ARN}

    def describe_state_machine(self, stateMachineArn: str) -> dict[str, Any]:
        self.calls.append(("describe_state_machine", {"stateMachineArn": stateMachineArn}))
        return dict(self.described or {}, stateMachineArn=stateMachineArn)

    def update_state_machine(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("update_state_machine", kwargs))
        return {}


def machine(name: str) -> dict[str, str]:
    return {"name": name, "stateMachineArn": f"arn:aws:states:us-east-1:000000000000:stateMachine:{name}"}


PAGES = [[machine("other"), machine(f"{MACHINE}-old")], [machine(MACHINE), machine("zzz")]]


def test_ensure_state_machine_creates_a_missing_standard_machine() -> None:
    client = FakeStepFunctions([[machine("other")], [machine(f"{MACHINE}-old")]])
    assert ensure_state_machine(client, MACHINE, DEFINITION, SFN_ROLE) == {"arn": MACHINE_ARN, "action": "created"}
    assert client.calls == [
        ("create_state_machine", {"name": MACHINE, "definition": DEFINITION, "roleArn": SFN_ROLE, "type": "STANDARD"})
    ]


def test_ensure_state_machine_creates_an_express_machine_and_refuses_to_change_a_type() -> None:
    client = FakeStepFunctions([[machine("other")]])
    ensure_state_machine(client, MACHINE, DEFINITION, SFN_ROLE, "EXPRESS")
    assert client.calls[0][1]["type"] == "EXPRESS"
    standing = FakeStepFunctions(PAGES, {"definition": DEFINITION, "roleArn": SFN_ROLE, "type": "STANDARD"})
    with pytest.raises(ValueError, match="cannot change a machine's type"):
        ensure_state_machine(standing, MACHINE, DEFINITION, SFN_ROLE, "EXPRESS")
    assert [call for call, _ in standing.calls] == ["describe_state_machine"]  # nothing changed
    with pytest.raises(ValueError, match="machine_type"):
        ensure_state_machine(standing, MACHINE, DEFINITION, SFN_ROLE, "express")


def test_ensure_state_machine_finds_it_on_a_later_page_and_leaves_an_equal_definition_alone() -> None:
    compact = json.dumps(json.loads(DEFINITION), separators=(",", ":"))  # JSON-equal, other whitespace
    client = FakeStepFunctions(PAGES, {"definition": compact, "roleArn": SFN_ROLE})
    assert ensure_state_machine(client, MACHINE, DEFINITION, SFN_ROLE) == {"arn": MACHINE_ARN, "action": "unchanged"}
    assert client.calls == [("describe_state_machine", {"stateMachineArn": MACHINE_ARN})]


@pytest.mark.parametrize(
    ("definition", "role"),
    [
        (json.dumps({"StartAt": "A", "States": {"A": {"Type": "Fail"}}}), SFN_ROLE),
        (DEFINITION, OTHER_ROLE),
    ],
    ids=["definition", "role"],
)
def test_ensure_state_machine_updates_a_changed_definition_or_role(definition: str, role: str) -> None:
    client = FakeStepFunctions(PAGES, {"definition": definition, "roleArn": role})
    assert ensure_state_machine(client, MACHINE, DEFINITION, SFN_ROLE) == {"arn": MACHINE_ARN, "action": "updated"}
    assert client.calls[-1] == (
        "update_state_machine",
        {"stateMachineArn": MACHINE_ARN, "definition": DEFINITION, "roleArn": SFN_ROLE},
    )
    assert [name for name, _ in client.calls] == ["describe_state_machine", "update_state_machine"]


def test_render_definition_puts_each_deployed_arn_in_its_task() -> None:
    functions = {
        spec.placeholder: {"name": spec.name, "arn": arn_of(spec.name), "action": "created"} for spec in FUNCTIONS
    }
    rendered = json.loads(render_definition(functions))
    names = {state: s["Parameters"]["FunctionName"] for state, s in rendered["States"].items() if s["Type"] == "Task"}
    assert names == {
        "SerializeImageData": arn_of("scones-serialize-image-data"),
        "ClassifyImage": arn_of("scones-classify-image"),
        "FilterInferences": arn_of("scones-filter-inferences"),
    }
    assert "${" not in json.dumps(rendered)
    assert "scones-collect-batch-results" not in json.dumps(rendered)  # a function it does not name is left out


def test_render_batch_definition_puts_the_same_arns_in_the_map_children_and_the_collector() -> None:
    functions = {
        spec.placeholder: {"name": spec.name, "arn": arn_of(spec.name), "action": "created"} for spec in FUNCTIONS
    }
    rendered = json.loads(render_batch_definition(functions))
    children = rendered["States"]["ClassifyEveryImage"]["ItemProcessor"]["States"]
    names = {state: s["Parameters"]["FunctionName"] for state, s in children.items() if s["Type"] == "Task"}
    assert names == {
        "SerializeImageData": arn_of("scones-serialize-image-data"),
        "ClassifyImage": arn_of("scones-classify-image"),
        "FilterInferences": arn_of("scones-filter-inferences"),
    }
    assert rendered["States"]["CollectResults"]["Parameters"]["FunctionName"] == arn_of("scones-collect-batch-results")
    assert "${" not in json.dumps(rendered)
    without_collector = {p: f for p, f in functions.items() if p != "CollectBatchResultsArn"}
    with pytest.raises(ValueError, match="no ARN for placeholder.*CollectBatchResultsArn"):
        render_batch_definition(without_collector)


# --- pick_smoke_images -------------------------------------------------------------------------------------
class MemoryHook:
    """S3Hook.read_key over a dict; unknown keys fail as S3 would."""

    parse_s3_url = staticmethod(S3Hook.parse_s3_url)

    def __init__(self, objects: dict[tuple[str, str], str]) -> None:
        self.objects = objects
        self.reads: list[tuple[str, str]] = []

    def read_key(self, key: str, bucket_name: str) -> str:
        self.reads.append((bucket_name, key))
        return self.objects[(bucket_name, key)]


TEST_LST = "0\t1\tb0.png\n1\t0\ta0.png\n2\t0\ta1.png\n\n3\t1\tb1.png\n4\t0\ta2.png\n5\t1.0\tb2.png\n"


@pytest.fixture
def hook() -> MemoryHook:
    return MemoryHook(
        {
            ("data", "datasets/v1/test/test.lst"): TEST_LST,
            ("data", "datasets/v1/test/classes.json"): json.dumps(CLASSES),
        }
    )


def image(filename: str, label: str) -> dict[str, str]:
    return {"s3_bucket": "data", "s3_key": f"datasets/v1/test/images/{filename}", "label": label}


def test_pick_smoke_images_alternates_classes_in_a_stable_order(hook: MemoryHook) -> None:
    picked = pick_smoke_images(hook, "s3://data/datasets/v1/", 5)
    assert picked == [
        image("a0.png", "bicycle"),
        image("b0.png", "motorcycle"),
        image("a1.png", "bicycle"),
        image("b1.png", "motorcycle"),
        image("a2.png", "bicycle"),
    ]
    assert pick_smoke_images(hook, "s3://data/datasets/v1/", 5) == picked
    assert pick_smoke_images(hook, "s3://data/datasets/v1/", 2) == picked[:2]
    assert set(hook.reads) == {("data", "datasets/v1/test/test.lst"), ("data", "datasets/v1/test/classes.json")}


def test_pick_smoke_images_of_none_is_empty(hook: MemoryHook) -> None:
    assert pick_smoke_images(hook, "s3://data/datasets/v1/", 0) == []


def test_smoke_image_execution_input_is_the_serialize_event() -> None:
    image = smoke.SmokeImage("data", "datasets/v1/test/images/a0.png", "bicycle")
    assert image.execution_input() == {"s3_bucket": "data", "s3_key": "datasets/v1/test/images/a0.png"}


# --- judge_execution ---------------------------------------------------------------------------------------
KEY = "datasets/v1/test/images/a0.png"
IMAGE = {"s3_bucket": "data", "s3_key": KEY, "label": "bicycle"}


def envelope(inferences: list[float]) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "body": {"image_data": "iVBORw0KGgo=", "s3_bucket": "data", "s3_key": KEY, "inferences": inferences},
    }


def lambda_error_cause(message: str) -> str:
    """The Cause Step Functions gives a Lambda's exception (lambdas/README.md, Errors and Step Functions)."""
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": "ThresholdConfidenceNotMet",
            "requestId": "8c1e7b0a-0000-4000-8000-000000000000",
            "stackTrace": ['  File "/var/task/lambda_function.py", line 17, in lambda_handler\n'],
        }
    )


def _path(document: Any, path: str) -> Any:
    assert path.startswith("$."), path
    for part in path[2:].split("."):
        document = document[part]
    return document


def low_confidence_cause(inferences: list[float]) -> str:
    """The Fail state's cause, built by applying the shipped ASL: Catch (ResultPath $.error) into the Pass state's
    Parameters, then the Fail state's CausePath States.JsonToString($)."""
    states = state_machine.load_definition()["States"]
    [catcher] = states["FilterInferences"]["Catch"]
    assert catcher["ResultPath"] == "$.error"
    state_input = envelope(inferences)
    message = f"max confidence {max(inferences)!r} is below the threshold 0.93"
    state_input["error"] = {"Error": "ThresholdConfidenceNotMet", "Cause": lambda_error_cause(message)}
    summary = states[catcher["Next"]]
    assert summary["Type"] == "Pass"
    output = {}
    for field, expression in summary["Parameters"].items():
        assert field.endswith(".$"), field
        if match := re.fullmatch(r"States\.StringToJson\((.+)\)", expression):
            output[field[:-2]] = json.loads(_path(state_input, match.group(1)))
        else:
            output[field[:-2]] = _path(state_input, expression)
    fail = states[summary["Next"]]
    assert (fail["Type"], fail["Error"], fail["CausePath"]) == (
        "Fail",
        "ThresholdConfidenceNotMet",
        "States.JsonToString($)",
    )
    return json.dumps(output, separators=(",", ":"))


def test_judge_execution_reads_a_success_from_the_output_envelope() -> None:
    description = {"status": "SUCCEEDED", "output": json.dumps(envelope([0.0123456, 0.9876544]))}
    assert judge_execution(description, IMAGE, CLASSES) == Outcome(KEY, "bicycle", "SUCCEEDED", "motorcycle", 0.9876544)


def test_judge_execution_reads_the_inferences_from_the_asl_low_confidence_cause() -> None:
    cause = low_confidence_cause([0.61, 0.39])
    assert json.loads(cause)["cause"]["errorType"] == "ThresholdConfidenceNotMet"  # the shape under test
    description = {"status": "FAILED", "error": "ThresholdConfidenceNotMet", "cause": cause}
    assert judge_execution(description, IMAGE, CLASSES) == Outcome(KEY, "bicycle", "LOW_CONFIDENCE", "bicycle", 0.61)


def test_judge_execution_reads_inferences_next_to_a_json_string_error_cause() -> None:
    cause = json.dumps(
        {
            "s3_bucket": "data",
            "s3_key": KEY,
            "inferences": [0.45, 0.55],
            "error": {
                "Error": "ThresholdConfidenceNotMet",
                "Cause": lambda_error_cause("max confidence 0.55 is below the threshold 0.93"),
            },
        }
    )
    description = {"status": "FAILED", "error": "ThresholdConfidenceNotMet", "cause": cause}
    assert judge_execution(description, IMAGE, CLASSES) == Outcome(KEY, "bicycle", "LOW_CONFIDENCE", "motorcycle", 0.55)


def test_inferences_are_found_inside_json_strings_nested_in_the_cause() -> None:
    inner = json.dumps({"body": {"inferences": [0.3, 0.7]}, "inferences": []})
    cause = json.dumps({"error": {"Error": "ThresholdConfidenceNotMet", "Cause": inner}, "inferences": []})
    assert smoke._inferences_in(cause) == [0.3, 0.7]
    assert smoke._inferences_in(json.dumps([{"x": json.dumps([{"inferences": [1, 0]}])}])) == [1.0, 0.0]


@pytest.mark.parametrize(
    "garbage",
    ["", "not json", "{", "null", "42", '"{still not json"', "[]", '{"inferences": []}', '{"inferences": "0.9"}'],
)
def test_inferences_in_garbage_are_none(garbage: str) -> None:
    assert smoke._inferences_in(garbage) == []


def test_judge_execution_low_confidence_with_an_unreadable_cause_has_no_confidence() -> None:
    description = {"status": "FAILED", "error": "ThresholdConfidenceNotMet", "cause": "truncated {"}
    assert judge_execution(description, IMAGE, CLASSES) == Outcome(KEY, "bicycle", "LOW_CONFIDENCE", "-", None)
    description = {"status": "FAILED", "error": "ThresholdConfidenceNotMet"}
    assert judge_execution(description, IMAGE, CLASSES) == Outcome(KEY, "bicycle", "LOW_CONFIDENCE", "-", None)


def test_judge_execution_reports_other_failures_with_their_error_and_cause() -> None:
    cause = json.dumps({"errorMessage": "object s3://data/missing.png does not exist", "errorType": "ImageNotFound"})
    outcome = judge_execution({"status": "FAILED", "error": "ImageNotFound", "cause": cause}, IMAGE, CLASSES)
    assert outcome == Outcome(KEY, "bicycle", f"FAILED: ImageNotFound {cause}", "-", None)

    long_cause = "x" * 500
    outcome = judge_execution({"status": "FAILED", "error": "States.Timeout", "cause": long_cause}, IMAGE, CLASSES)
    assert outcome.status == "FAILED: States.Timeout " + "x" * 200

    assert judge_execution({"status": "ABORTED"}, IMAGE, CLASSES).status == "ABORTED: None None"


def test_judge_execution_with_more_inferences_than_classes_has_no_class_name() -> None:
    description = {"status": "SUCCEEDED", "output": json.dumps(envelope([0.01, 0.04, 0.95]))}
    assert judge_execution(description, IMAGE, CLASSES) == Outcome(KEY, "bicycle", "SUCCEEDED", "-", 0.95)


# --- check_outcomes / outcome_table ------------------------------------------------------------------------
def test_check_outcomes_accepts_outcomes_consistent_with_the_threshold() -> None:
    check_outcomes(
        [
            Outcome("k1", "bicycle", "SUCCEEDED", "bicycle", 0.99),
            Outcome("k2", "bicycle", "SUCCEEDED", "bicycle", 0.93),  # at the threshold passes, as in the filter
            Outcome("k3", "motorcycle", "LOW_CONFIDENCE", "bicycle", 0.6),
            Outcome("k4", "motorcycle", "LOW_CONFIDENCE", "bicycle", 0.9299),
        ],
        0.93,
    )
    check_outcomes([], 0.93)


def test_check_outcomes_lists_every_inconsistent_or_failed_execution() -> None:
    outcomes = [
        Outcome("ok", "bicycle", "SUCCEEDED", "bicycle", 0.99),
        Outcome("k1", "bicycle", "SUCCEEDED", "bicycle", 0.5),
        Outcome("k2", "bicycle", "LOW_CONFIDENCE", "bicycle", 0.97),
        Outcome("k3", "bicycle", "FAILED: ImageNotFound gone", "-", None),
        Outcome("k4", "bicycle", "LOW_CONFIDENCE", "-", None),
    ]
    with pytest.raises(RuntimeError) as raised:
        check_outcomes(outcomes, 0.93)
    assert str(raised.value) == (
        "4 smoke execution(s) went wrong: "
        "k1: SUCCEEDED with confidence 0.5 at threshold 0.93; "
        "k2: LOW_CONFIDENCE with confidence 0.97 at threshold 0.93; "
        "k3: FAILED: ImageNotFound gone; "
        "k4: LOW_CONFIDENCE with confidence None at threshold 0.93"
    )


def test_a_low_confidence_just_below_the_threshold_is_consistent() -> None:
    description = {
        "status": "FAILED",
        "error": "ThresholdConfidenceNotMet",
        "cause": low_confidence_cause([0.92996, 0.07004]),
    }
    outcome = judge_execution(description, IMAGE, CLASSES)
    assert outcome.status == "LOW_CONFIDENCE"
    check_outcomes([outcome], 0.93)


def test_outcome_table_has_a_row_per_outcome() -> None:
    table = smoke.outcome_table(
        [Outcome("k1", "bicycle", "SUCCEEDED", "motorcycle", 0.98765), Outcome("k2", "bicycle", "ABORTED", "-", None)]
    )
    header, first, second = table.splitlines()
    assert header.split() == ["key", "label", "predicted", "confidence", "outcome"]
    assert first.split() == ["k1", "bicycle", "motorcycle", "0.9877", "SUCCEEDED"]
    assert second.split() == ["k2", "bicycle", "-", "-", "ABORTED"]


# --- replacing a machine of the other type; StartSyncExecution's answer ------------------------------------
class Deleting(FakeStepFunctions):
    """delete_state_machine leaves the machine DELETING for `describes_while_deleting` describes (AWS keeps a
    Standard machine until its running executions end), then it does not exist."""

    class StateMachineDoesNotExist(Exception):
        pass

    exceptions = SimpleNamespace(StateMachineDoesNotExist=StateMachineDoesNotExist)

    def __init__(self, pages: list[list[dict[str, str]]], described: dict[str, Any], describes_while_deleting: int):
        super().__init__(pages, described)
        self.deleting: int | None = None
        self.describes_while_deleting = describes_while_deleting

    def delete_state_machine(self, stateMachineArn: str) -> dict[str, str]:  # noqa: N803
        self.calls.append(("delete_state_machine", {"stateMachineArn": stateMachineArn}))
        self.deleting = self.describes_while_deleting
        return {}

    def describe_state_machine(self, stateMachineArn: str) -> dict[str, Any]:  # noqa: N803
        if self.deleting is None:
            return super().describe_state_machine(stateMachineArn)
        self.calls.append(("describe_state_machine", {"stateMachineArn": stateMachineArn}))
        if self.deleting == 0:
            raise self.StateMachineDoesNotExist(stateMachineArn)
        self.deleting -= 1
        return {"stateMachineArn": stateMachineArn, "status": "DELETING"}


def test_ensure_state_machine_replaces_a_standard_machine_once_it_is_gone() -> None:
    sleeps: list[float] = []
    standing = {"definition": DEFINITION, "roleArn": SFN_ROLE, "type": "STANDARD"}
    client = Deleting(PAGES, standing, describes_while_deleting=2)
    replaced = ensure_state_machine(
        client, MACHINE, DEFINITION, SFN_ROLE, "EXPRESS", replace_other_type=True, sleep=sleeps.append
    )
    assert replaced == {"arn": MACHINE_ARN, "action": "replaced"}
    assert [name for name, _ in client.calls] == [
        "describe_state_machine", "delete_state_machine",
        "describe_state_machine", "describe_state_machine", "describe_state_machine",  # DELETING twice, then gone
        "create_state_machine",
    ]  # fmt: skip
    assert client.calls[-1][1] == {"name": MACHINE, "definition": DEFINITION, "roleArn": SFN_ROLE, "type": "EXPRESS"}
    assert sleeps == [2.0, 2.0]


def test_ensure_state_machine_leaves_a_machine_of_the_right_type_to_the_usual_rules() -> None:
    express = {"definition": DEFINITION, "roleArn": SFN_ROLE, "type": "EXPRESS"}
    client = Deleting(PAGES, express, describes_while_deleting=0)
    assert ensure_state_machine(client, MACHINE, DEFINITION, SFN_ROLE, "EXPRESS", replace_other_type=True) == {
        "arn": MACHINE_ARN, "action": "unchanged"
    }  # fmt: skip
    assert [name for name, _ in client.calls] == ["describe_state_machine"]


def test_delete_state_machine_times_out_naming_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(state_machine_deploy.time, "monotonic", lambda: now[0])
    client = Deleting(PAGES, {}, describes_while_deleting=1_000)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(TimeoutError, match=f"state machine {MACHINE_ARN} still DELETING after 10 s"):
        state_machine_deploy.delete_state_machine(client, MACHINE_ARN, timeout_s=10, poll_s=4, sleep=sleep)
    assert now[0] == 12  # described at 0, 4, 8 and 12 s; 12 s is past the deadline


SUCCEEDED_OUTPUT = json.dumps({"statusCode": 200, "body": {"inferences": [0.97, 0.03]}})


class SyncAnswers:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def start_sync_execution(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return self.answer


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"status": "SUCCEEDED", "output": SUCCEEDED_OUTPUT}, {"status": "SUCCEEDED", "output": SUCCEEDED_OUTPUT}),
        ({"status": "FAILED", "error": "ThresholdConfidenceNotMet", "cause": "{}"},
         {"status": "FAILED", "error": "ThresholdConfidenceNotMet", "cause": "{}"}),
        ({"status": "TIMED_OUT"}, {"status": "TIMED_OUT"}),
    ],
    ids=["succeeded", "low-confidence", "timed-out"],
)  # fmt: skip
def test_run_sync_execution_returns_the_end_json_safe(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    started = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    arn = "arn:aws:states:us-east-1:000000000000:express:scones-image-classification:n:id"
    client = SyncAnswers({"executionArn": arn, "startDate": started, "stopDate": started + timedelta(milliseconds=17.5),
                          "billingDetails": {"billedDurationInMilliseconds": 100}, **fields})  # fmt: skip
    ended = state_machine_deploy.run_sync_execution(client, MACHINE_ARN, {"s3_bucket": "b", "s3_key": "k.png"})
    assert ended == {"executionArn": arn, "status": None, "error": None, "cause": None, "output": None} | expected | {
        "milliseconds": 17.5
    }  # fmt: skip
    assert json.loads(json.dumps(ended)) == ended
    assert client.calls == [{"stateMachineArn": MACHINE_ARN, "input": '{"s3_bucket": "b", "s3_key": "k.png"}'}]
    judged = smoke.judge_execution(ended, {"s3_key": "k.png", "label": "bicycle"}, ["bicycle", "motorcycle"])
    assert judged.status == {"SUCCEEDED": "SUCCEEDED", "FAILED": "LOW_CONFIDENCE"}.get(
        fields["status"], "TIMED_OUT: None None"
    )  # the smoke check judges the answer as it judged a description
