"""Run one training job the way a SageMaker training instance does.

Owns everything that happens on the "instance": the /opt/ml layout in the job's directory (seen by the job as
/opt/ml, see container.py), input download, the container's command (the image's default, the real
sagemaker-training toolkit, or the request's ContainerEntrypoint and ContainerArguments) as a process group,
log shipping, stop/kill, the max-runtime timer and the artifact upload. It reports progress through a
`Reporter` and knows nothing about the control plane's HTTP or its store."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from localcloud.sagemaker.runners import artifacts, container
from localcloud.sagemaker.runners.cloudwatch import LogStream
from localcloud.sagemaker.runners.environment import clean_environment
from localcloud.sagemaker.runners.processes import process_start_ticks, signal_group

log = logging.getLogger(__name__)

STOP_GRACE_S = 120.0  # SageMaker's window for a stopped job to save its model before SIGKILL
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
HOST = "algo-1"  # one local instance; SageMaker names hosts algo-1..algo-N
INSTANCE_GROUP = "homogeneousCluster"
FAILURE_FILE_CHARS = 1024
READER_DRAIN_S = 5.0

# What the runner hands back when the job is over; the model turns it into a terminal status.
COMPLETED, FAILED, STOPPED = "Completed", "Failed", "Stopped"


@dataclass(frozen=True)
class Channel:
    name: str
    s3_uri: str
    input_mode: str
    distribution: str
    record_wrapper: str
    content_type: str | None = None


@dataclass(frozen=True)
class TrainingSpec:
    job_name: str
    job_arn: str
    python: Path
    base_dir: Path
    s3_endpoint_url: str
    output_path: str
    instance_type: str
    hyperparameters: dict[str, str] = field(default_factory=dict)
    channels: tuple[Channel, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    max_runtime_s: float | None = None
    # AlgorithmSpecification's ContainerEntrypoint and ContainerArguments; both empty: the image's own command.
    entrypoint: tuple[str, ...] = ()
    arguments: tuple[str, ...] = ()

    def output_uri(self, file_name: str) -> str:
        return f"{self.output_path.rstrip('/')}/{self.job_name}/output/{file_name}"

    @property
    def model_artifacts_uri(self) -> str:
        return self.output_uri("model.tar.gz")


@dataclass(frozen=True)
class Outcome:
    status: str  # COMPLETED, FAILED or STOPPED
    failure_reason: str | None = None
    model_artifacts: str | None = None


class Reporter(Protocol):
    def transition(self, secondary_status: str, message: str) -> None: ...

    def process_started(self, pid: int, start_ticks: int | None) -> None: ...

    def max_runtime_reached(self) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


class JobSetupError(Exception):
    """A problem with the job's request or inputs: SageMaker reports these as ClientError."""


class TrainingRunner:
    def __init__(self, spec: TrainingSpec, s3: Any, logs: Any, reporter: Reporter) -> None:
        self.spec = spec
        self.s3 = s3
        self.logs = logs
        self.reporter = reporter
        self._stop_requested = threading.Event()
        self._aborted = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._process_lock = threading.Lock()
        self._kill_timer: threading.Timer | None = None
        self._thread = threading.Thread(target=self._run_and_report, name=f"training-{spec.job_name}", daemon=True)

    # --- control -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the job's process group now and SIGKILL it if still alive after grace_s."""
        with self._process_lock:
            self._stop_requested.set()
            if self._process is None or self._process.poll() is not None:
                return
            self._signal(signal.SIGTERM)
            if self._kill_timer is None:
                self._kill_timer = threading.Timer(grace_s, self._signal, args=(signal.SIGKILL,))
                self._kill_timer.daemon = True
                self._kill_timer.start()

    def abort(self, grace_s: float) -> None:
        """Stop without uploading or reporting: the server is going away."""
        self._aborted.set()
        self.stop(grace_s)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _signal(self, signum: int) -> None:
        process = self._process
        if process is not None:
            signal_group(process.pid, signum)  # start_new_session made the pid the group id

    # --- the job -------------------------------------------------------------------------
    def _run_and_report(self) -> None:
        try:
            outcome = self._run()
        except JobSetupError as error:
            outcome = Outcome(FAILED, f"ClientError: {error}")
        except Exception as error:  # the job must end in a terminal state whatever broke
            log.exception("training job %s failed in the local platform", self.spec.job_name)
            outcome = Outcome(FAILED, f"InternalServerError: {type(error).__name__}: {error}")
        finally:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
        if not self._aborted.is_set():
            self.reporter.finished(outcome)

    def _run(self) -> Outcome:
        base = self.spec.base_dir
        self.reporter.transition("Starting", "Preparing the instances for training")
        self._write_layout()
        command, seen_base_dir = self._command()  # before any download: a job that cannot run fails at once
        if self._stop_requested.is_set():
            return Outcome(STOPPED)
        self.reporter.transition("Downloading", "Downloading input data")
        timer = self._arm_max_runtime()
        try:
            self._download_channels()
            if self._stop_requested.is_set():
                return Outcome(STOPPED)
            self.reporter.transition("Training", "Training image download completed. Training in progress.")
            exit_code = self._run_container(command, seen_base_dir)
        finally:
            if timer is not None:
                timer.cancel()
        if self._aborted.is_set():
            return Outcome(STOPPED)
        if self._stop_requested.is_set():
            # A stopped job keeps whatever the script managed to save before it was killed.
            saved = any((base / "model").iterdir())
            return Outcome(STOPPED, model_artifacts=self._upload_outputs() if saved else None)
        if exit_code != 0:
            return Outcome(FAILED, self._failure_reason(exit_code))
        self.reporter.transition("Uploading", "Uploading generated training model")
        return Outcome(COMPLETED, model_artifacts=self._upload_outputs())

    def _arm_max_runtime(self) -> threading.Timer | None:
        if not self.spec.max_runtime_s:
            return None
        timer = threading.Timer(self.spec.max_runtime_s, self.reporter.max_runtime_reached)
        timer.daemon = True
        timer.start()
        return timer

    def _write_layout(self) -> None:
        base = self.spec.base_dir
        config = base / "input" / "config"
        # output/intermediate existing tells the toolkit the platform owns intermediate sync.
        for directory in (
            config,
            base / "input" / "data",
            base / "code",
            base / "model",
            base / "output" / "data",
            base / "output" / "intermediate",
        ):
            directory.mkdir(parents=True, exist_ok=True)
        channels: dict[str, dict[str, str]] = {}
        for channel in self.spec.channels:
            entry = {
                "TrainingInputMode": channel.input_mode,
                "S3DistributionType": channel.distribution,
                "RecordWrapperType": channel.record_wrapper,
            }
            if channel.content_type:
                entry["ContentType"] = channel.content_type
            channels[channel.name] = entry
        resources = {
            "current_host": HOST,
            "hosts": [HOST],
            "current_instance_type": self.spec.instance_type,
            "current_group_name": INSTANCE_GROUP,
            "instance_groups": [
                {"instance_group_name": INSTANCE_GROUP, "instance_type": self.spec.instance_type, "hosts": [HOST]}
            ],
            "network_interface_name": "eth0",
        }
        (config / "hyperparameters.json").write_text(json.dumps(self.spec.hyperparameters))
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        (config / "resourceconfig.json").write_text(json.dumps(resources))

    def _download_channels(self) -> None:
        for channel in self.spec.channels:
            if self._stop_requested.is_set():
                return
            if channel.input_mode == "Pipe":
                raise JobSetupError(
                    f"Channel {channel.name} uses Pipe input mode, which the local cloud does not support; "
                    "use File or FastFile."
                )
            target = self.spec.base_dir / "input" / "data" / channel.name
            target.mkdir(parents=True, exist_ok=True)
            try:
                count = artifacts.download_prefix(self.s3, channel.s3_uri, target)
            except Exception as error:
                raise JobSetupError(f"Data download failed: could not download {channel.s3_uri}: {error}") from error
            if count == 0:
                raise JobSetupError(
                    f"Data download failed: no S3 objects found under S3 URL {channel.s3_uri} "
                    "given in input data source."
                )

    def _command(self) -> tuple[list[str], Path]:
        """The job's command and the directory it sees as /opt/ml. SageMaker runs ContainerEntrypoint with
        ContainerArguments in place of the image's ENTRYPOINT and CMD (arguments alone replace the CMD, which the
        framework images' entrypoint runs); with neither, the PyTorch image's `train`, i.e. the toolkit."""
        custom = [*self.spec.entrypoint, *self.spec.arguments]
        command = custom or [str(self.spec.python), "-m", "sagemaker_training.cli.train"]
        reason = container.unavailable_reason()
        if reason is None:
            return container.command_in_container(self.spec.base_dir, command), container.CONTAINER_ROOT
        if custom:
            raise JobSetupError(
                f"ContainerEntrypoint and ContainerArguments need the job's own {container.CONTAINER_ROOT}, "
                f"which this machine cannot give: {reason}. See the README's 'Training containers'."
            )
        # The toolkit honours SAGEMAKER_BASE_DIR in place of /opt/ml, so script mode still works.
        return command, self.spec.base_dir

    def _environment(self, base_dir: Path) -> dict[str, str]:
        platform = {
            "SAGEMAKER_BASE_DIR": str(base_dir),
            "SM_STUDIO_LOCAL_MODE": "true",  # otherwise the toolkit waits up to 15 min for DNS of algo-1
            "TRAINING_JOB_NAME": self.spec.job_name,
            "TRAINING_JOB_ARN": self.spec.job_arn,
        }
        # A clean environment, like a fresh container: nothing of the server's leaks in.
        return clean_environment(self.spec.python, self.spec.s3_endpoint_url, self.spec.environment) | platform

    def _run_container(self, command: list[str], base_dir: Path) -> int:
        with self._process_lock:  # a stop arriving now either prevents the start or sees the process
            if self._stop_requested.is_set():
                return -signal.SIGTERM
            self._process = process = subprocess.Popen(
                command,
                cwd=self.spec.base_dir,
                env=self._environment(base_dir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,  # its own process group, so stop reaches the user script too
            )
        self.reporter.process_started(process.pid, process_start_ticks(process.pid))
        # Output waits in the pipe while the stream is created, so no line is lost.
        stream = LogStream(self.logs, LOG_GROUP, f"{self.spec.job_name}/{HOST}-{int(time.time())}")
        try:
            with (self.spec.base_dir / "training.log").open("a", encoding="utf-8") as local:
                reader = threading.Thread(target=_copy_lines, args=(process.stdout, local, stream), daemon=True)
                reader.start()
                exit_code = process.wait()
                # The instance goes away with the job: nothing the script left running survives it.
                self._signal(signal.SIGKILL)
                reader.join(READER_DRAIN_S)
        finally:
            stream.close()
        log.info("training job %s: its command exited with %s", self.spec.job_name, exit_code)
        return exit_code

    def _failure_reason(self, exit_code: int) -> str:
        failure_file = self.spec.base_dir / "output" / "failure"
        try:
            detail = failure_file.read_text(errors="replace")[:FAILURE_FILE_CHARS]
        except OSError:
            detail = ""
        if not detail.strip():
            detail = f"the training process exited with code {exit_code} and wrote no output/failure file"
        return f"AlgorithmError: {detail}"

    def _upload_outputs(self) -> str:
        base = self.spec.base_dir
        with tempfile.TemporaryDirectory(prefix=".upload-", dir=base) as staging:
            model = artifacts.make_tar_gz(base / "model", Path(staging) / "model.tar.gz")
            artifacts.upload_file(self.s3, model, self.spec.model_artifacts_uri)
            output_data = base / "output" / "data"
            if any(output_data.iterdir()):
                archive = artifacts.make_tar_gz(output_data, Path(staging) / "output.tar.gz")
                artifacts.upload_file(self.s3, archive, self.spec.output_uri("output.tar.gz"))
        return self.spec.model_artifacts_uri


def _copy_lines(source: TextIO | None, local: TextIO, stream: LogStream) -> None:
    if source is None:
        return
    for line in source:
        local.write(line)
        local.flush()
        stream.write(line)
