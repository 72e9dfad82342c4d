"""A training job's own /opt/ml (runners/container.py) and the command the runner gives it: the image's default
(the toolkit) or the request's ContainerEntrypoint and ContainerArguments, and the fallback where a machine
cannot make a private mount namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localcloud.sagemaker.runners import container
from localcloud.sagemaker.runners.training import JobSetupError, TrainingRunner, TrainingSpec

needs_namespaces = pytest.mark.skipif(
    container.unavailable_reason() is not None, reason=f"no private /opt/ml here: {container.unavailable_reason()}"
)


def spec(tmp_path: Path, **overrides: object) -> TrainingSpec:
    fields: dict = {
        "job_name": "job",
        "job_arn": "arn:aws:sagemaker:us-east-1:000000000000:training-job/job",
        "python": Path(sys.executable),
        "base_dir": tmp_path,
        "s3_endpoint_url": "http://127.0.0.1:1",
        "output_path": "s3://bucket/output",
        "instance_type": "ml.m5.large",
    }
    return TrainingSpec(**(fields | overrides))  # type: ignore[arg-type]


def runner(tmp_path: Path, **overrides: object) -> TrainingRunner:
    return TrainingRunner(spec(tmp_path, **overrides), s3=None, logs=None, reporter=None)  # type: ignore[arg-type]


@needs_namespaces
def test_the_job_directory_is_opt_ml_inside_and_nowhere_else(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "marker").write_text("mine")
    script = "cat /opt/ml/input/marker; echo; touch /opt/ml/written; pwd"
    done = subprocess.run(
        container.command_in_container(tmp_path, ["/bin/sh", "-c", script]), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["mine", "/opt/ml"]
    assert (tmp_path / "written").exists()
    assert not Path("/opt/ml/input/marker").exists()


@needs_namespaces
def test_the_command_keeps_its_pid_so_stop_reaches_it(tmp_path: Path) -> None:
    process = subprocess.Popen(
        container.command_in_container(tmp_path, ["/bin/sh", "-c", "echo $$"]), stdout=subprocess.PIPE, text=True
    )
    out, _ = process.communicate(timeout=10)
    assert int(out) == process.pid  # unshare and sh exec: the runner's process is the job's


def test_probe_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container.shutil, "which", lambda name: None)
    assert container.probe() == "util-linux's unshare and mount are not installed"


def test_without_entrypoint_the_image_runs_the_toolkit(tmp_path: Path) -> None:
    command, base_dir = runner(tmp_path)._command()
    assert command[-3:] == [sys.executable, "-m", "sagemaker_training.cli.train"]


@needs_namespaces
def test_entrypoint_and_arguments_replace_the_image_command(tmp_path: Path) -> None:
    job = runner(tmp_path, entrypoint=("/bin/bash",), arguments=("-c", "echo hi"))
    command, base_dir = job._command()
    assert command[-3:] == ["/bin/bash", "-c", "echo hi"]
    assert command[: len(container.command_in_container(tmp_path, []))] == container.command_in_container(tmp_path, [])
    assert base_dir == Path("/opt/ml")
    # Arguments alone replace the image's CMD, which the framework image's entrypoint runs.
    assert runner(tmp_path, arguments=("python3", "x.py"))._command()[0][-2:] == ["python3", "x.py"]


def test_where_no_private_opt_ml_can_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container, "unavailable_reason", lambda: "no namespaces in this sandbox")
    # The toolkit still runs, with SAGEMAKER_BASE_DIR in place of /opt/ml ...
    command, base_dir = runner(tmp_path)._command()
    assert command == [sys.executable, "-m", "sagemaker_training.cli.train"]
    assert base_dir == tmp_path
    # ... and a job that needs the /opt/ml contract is refused with the reason, never run half-way.
    with pytest.raises(JobSetupError, match="ContainerEntrypoint .* no namespaces in this sandbox"):
        runner(tmp_path, entrypoint=("/bin/sh",))._command()
