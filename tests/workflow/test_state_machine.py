"""The inference workflow's state machine: the shipped ASL validates, broken variants are refused with messages
that name the problem, rendering fills exactly the known placeholders, and (end to end) the real three Lambdas on
MiniStack with a real local endpoint run it to success, to the named low-confidence failure, and to a plain
failure for any other error."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import tarfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from include.scones import state_machine as sm
from include.scones.state_machine_deploy import STATE_MACHINE_TYPE, ensure_state_machine
from tests.conftest import PYTORCH_INFERENCE_IMAGE, ROLE_ARN
from tests.lambdas.helpers import deploy, lambda_zip, png
from tests.localcloud.helpers import wait_for

PLACEHOLDERS = {"SerializeImageDataArn", "ClassifyImageArn", "FilterInferencesArn"}
ARNS = {name: f"arn:aws:lambda:us-east-1:000000000000:function:{name}" for name in PLACEHOLDERS}
LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
}
TASKS = ("SerializeImageData", "ClassifyImage", "FilterInferences")
STATES_ROLE_ARN = "arn:aws:iam::000000000000:role/scones-step-functions"


def broken(change: Any) -> dict[str, Any]:
    """The shipped definition with one change applied (a function of the states dict)."""
    definition = copy.deepcopy(sm.load_definition())
    change(definition["States"])
    return definition


# --- the shipped definition ---------------------------------------------------------------------------------
def test_the_shipped_definition_validates() -> None:
    definition = sm.load_definition()
    sm.validate(definition)
    assert definition["Comment"]
    assert definition["StartAt"] == "SerializeImageData"
    assert sm.state_names() == [*TASKS, "SummarizeLowConfidence", "LowConfidenceInference"]


@pytest.mark.parametrize("task", TASKS)
def test_each_task_invokes_its_lambda_passes_the_payload_on_and_retries_only_lambda_service_errors(task: str) -> None:
    state = sm.load_definition()["States"][task]
    assert state["Resource"] == "arn:aws:states:::lambda:invoke"
    assert state["Parameters"]["Payload.$"] == "$" and state["OutputPath"] == "$.Payload"
    [retrier] = state["Retry"]
    assert set(retrier["ErrorEquals"]) == LAMBDA_ERRORS
    assert 1 <= retrier["IntervalSeconds"] <= 2 and 3 <= retrier["MaxAttempts"] <= 6
    assert (retrier["BackoffRate"], retrier["JitterStrategy"]) == (2, "FULL")


def test_low_confidence_is_caught_by_name_and_ends_in_a_named_fail_state() -> None:
    states = sm.load_definition()["States"]
    [catcher] = states["FilterInferences"]["Catch"]
    assert catcher == {"ErrorEquals": ["ThresholdConfidenceNotMet"], "ResultPath": "$.error", "Next": catcher["Next"]}
    summary = states[catcher["Next"]]
    assert summary["Type"] == "Pass" and summary["Parameters"]["inferences.$"] == "$.body.inferences"
    fail = states[summary["Next"]]
    assert summary["Next"] == "LowConfidenceInference"
    assert (fail["Type"], fail["Error"]) == ("Fail", "ThresholdConfidenceNotMet")
    # Other errors are neither retried nor caught: no States.ALL or States.TaskFailed anywhere.
    handlers = [h for s in states.values() for h in s.get("Retry", []) + s.get("Catch", [])]
    assert not {"States.ALL", "States.TaskFailed"} & {e for h in handlers for e in h["ErrorEquals"]}


# --- render -------------------------------------------------------------------------------------------------
def test_render_fills_every_placeholder_with_its_arn() -> None:
    rendered = json.loads(sm.render(ARNS))
    order = ("SerializeImageDataArn", "ClassifyImageArn", "FilterInferencesArn")
    for task, placeholder in zip(TASKS, order, strict=True):
        assert rendered["States"][task]["Parameters"]["FunctionName"] == ARNS[placeholder]
    assert "${" not in json.dumps(rendered)


def test_render_refuses_a_missing_placeholder_value() -> None:
    arns = {k: v for k, v in ARNS.items() if k != "ClassifyImageArn"}
    with pytest.raises(ValueError, match=r"no ARN for placeholder\(s\) \['ClassifyImageArn'\]"):
        sm.render(arns)


def test_render_refuses_an_unknown_placeholder() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \['ClasifyImageArn'\]"):
        sm.render(ARNS | {"ClasifyImageArn": "arn:aws:lambda:us-east-1:000000000000:function:typo"})


def test_render_refuses_an_empty_arn_and_escapes_values_as_json() -> None:
    with pytest.raises(ValueError, match="must be a non-empty string"):
        sm.render(ARNS | {"FilterInferencesArn": ""})
    rendered = json.loads(sm.render(ARNS | {"FilterInferencesArn": 'odd"name'}))
    assert rendered["States"]["FilterInferences"]["Parameters"]["FunctionName"] == 'odd"name'


def test_render_checks_the_template_first() -> None:
    template = json.dumps(broken(lambda s: s["ClassifyImage"].update(Next="Nowhere")))
    with pytest.raises(ValueError, match="missing Next target"):
        sm.render(ARNS, template)


# --- validate: broken variants ------------------------------------------------------------------------------
def _add_orphan(states: dict[str, Any]) -> None:
    states["Orphan"] = {"Type": "Succeed"}


def _catch_all_first(states: dict[str, Any]) -> None:
    states["FilterInferences"]["Catch"].insert(0, {"ErrorEquals": ["States.ALL"], "Next": "LowConfidenceInference"})


def _loop(states: dict[str, Any]) -> None:
    states["ClassifyImage"]["Next"] = "Spin"
    states["Spin"] = {"Type": "Pass", "Next": "ClassifyImage"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_add_orphan, r"state\(s\) \['Orphan'\] are unreachable from StartAt 'SerializeImageData'"),
        (lambda s: s["ClassifyImage"].update(Next="Nowhere"), "goes to 'Nowhere', which is not a state"),
        (
            lambda s: s["FilterInferences"]["Catch"][0].update(Next="Nowhere"),
            "'FilterInferences' goes to 'Nowhere', which is not a state",
        ),
        (
            lambda s: s["ClassifyImage"]["Retry"].insert(0, {"ErrorEquals": ["States.ALL"]}),
            r"'ClassifyImage' Retry\[0\]: States.ALL must be alone in ErrorEquals and in the last Retry entry",
        ),
        (
            lambda s: s["ClassifyImage"]["Retry"].append({"ErrorEquals": ["States.ALL", "Lambda.Unknown"]}),
            r"Retry\[1\]: States.ALL must be alone",
        ),
        (
            _catch_all_first,
            r"Catch\[0\]: States.ALL must be alone in ErrorEquals and in the last Catch entry",
        ),
        (
            lambda s: s["ClassifyImage"]["Parameters"].update(FunctionName="arn:aws:lambda:us-east-1:1:function:x"),
            r"FunctionName must be a \$\{...\} placeholder",
        ),
        (lambda s: s["ClassifyImage"].update(Resource="arn:aws:lambda:us-east-1:1:function:x"), "must use Resource"),
        (lambda s: s["ClassifyImage"]["Parameters"].pop("Payload.$"), r"needs \"Payload.\$\""),
        (lambda s: s["FilterInferences"].update(Next="ClassifyImage"), "exactly one of Next or"),
        (lambda s: s["ClassifyImage"].pop("Next"), "exactly one of Next or"),
        (lambda s: s["LowConfidenceInference"].update(End=True), "Fail state 'LowConfidenceInference' must have"),
        (lambda s: s["ClassifyImage"]["Retry"][0].update(IntervalSeconds=0), "IntervalSeconds must be a positive"),
        (lambda s: s["ClassifyImage"]["Retry"][0].update(BackoffRate=0.5), "BackoffRate must be a number >= 1.0"),
        (lambda s: s["ClassifyImage"]["Retry"][0].update(MaxAttempts=-1), "MaxAttempts must be a non-negative"),
        (lambda s: s["ClassifyImage"]["Retry"][0].update(JitterStrategy="SOME"), "JitterStrategy must be one of"),
        (lambda s: s["ClassifyImage"]["Retry"][0].update(ErrorEquals=[]), "ErrorEquals must be a non-empty list"),
        (lambda s: s["SummarizeLowConfidence"].update(Type="Parallel"), "has Type 'Parallel'; supported types"),
        (_loop, r"\['ClassifyImage', 'SerializeImageData', 'Spin'\] never reach an End, Succeed or Fail state"),
    ],
)
def test_a_broken_definition_is_refused_with_a_clear_message(change: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sm.validate(broken(change))


# --- the batch machine -----------------------------------------------------------------------------------------
def test_the_batch_children_run_the_per_image_task_states_with_the_low_confidence_catch_sent_to_not_routed() -> None:
    per_image, batch = sm.load_definition()["States"], sm.batch_definition()
    sm.validate(batch)
    the_map = batch["States"][sm.BATCH_MAP_STATE]
    children = the_map["ItemProcessor"]["States"]
    assert the_map["ItemProcessor"]["StartAt"] == TASKS[0] and list(children) == [*TASKS, "Routed", "NotRouted"]
    for name in TASKS[:-1]:
        assert children[name] == per_image[name]  # the same states: one definition
    last, original = children[TASKS[-1]], per_image[TASKS[-1]]
    assert {k: v for k, v in last.items() if k not in ("Catch", "Next")} == {
        k: v for k, v in original.items() if k not in ("Catch", "End")}  # fmt: skip
    assert last["Next"] == "Routed" and "End" not in last
    assert last["Catch"] == [
        {"ErrorEquals": ["ThresholdConfidenceNotMet"], "ResultPath": "$.error", "Next": "NotRouted"}
    ]
    assert children["Routed"]["Parameters"]["routed"] is True and children["NotRouted"]["Parameters"]["routed"] is False
    # The per-image template is untouched by the composition
    assert sm.load_definition()["States"][TASKS[-1]]["Catch"][0]["Next"] == "SummarizeLowConfidence"
    assert sm.placeholders(sm.batch_template_text()) == PLACEHOLDERS | {"CollectBatchResultsArn"}


def _map(change: Any) -> dict[str, Any]:
    batch = sm.batch_definition()
    change(batch["States"][sm.BATCH_MAP_STATE])
    return batch


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("ItemProcessor"), "Map state 'ClassifyEveryImage' needs an ItemProcessor"),
        (
            lambda m: m["ItemProcessor"]["States"]["Routed"].update(Next="CollectResults", End=None),
            "ItemProcessor: state 'Routed' goes to 'CollectResults', which is not a state",
        ),
        (
            lambda m: m["ItemProcessor"]["States"]["ClassifyImage"].update(Resource="arn:aws:states:::sqs:sendMessage"),
            "ItemProcessor: Task state 'ClassifyImage' must use Resource",
        ),
        (lambda m: m["ItemReader"].update(Resource="arn:aws:states:::s3:getObject"), "ItemReader must use Resource"),
        (lambda m: m["ResultWriter"].update(Resource="arn:aws:states:::s3:copyObject"), "ResultWriter must use"),
        (lambda m: m.update(ToleratedFailurePercentage=101), "ToleratedFailurePercentage must be a number from 0"),
        (lambda m: m.pop("Next"), "exactly one of Next or"),
    ],
)
def test_a_broken_batch_definition_is_refused_with_a_clear_message(change: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sm.validate(_map(change))


def test_the_batch_composition_refuses_a_per_image_filter_without_its_low_confidence_catch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    definition = sm.load_definition()
    definition["States"]["FilterInferences"]["Catch"] = []
    monkeypatch.setattr(sm, "load_definition", lambda: definition)
    with pytest.raises(ValueError, match="FilterInferences must end the per-image machine and catch"):
        sm.batch_definition()


def test_a_start_state_that_does_not_exist_is_refused() -> None:
    definition = sm.load_definition() | {"StartAt": "Serialize"}
    with pytest.raises(ValueError, match="StartAt 'Serialize' is not a state"):
        sm.validate(definition)


# --- end to end on the local cloud --------------------------------------------------------------------------
# The endpoint's stand-in for the classifier: confident when the PNG carries the word CONFIDENT.
STAND_IN_MODEL = textwrap.dedent(
    """
    import json

    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        raw = body if isinstance(body, bytes) else body.encode()
        return json.dumps([0.97, 0.03] if b"CONFIDENT" in raw else [0.55, 0.45]), "application/json"
    """
)


def model_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        code = STAND_IN_MODEL.encode()
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(code)
        tar.addfile(info, io.BytesIO(code))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def endpoint(local_cloud: Any, sagemaker: Any, s3: Any) -> Iterator[str]:
    name = f"scones-workflow-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="model/model.tar.gz", Body=model_archive())
    container = {"Image": PYTORCH_INFERENCE_IMAGE, "ModelDataUrl": f"s3://{name}/model/model.tar.gz"}
    sagemaker.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE_ARN)
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
    variant |= {"InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    status = wait_for(
        lambda: (s := sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]) != "Creating" and s, 90
    )
    assert status == "InService"
    try:
        yield name
    finally:
        sagemaker.delete_endpoint(EndpointName=name)


def run_execution(sfn: Any, machine: str, request: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    started = sfn.start_execution(stateMachineArn=machine, input=json.dumps(request))
    arn = started["executionArn"]
    described = wait_for(lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d, 60)
    assert described, f"execution {arn} still running after 60 s"
    return described, sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


@pytest.fixture(scope="module")
def functions(local_cloud: Any, endpoint: str) -> dict[str, str]:
    """The four real Lambdas on MiniStack, classify pointed at the stand-in endpoint: placeholder -> ARN."""
    lambda_client = local_cloud.client("lambda")
    runtime_url = os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"]  # local mode's connection, as a deployer sets it
    return {
        "SerializeImageDataArn": deploy(lambda_client, lambda_zip("serialize_image_data"), prefix="serialize"),
        "ClassifyImageArn": deploy(
            lambda_client,
            lambda_zip("classify_image"),
            {"ENDPOINT_NAME": endpoint, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime_url},
            prefix="classify",
        ),
        "FilterInferencesArn": deploy(lambda_client, lambda_zip("filter_inferences"), {"THRESHOLD": "0.93"}, "filter"),
        "CollectBatchResultsArn": deploy(lambda_client, lambda_zip("collect_batch_results"), prefix="collect"),
    }


def create_machine(sfn: Any, template: str, functions: dict[str, str], machine_type: str = "STANDARD") -> str:
    wanted = sm.placeholders(template)
    return str(sfn.create_state_machine(
        name=f"scones-inference-{uuid.uuid4().hex[:8]}",
        definition=sm.render({p: arn for p, arn in functions.items() if p in wanted}, template),
        roleArn=STATES_ROLE_ARN,
        type=machine_type,
    )["stateMachineArn"])  # fmt: skip


@pytest.mark.e2e
def test_a_standard_machine_left_by_an_older_deploy_is_replaced_by_the_express_one(local_cloud: Any) -> None:
    """A machine's type cannot change: the deploy deletes the Standard machine, waits until it is gone, and
    creates the Express one under the same name; deploying again changes nothing."""
    sfn = local_cloud.client("stepfunctions")
    name = f"scones-replace-{uuid.uuid4().hex[:8]}"
    passing = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    standard = sfn.create_state_machine(name=name, definition=passing, roleArn=STATES_ROLE_ARN)["stateMachineArn"]
    sfn.start_execution(stateMachineArn=standard, input="{}")

    replaced = ensure_state_machine(sfn, name, passing, STATES_ROLE_ARN, STATE_MACHINE_TYPE, replace_other_type=True)
    assert replaced["action"] == "replaced"
    assert sfn.describe_state_machine(stateMachineArn=replaced["arn"])["type"] == "EXPRESS"
    assert [m["name"] for m in sfn.list_state_machines()["stateMachines"]].count(name) == 1
    answer = sfn.start_sync_execution(stateMachineArn=replaced["arn"], input='{"a": 1}')
    assert (answer["status"], json.loads(answer["output"])) == ("SUCCEEDED", {"a": 1})
    again = ensure_state_machine(sfn, name, passing, STATES_ROLE_ARN, STATE_MACHINE_TYPE, replace_other_type=True)
    assert again == {"arn": replaced["arn"], "action": "unchanged"}


def gist(cause: str) -> tuple[Any, Any]:
    """What an execution's cause says, less the invocation's own request id and stack: (inferences, message)."""
    parsed = json.loads(cause)
    return parsed.get("inferences"), (parsed.get("cause") or parsed).get("errorMessage")


@pytest.mark.e2e
def test_the_workflow_runs_on_the_local_cloud(local_cloud: Any, s3: Any, endpoint: str, functions: dict) -> None:
    started = time.monotonic()
    sfn = local_cloud.client("stepfunctions")
    machine = create_machine(sfn, sm.template_text(), functions)
    bucket = endpoint
    confident, uncertain = png("CONFIDENT bicycle"), png("blurry thing")
    s3.put_object(Bucket=bucket, Key="test/confident.png", Body=confident)
    s3.put_object(Bucket=bucket, Key="test/uncertain.png", Body=uncertain)

    # A confident image: the execution succeeds with the filter's envelope as its output.
    done, _ = run_execution(sfn, machine, {"s3_bucket": bucket, "s3_key": "test/confident.png"})
    assert done["status"] == "SUCCEEDED", done
    body = json.loads(done["output"])["body"]
    assert body["inferences"] == [0.97, 0.03] and base64.b64decode(body["image_data"]) == confident

    # A low-confidence image: the filter's exception is caught by its class name and ends in LowConfidenceInference.
    done, events = run_execution(sfn, machine, {"s3_bucket": bucket, "s3_key": "test/uncertain.png"})
    assert (done["status"], done["error"]) == ("FAILED", "ThresholdConfidenceNotMet"), done
    cause = json.loads(done["cause"])
    assert cause["inferences"] == [0.55, 0.45] and cause["s3_key"] == "test/uncertain.png"
    assert cause["cause"]["errorMessage"] == "max confidence 0.55 is below the threshold 0.93"
    task_failed = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert [f["error"] for f in task_failed] == ["ThresholdConfidenceNotMet"]  # raised once, never retried
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    assert entered == [*TASKS, "SummarizeLowConfidence", "LowConfidenceInference"]

    # Any other error fails the execution under its own name, without reaching the low-confidence states.
    done, events = run_execution(sfn, machine, {"s3_bucket": bucket, "s3_key": "test/missing.png"})
    assert (done["status"], done["error"]) == ("FAILED", "ImageNotFound"), done
    assert "LowConfidenceInference" not in json.dumps(events, default=str)

    # The project runs the template as an Express machine: StartSyncExecution answers each image with the end
    # that the Standard execution above described (its ARN is AWS's Express form).
    express = create_machine(sfn, sm.template_text(), functions, STATE_MACHINE_TYPE)
    for key, ended in (
        ("confident", "SUCCEEDED"),
        ("uncertain", "ThresholdConfidenceNotMet"),
        ("missing", "ImageNotFound"),
    ):
        request = {"s3_bucket": bucket, "s3_key": f"test/{key}.png"}
        standard, _ = run_execution(sfn, machine, request)
        answer = sfn.start_sync_execution(stateMachineArn=express, input=json.dumps(request))
        assert answer.get("error", answer["status"]) == standard.get("error", standard["status"]) == ended
        assert answer["status"] == standard["status"], key
        if ended == "SUCCEEDED":
            assert json.loads(answer["output"]) == json.loads(standard["output"])
        else:  # AWS: no output unless the execution succeeded
            assert "output" not in answer and gist(answer["cause"]) == gist(standard["cause"]), key
        assert ":express:" in answer["executionArn"]
    assert time.monotonic() - started < 60


@pytest.mark.e2e
def test_the_batch_machine_classifies_every_image_under_a_prefix_into_one_results_file(
    local_cloud: Any, s3: Any, endpoint: str, functions: dict
) -> None:
    sfn = local_cloud.client("stepfunctions")
    machine = create_machine(sfn, sm.batch_template_text(), functions)
    bucket, prefix = endpoint, f"batch-test/{uuid.uuid4().hex[:6]}/"
    # 10 confident and 10 doubtful images, and one object that is not an image: 1 of 21 (4.8%) may fail
    expected = {}
    for i in range(10):
        for kind, text in (("confident", f"CONFIDENT {i}"), ("doubtful", f"blurry {i}")):
            s3.put_object(Bucket=bucket, Key=f"{prefix}{kind}-{i:02d}.png", Body=png(text))
            expected[f"{prefix}{kind}-{i:02d}.png"] = "routed" if kind == "confident" else "not_routed"
    s3.put_object(Bucket=bucket, Key=f"{prefix}notes.txt", Body=b"not an image")
    expected[f"{prefix}notes.txt"] = "error"
    request = {"s3_bucket": bucket, "prefix": prefix, "results_prefix": f"results/{prefix}run-1",
               "latest_key": f"results/{prefix}latest.json", "classes": ["bicycle", "motorcycle"]}  # fmt: skip

    done, _ = run_execution(sfn, machine, request)
    assert done["status"] == "SUCCEEDED", done
    summary = json.loads(done["output"])
    assert {k: summary[k] for k in ("images", "routed", "not_routed", "errors")} == {
        "images": 21, "routed": 10, "not_routed": 10, "errors": 1}  # fmt: skip
    assert summary["routed_by_label"] == {"bicycle": 10}  # the stand-in says [0.97, 0.03]
    body = s3.get_object(Bucket=bucket, Key=summary["results_key"])["Body"].read().decode()
    lines = [json.loads(line) for line in body.splitlines()]
    assert {line["s3_key"]: line["status"] for line in lines} == expected  # one line per object, in key order
    assert [line["s3_key"] for line in lines] == sorted(expected)
    confident = next(line for line in lines if line["status"] == "routed")
    assert (confident["label"], confident["confidence"], confident["inferences"]) == ("bicycle", 0.97, [0.97, 0.03])
    notes = next(line for line in lines if line["status"] == "error")
    assert notes["error"] == "NotAnImage" and notes["label"] is None
    latest = json.loads(s3.get_object(Bucket=bucket, Key=request["latest_key"])["Body"].read())
    assert latest == summary
    # The ResultWriter's own export sits beside it, under the run's prefix
    manifest = summary["results_key"].rsplit("/", 1)[0]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=manifest + "/")["Contents"]
    assert sum(o["Key"].endswith("/manifest.json") for o in listed) == 1

    # Over the tolerated 5% of failures, the run fails (its results are still exported) and collects nothing
    broken = dict(request, prefix=f"{prefix}notes", results_prefix=f"results/{prefix}run-2")
    done, _ = run_execution(sfn, machine, broken)
    assert (done["status"], done["error"]) == ("FAILED", "States.ExceedToleratedFailureThreshold"), done
    run_2 = s3.list_objects_v2(Bucket=bucket, Prefix=f"results/{prefix}run-2/").get("Contents", [])
    assert any(o["Key"].endswith("/manifest.json") for o in run_2)
    assert not any(o["Key"].endswith("results.jsonl") for o in run_2)
