"""The MiniStack patch (localcloud/ministack): the applier on a copy of the pinned files (applies, is idempotent,
reverts to the pristine text, refuses another version or a changed file), and, through the real local cloud,
what it is for: a Python Lambda's exception reaches Invoke and Step Functions under its class name, a warm worker
keeps its state and its log ends with its invocation, StartSyncExecution runs Express machines only, and a
Distributed Map exports its results with ResultWriter, as on AWS."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from localcloud.config import ACCOUNT_ID, PROJECT_ROOT, LocalCloudConfig
from localcloud.ministack import patch
from tests.lambdas.helpers import deploy, lambda_zip, zip_of
from tests.localcloud.helpers import wait_for

RAISING_HANDLER = """
class ThresholdConfidenceNotMet(Exception):
    pass


def lambda_handler(event, context):
    if event.get("sleep"):
        import time
        time.sleep(event["sleep"])
    raise ThresholdConfidenceNotMet(f"max confidence {event['confidence']} is below the threshold 0.93")
"""


# --- the applier, on a copy -----------------------------------------------------------------------------------
def installed_site_packages() -> Path:
    venv = LocalCloudConfig.from_env().ministack_venv
    [site] = venv.glob("lib/python3*/site-packages")
    return site


def recorded_sha256(site: Path, relative: str) -> str:
    """The file's hash as the wheel shipped it (the dist-info RECORD), i.e. the pristine text's."""
    [record] = site.glob(f"{patch.PACKAGE}-*.dist-info/RECORD")
    for line in record.read_text().splitlines():
        path, digest, _ = line.rsplit(",", 2)
        if path == relative:
            return digest.removeprefix("sha256=")
    raise AssertionError(f"{relative} is not in {record}")


def sha256(path: Path) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()


@pytest.fixture
def pinned_copy(tmp_path: Path) -> Path:
    """The patched files and the dist-info of the installed MiniStack, copied and brought back to pristine
    (the installed copy may already be patched: reverting is how the pristine text is derived)."""
    site = installed_site_packages()
    for relative in {hunk.path for hunk in patch.load_hunks()}:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(site / relative, tmp_path / relative)
    [dist_info] = site.glob(f"{patch.PACKAGE}-*.dist-info")
    shutil.copytree(dist_info, tmp_path / dist_info.name)
    patch.revert(tmp_path)
    return tmp_path


def patched_files() -> list[str]:
    return sorted({hunk.path for hunk in patch.load_hunks()})


def test_the_pin_is_read_from_the_ministack_requirements() -> None:
    assert patch.pinned_version() == "1.5.33"
    assert patch.installed_version(installed_site_packages()) == patch.pinned_version()


def test_reverting_gives_back_exactly_the_files_the_wheel_shipped(pinned_copy: Path) -> None:
    assert patch.status(pinned_copy) == "pristine"
    for relative in patched_files():
        assert sha256(pinned_copy / relative) == recorded_sha256(installed_site_packages(), relative)


def test_applies_to_the_pristine_files_and_a_second_apply_is_a_no_op(pinned_copy: Path) -> None:
    changed = patch.apply(pinned_copy)

    assert sorted(str(path.relative_to(pinned_copy)) for path in changed) == patched_files()
    assert patch.status(pinned_copy) == "applied"
    worker = (pinned_copy / "ministack/core/lambda_runtime.py").read_text()
    assert '"errorType": type(e).__name__' in worker
    assert 'if response.get("status") == "error" and "errorType" not in response:' in worker
    s3 = (pinned_copy / "ministack/services/s3.py").read_text()
    assert 'out["x-amz-server-side-encryption-aws-kms-key-id"] = kms or _aws_managed_s3_key_arn()' in s3
    iam = (pinned_copy / "ministack/services/iam.py").read_text()
    assert 'f"The role with name {name} cannot be found."' in iam
    snapshot = {relative: (pinned_copy / relative).read_bytes() for relative in patched_files()}
    assert patch.apply(pinned_copy) == []
    assert {relative: (pinned_copy / relative).read_bytes() for relative in patched_files()} == snapshot
    # And back: the pristine text is always derivable from a patched install.
    patch.revert(pinned_copy)
    assert patch.status(pinned_copy) == "pristine"


def test_another_ministack_version_fails_loudly(pinned_copy: Path) -> None:
    [metadata] = pinned_copy.glob("ministack-*.dist-info/METADATA")
    metadata.write_text(metadata.read_text().replace("Version: 1.5.33", "Version: 1.6.0"))
    pristine = {relative: (pinned_copy / relative).read_bytes() for relative in patched_files()}

    with pytest.raises(patch.PatchError, match=r"ministack 1\.6\.0 is installed .* written for the pinned 1\.5\.33"):
        patch.apply(pinned_copy)
    assert {relative: (pinned_copy / relative).read_bytes() for relative in patched_files()} == pristine


def test_a_file_that_changed_under_the_patch_fails_loudly_and_nothing_is_written(pinned_copy: Path) -> None:
    svc = pinned_copy / "ministack/services/lambda_svc.py"
    svc.write_text(svc.read_text().replace('error_type = "Runtime.HandlerError"\n', 'error_type = "Other"\n', 1))
    worker_before = (pinned_copy / "ministack/core/lambda_runtime.py").read_bytes()

    with pytest.raises(patch.PatchError, match=r"hunk @@ .* no longer applies to ministack/services/lambda_svc\.py"):
        patch.apply(pinned_copy)
    assert (pinned_copy / "ministack/core/lambda_runtime.py").read_bytes() == worker_before


def test_the_command_line_applies_checks_and_reports(
    pinned_copy: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALCLOUD_HOME", str(tmp_path / "no-cloud"))  # no MiniStack runs there
    site = ["--site-packages", str(pinned_copy)]
    assert patch.main([*site, "--check"]) == 1
    assert patch.main(site) == 0
    out = capsys.readouterr().out
    patched_line = next(line for line in out.splitlines() if line.startswith("ministack patched: "))
    assert set(patched_line.removeprefix("ministack patched: ").split(", ")) == {
        "ministack/core/lambda_runtime.py",
        "ministack/services/lambda_svc.py",
        "ministack/services/iam.py",
        "ministack/services/s3.py",
        "ministack/services/cloudwatch.py",
        "ministack/services/stepfunctions.py",
    }
    assert "restart" not in out  # nothing runs, so there is nothing to restart
    assert patch.main(site) == 0
    assert "nothing to do, already patched" in capsys.readouterr().out
    assert patch.main([*site, "--check"]) == 0


def test_parse_patch_reads_hunks_by_their_line_counts() -> None:
    diff = "intro\n--- a/pkg/m.py\n+++ b/pkg/m.py\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
    [hunk] = patch.parse_patch(diff)
    assert (hunk.path, hunk.old, hunk.new) == ("pkg/m.py", "a\nb\nc\n", "a\nB\nc\n")
    with pytest.raises(patch.PatchError, match="ends early"):
        patch.parse_patch(diff[:-4])


def test_the_installed_ministack_is_patched() -> None:
    """What `make venvs` does after pip install; the end-to-end tests below depend on it."""
    python = LocalCloudConfig.from_env().ministack_venv / "bin" / "python"
    check = subprocess.run(
        [str(python), "-m", "localcloud.ministack.patch", "--check"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, f"{check.stdout}{check.stderr}run: {python} -m localcloud.ministack.patch"


INTERRUPTED = """
import json
from ministack.services import lambda_svc as svc
configs = {
    "created": {"FunctionName": "a", "Version": "$LATEST", "State": "Pending", "LastUpdateStatus": "InProgress"},
    "updated": {"FunctionName": "b", "Version": "$LATEST", "State": "Active", "LastUpdateStatus": "InProgress"},
    "failed": {"FunctionName": "c", "Version": "$LATEST", "State": "Failed", "LastUpdateStatus": "Failed"},
    "snapstart": {"FunctionName": "d", "Version": "1", "State": "Pending", "LastUpdateStatus": "InProgress",
                  "SnapStart": {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}},
}
svc._functions._data.clear()
for name, config in configs.items():
    svc._functions._data[("000000000000", "us-east-1", name)] = {"config": dict(config), "versions": {}}
svc.load_persisted_state(svc.get_state())
states = {k[-1]: [f["config"]["State"], f["config"]["LastUpdateStatus"]] for k, f in svc._functions._data.items()}
print(json.dumps(states))
"""


def test_a_restart_finishes_the_transitions_it_interrupted(tmp_path: Path) -> None:
    """lambda-finish-interrupted-transitions.patch: loaded state never keeps a function Pending or InProgress
    (MiniStack flips them in a thread 0.5 s after answering, which a restart drops); Failed and a SnapStart
    version still being initialised are left alone."""
    python = LocalCloudConfig.from_env().ministack_venv / "bin" / "python"
    env = {"PATH": "/usr/bin:/bin", "STATE_DIR": str(tmp_path), "MINISTACK_TEST_NO_AUTOSTART": "1"}
    run = subprocess.run([str(python), "-c", INTERRUPTED], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {
        "created": ["Active", "Successful"],
        "updated": ["Active", "Successful"],
        "failed": ["Failed", "Failed"],
        "snapstart": ["Pending", "InProgress"],
    }


# --- through the real local cloud -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def raising_function(local_cloud: Any) -> str:
    code = zip_of({"lambda_function.py": RAISING_HANDLER})
    return deploy(local_cloud.client("lambda"), code, prefix="raises")


def invoke(lambda_client: Any, function: str, event: Any) -> tuple[str | None, Any]:
    response = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    return response.get("FunctionError"), json.loads(response["Payload"].read())


@pytest.mark.e2e
def test_invoke_names_the_error_after_the_exception_class(local_cloud: Any, raising_function: str) -> None:
    function_error, payload = invoke(local_cloud.client("lambda"), raising_function, {"confidence": 0.6})

    assert function_error == "Unhandled"
    assert list(payload) == ["errorMessage", "errorType", "requestId", "stackTrace"]  # AWS's keys, in its order
    assert payload["errorType"] == "ThresholdConfidenceNotMet"
    assert payload["errorMessage"] == "max confidence 0.6 is below the threshold 0.93"
    assert payload["requestId"]
    [frame] = payload["stackTrace"]  # the handler's frames only, formatted as AWS does
    assert frame.startswith('  File "') and 'lambda_function.py", line 10, in lambda_handler\n' in frame


@pytest.mark.e2e
def test_a_timeout_is_still_reported_as_sandbox_timedout(local_cloud: Any) -> None:
    lambda_client = local_cloud.client("lambda")
    function = deploy(lambda_client, zip_of({"lambda_function.py": RAISING_HANDLER}), prefix="slow")
    lambda_client.update_function_configuration(FunctionName=function, Timeout=1)
    wait_for(lambda: lambda_client.get_function(FunctionName=function)["Configuration"]["Timeout"] == 1, 10)

    function_error, payload = invoke(lambda_client, function, {"confidence": 0.6, "sleep": 3})

    assert function_error == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout", payload


# --- Step Functions --------------------------------------------------------------------------------------------
STATES_ROLE = "arn:aws:iam::000000000000:role/scones-step-functions"


def create_machine(sfn: Any, definition: dict[str, Any], machine_type: str = "STANDARD") -> str:
    return str(
        sfn.create_state_machine(
            name=f"parity-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=STATES_ROLE,
            type=machine_type,
        )["stateMachineArn"]
    )  # fmt: skip


def finished(sfn: Any, execution: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not finish in 30 s"
        time.sleep(0.1)
    return dict(described)


@pytest.mark.e2e
def test_step_functions_catches_the_exception_by_its_class_name(local_cloud: Any, raising_function: str) -> None:
    sfn = local_cloud.client("stepfunctions")
    definition = {
        "StartAt": "Filter",
        "States": {
            "Filter": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": raising_function, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "Catch": [{"ErrorEquals": ["ThresholdConfidenceNotMet"], "ResultPath": "$.error", "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Fail", "Error": "ThresholdConfidenceNotMet", "CausePath": "$.error.Cause"},
        },
    }
    machine = create_machine(sfn, definition)
    execution = sfn.start_execution(stateMachineArn=machine, input='{"confidence": 0.6}')["executionArn"]
    described = finished(sfn, execution)
    events = sfn.get_execution_history(executionArn=execution)["events"]

    [failed] = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert failed["error"] == "ThresholdConfidenceNotMet"
    assert json.loads(failed["cause"])["errorType"] == "ThresholdConfidenceNotMet"
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    assert entered == ["Filter", "Caught"]
    assert (described["status"], described["error"]) == ("FAILED", "ThresholdConfidenceNotMet")
    assert json.loads(described["cause"])["errorMessage"] == "max confidence 0.6 is below the threshold 0.93"


@pytest.mark.e2e
def test_the_real_filter_lambda_raises_threshold_confidence_not_met_on_ministack(local_cloud: Any) -> None:
    lambda_client = local_cloud.client("lambda")
    function = deploy(lambda_client, lambda_zip("filter_inferences"), {"THRESHOLD": "0.93"}, prefix="filter")
    body = {"image_data": "iVBORw0KGgo=", "s3_bucket": "b", "s3_key": "k.png"}

    low = {"statusCode": 200, "body": body | {"inferences": [0.6, 0.4]}}
    function_error, payload = invoke(lambda_client, function, low)
    assert (function_error, payload["errorType"]) == ("Unhandled", "ThresholdConfidenceNotMet")
    assert payload["errorMessage"] == "max confidence 0.6 is below the threshold 0.93"

    confident = {"statusCode": 200, "body": body | {"inferences": [0.95, 0.05]}}
    assert invoke(lambda_client, function, confident) == (None, confident)

    function_error, payload = invoke(lambda_client, function, {"statusCode": 200, "body": body | {"inferences": []}})
    assert (function_error, payload["errorType"]) == ("Unhandled", "InvalidEvent")


COUNTING_HANDLER = """
INVOCATIONS = 0


def lambda_handler(event, context):
    global INVOCATIONS
    INVOCATIONS += 1
    if event.get("fail"):
        raise ValueError(f"invocation {INVOCATIONS} failed")
    return INVOCATIONS
"""


@pytest.mark.e2e
def test_the_worker_stays_warm_after_a_handler_exception(local_cloud: Any) -> None:
    lambda_client = local_cloud.client("lambda")
    function = deploy(lambda_client, zip_of({"lambda_function.py": COUNTING_HANDLER}), prefix="counts")

    assert invoke(lambda_client, function, {}) == (None, 1)
    assert invoke(lambda_client, function, {"fail": True})[1]["errorMessage"] == "invocation 2 failed"
    # The same process and its module state serve the next event, as AWS reuses the execution environment
    # after a handler exception (unpatched MiniStack starts a new worker: the count would be 1 again).
    assert invoke(lambda_client, function, {}) == (None, 3)


def test_a_running_ministack_is_told_to_restart(
    pinned_copy: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from localcloud.config import LocalCloudConfig

    monkeypatch.setenv("LOCALCLOUD_HOME", str(tmp_path / "cloud"))
    cfg = LocalCloudConfig.from_env()
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "ministack.pid").write_text(str(os.getpid()))  # a live process stands in for MiniStack
    assert patch.main(["--site-packages", str(pinned_copy)]) == 0
    assert f"MiniStack (pid {os.getpid()}) still runs the old code" in capsys.readouterr().out


def test_an_alarm_watches_only_its_own_dimensions_and_missing_data_is_not_breaching(local_cloud: Any) -> None:
    """cloudwatch-alarm-dimensions.patch: an alarm on one endpoint's errors does not trip on another endpoint's,
    and with TreatMissingData=notBreaching it goes back to OK once its datapoints have left the evaluation range."""
    cloudwatch = local_cloud.client("cloudwatch")
    mine, theirs = f"patched-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"

    def dimensions(endpoint: str) -> list[dict[str, str]]:
        return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]

    cloudwatch.put_metric_alarm(
        AlarmName=mine, Namespace="Scones/PatchTest", MetricName="Errors", Dimensions=dimensions(mine),
        Statistic="Sum", Period=10, EvaluationPeriods=1, Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
    )  # fmt: skip

    def put(endpoint: str) -> str:
        cloudwatch.put_metric_data(
            Namespace="Scones/PatchTest",
            MetricData=[{"MetricName": "Errors", "Dimensions": dimensions(endpoint), "Value": 5}],
        )
        return str(cloudwatch.describe_alarms(AlarmNames=[mine])["MetricAlarms"][0]["StateValue"])

    assert put(theirs) == "OK"  # another endpoint's errors; unpatched MiniStack says ALARM
    assert put(mine) == "ALARM"
    time.sleep(11)  # the datapoint leaves the 10 s range; the next evaluation finds nothing and treats it as OK
    assert put(theirs) == "OK"
    history = cloudwatch.describe_alarm_history(AlarmName=mine, HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    assert any("treated as [NonBreaching]" in item["HistoryData"] for item in history)


LOGGING_HANDLER = """
INVOCATIONS = 0


def lambda_handler(event, context):
    global INVOCATIONS
    INVOCATIONS += 1
    for line in range(event.get("lines", 0)):
        print(f"invocation {INVOCATIONS} line {line}")
    return INVOCATIONS
"""


def tail_log(lambda_client: Any, function: str, event: Any) -> list[str]:
    response = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode(), LogType="Tail")
    # MiniStack sends no LogResult for an empty log (AWS always has START/END lines); it keeps the last 4 KB.
    return base64.b64decode(response.get("LogResult", "")).decode().splitlines()


@pytest.mark.e2e
def test_an_invocations_log_holds_its_own_lines_and_never_the_end_mark(local_cloud: Any) -> None:
    """lambda-log-end-of-invocation.patch: the log is read up to the worker's end-of-invocation mark, so each
    invocation gets all of its own lines, none of the next one's, and never the mark itself."""
    lambda_client = local_cloud.client("lambda")
    function = deploy(lambda_client, zip_of({"lambda_function.py": LOGGING_HANDLER}), prefix="logs")

    for invocation, lines in ((1, 3), (2, 0), (3, 100), (4, 1)):
        log = [line for line in tail_log(lambda_client, function, {"lines": lines}) if "invocation" in line]
        assert log == [f"invocation {invocation} line {n}" for n in range(lines)]
    assert not any("end_of_invocation" in line for line in tail_log(lambda_client, function, {"lines": 2}))


PASS_MACHINE = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


@pytest.mark.e2e
def test_start_sync_execution_runs_express_machines_only(local_cloud: Any) -> None:
    """stepfunctions-sync-express.patch: AWS answers StartSyncExecution on a STANDARD machine with
    StateMachineTypeNotSupported (unpatched MiniStack runs it)."""
    from botocore.config import Config
    from botocore.exceptions import ClientError

    sfn = local_cloud.client("stepfunctions", config=Config(inject_host_prefix=False))
    standard, express = create_machine(sfn, PASS_MACHINE), create_machine(sfn, PASS_MACHINE, "EXPRESS")

    with pytest.raises(ClientError) as refused:
        sfn.start_sync_execution(stateMachineArn=standard, input='{"a": 1}')
    assert refused.value.response["Error"]["Code"] == "StateMachineTypeNotSupported"
    assert sfn.list_executions(stateMachineArn=standard)["executions"] == []

    ran = sfn.start_sync_execution(stateMachineArn=express, input='{"a": 1}')
    assert (ran["status"], json.loads(ran["output"])) == ("SUCCEEDED", {"a": 1})


FAIL_MACHINE = {"StartAt": "No", "States": {"No": {"Type": "Fail", "Error": "Nope", "Cause": "by design"}}}


@pytest.mark.e2e
def test_an_express_execution_is_answered_and_kept_nowhere(local_cloud: Any) -> None:
    """stepfunctions-sync-express.patch: an Express execution has AWS's express ARN, its answer is the only
    record (no DescribeExecution, history or listing of it, as on AWS; unpatched MiniStack keeps and answers
    them), and a failed one carries error and cause but no output."""
    from botocore.config import Config
    from botocore.exceptions import ClientError

    sfn = local_cloud.client("stepfunctions", config=Config(inject_host_prefix=False))
    passing, failing = create_machine(sfn, PASS_MACHINE, "EXPRESS"), create_machine(sfn, FAIL_MACHINE, "EXPRESS")
    name = passing.rsplit(":", 1)[1]

    ran = sfn.start_sync_execution(stateMachineArn=passing, name="one", input="{}")
    assert ran["executionArn"].startswith(f"arn:aws:states:us-east-1:{ACCOUNT_ID}:express:{name}:one:")
    failed = sfn.start_sync_execution(stateMachineArn=failing, input="{}")
    assert (failed["status"], failed["error"], failed["cause"]) == ("FAILED", "Nope", "by design")
    assert "output" not in failed

    for call in (sfn.describe_execution, sfn.get_execution_history):
        for execution in (ran, failed):
            with pytest.raises(ClientError) as refused:
                call(executionArn=execution["executionArn"])
            assert refused.value.response["Error"]["Code"] == "ExecutionDoesNotExist"
    assert sfn.list_executions(stateMachineArn=passing)["executions"] == []


def distributed_map(result_writer: dict[str, Any]) -> dict[str, Any]:
    """Each object under $.prefix: a key ending in `bad` fails its child, the rest return {key, size}."""
    state = {
        "Type": "Map",
        "Label": "EachObject",
        "ItemReader": {
            "Resource": "arn:aws:states:::s3:listObjectsV2",
            "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "$.prefix"},
        },
        "ItemSelector": {"key.$": "$$.Map.Item.Value.Key", "size.$": "$$.Map.Item.Value.Size"},
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "Check",
            "States": {
                "Check": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.key", "StringMatches": "*bad", "Next": "Bad"}],
                    "Default": "Good",
                },
                "Bad": {"Type": "Fail", "Error": "BadObject", "Cause": "a bad object"},
                "Good": {"Type": "Pass", "End": True},
            },
        },
        "ToleratedFailurePercentage": 50,
        "ResultWriter": result_writer,
        "End": True,
    }
    return {"StartAt": "EachObject", "States": {"EachObject": state}}


@pytest.fixture(scope="module")
def objects_bucket(s3: Any) -> str:
    bucket = f"parity-map-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for key, body in (("in/a", b"1"), ("in/b", b"22"), ("in/c-bad", b"333"), ("other/d", b"4")):
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


def read_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.mark.e2e
def test_a_distributed_map_exports_each_childs_record_and_a_manifest(local_cloud: Any, objects_bucket: str) -> None:
    """stepfunctions-result-writer.patch, with AWS's defaults (Transformation NONE, JSON): one file per status
    and manifest.json under <Prefix>/<map run id>/; the state's output points at the manifest."""
    sfn, s3 = local_cloud.client("stepfunctions"), local_cloud.client("s3")
    writer = {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket.$": "$.bucket", "Prefix": "runs"}}
    machine = create_machine(sfn, distributed_map(writer))
    started = sfn.start_execution(
        stateMachineArn=machine, input=json.dumps({"bucket": objects_bucket, "prefix": "in/"})
    )

    described = finished(sfn, started["executionArn"])
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    run_id = output["MapRunArn"].rsplit(":", 1)[1]
    assert output["ResultWriterDetails"] == {"Bucket": objects_bucket, "Key": f"runs/{run_id}/manifest.json"}

    manifest = read_json(s3, objects_bucket, output["ResultWriterDetails"]["Key"])
    assert (manifest["DestinationBucket"], manifest["MapRunArn"]) == (objects_bucket, output["MapRunArn"])
    assert [f["Key"] for f in manifest["ResultFiles"]["SUCCEEDED"]] == [f"runs/{run_id}/SUCCEEDED_0.json"]
    assert [f["Key"] for f in manifest["ResultFiles"]["FAILED"]] == [f"runs/{run_id}/FAILED_0.json"]
    assert manifest["ResultFiles"]["PENDING"] == []
    succeeded = read_json(s3, objects_bucket, f"runs/{run_id}/SUCCEEDED_0.json")
    assert sorted(json.loads(r["Output"])["key"] for r in succeeded) == ["in/a", "in/b"]
    assert {r["Status"] for r in succeeded} == {"SUCCEEDED"} and all(json.loads(r["Input"]) for r in succeeded)
    [failed] = read_json(s3, objects_bucket, f"runs/{run_id}/FAILED_0.json")
    assert (failed["Status"], failed["Error"], json.loads(failed["Input"])) == (
        "FAILED", "BadObject", {"key": "in/c-bad", "size": 3},
    )  # fmt: skip
    assert manifest["ResultFiles"]["SUCCEEDED"][0]["Size"] == len(
        s3.get_object(Bucket=objects_bucket, Key=f"runs/{run_id}/SUCCEEDED_0.json")["Body"].read()
    )


@pytest.mark.e2e
def test_compact_jsonl_results_list_the_outputs_and_a_missing_bucket_fails_the_writer(
    local_cloud: Any, objects_bucket: str
) -> None:
    sfn, s3 = local_cloud.client("stepfunctions"), local_cloud.client("s3")
    writer = {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket.$": "$.bucket", "Prefix": "compact/"},
        "WriterConfig": {"Transformation": "COMPACT", "OutputType": "JSONL"},
    }
    machine = create_machine(sfn, distributed_map(writer))
    started = sfn.start_execution(
        stateMachineArn=machine, input=json.dumps({"bucket": objects_bucket, "prefix": "in/"})
    )
    output = json.loads(finished(sfn, started["executionArn"])["output"])
    manifest = read_json(s3, objects_bucket, output["ResultWriterDetails"]["Key"])
    [succeeded] = manifest["ResultFiles"]["SUCCEEDED"]
    lines = s3.get_object(Bucket=objects_bucket, Key=succeeded["Key"])["Body"].read().decode().splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == ["in/a", "in/b"]
    assert {json.loads(line)["size"] for line in lines} == {1, 2}  # the outputs themselves, no metadata

    machine = create_machine(
        sfn, distributed_map({"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "no-such-bkt"}})
    )
    started = sfn.start_execution(
        stateMachineArn=machine, input=json.dumps({"bucket": objects_bucket, "prefix": "in/"})
    )
    described = finished(sfn, started["executionArn"])
    assert (described["status"], described["error"]) == ("FAILED", "States.ResultWriterFailed")
