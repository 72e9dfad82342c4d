"""Training jobs: Create/Describe/List/Stop, the status machine and its durable record.

The runner (runners/training.py) does the work of the training instance and reports each step
back through `_JobReporter`; every transition is persisted as it happens, so Describe always
shows the current step and a restarted server knows which jobs it lost. The description is
stored exactly as DescribeTrainingJob returns it; the pid of a running toolkit lives apart,
under TRAINING_PROCESS, so recover() can kill what a crashed server left behind."""

from __future__ import annotations

import logging
import time
from typing import Any

from localcloud.sagemaker import validation
from localcloud.sagemaker.exceptions import ResourceInUse, ValidationException
from localcloud.sagemaker.models.base import Context, Operation, arn, list_page, now, pick, require
from localcloud.sagemaker.runners import images
from localcloud.sagemaker.runners.processes import kill_orphan
from localcloud.sagemaker.runners.training import (
    COMPLETED,
    FAILED,
    Channel,
    JobSetupError,
    Outcome,
    TrainingRunner,
    TrainingSpec,
)

log = logging.getLogger(__name__)

TRAINING_JOB = "training-job"
TRAINING_PROCESS = "training-process"
ACTIVE_STATUSES = ("InProgress", "Stopping")
DEFAULT_MAX_RUNTIME_S = 86_400  # SageMaker's default StoppingCondition
SHUTDOWN_GRACE_S = 10.0  # the launcher SIGKILLs the whole server 30 s after asking it to stop
FAILURE_REASON_MAX = 1024  # DescribeTrainingJob's FailureReason is at most 1024 characters

NOT_FOUND = "Requested resource not found."
RESTART_REASON = (
    "The local SageMaker restarted while this job was running; its process was lost. Retry with a new job name."
)
SHUTDOWN_REASON = (
    "The local SageMaker was stopped while this job was running, so the job was stopped with it. "
    "Retry with a new job name."
)
TERMINAL_MESSAGES = {
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job exceeded MaxRuntimeInSeconds provided",
}

# Only members DescribeTrainingJob can return are kept from the request (Tags, for one, are not).
_DESCRIBED_MEMBERS = frozenset(validation.service_model().operation_model("DescribeTrainingJob").output_shape.members)


def _duplicate(job_arn: str) -> ResourceInUse:
    return ResourceInUse(
        "Training job names must be unique within an AWS account and region, and a training job with this "
        f"name already exists ({job_arn})"
    )


def _channels(description: dict[str, Any]) -> tuple[Channel, ...]:
    default_mode = description["AlgorithmSpecification"]["TrainingInputMode"]
    channels = []
    for channel in description.get("InputDataConfig", []):
        source = channel["DataSource"].get("S3DataSource")
        if source is None:
            raise JobSetupError(f"Channel {channel['ChannelName']}: the local cloud supports only S3DataSource inputs.")
        if source["S3DataType"] != "S3Prefix":
            raise JobSetupError(
                f"Channel {channel['ChannelName']}: S3DataType {source['S3DataType']} is not supported locally; "
                "use S3Prefix."
            )
        channels.append(
            Channel(
                name=channel["ChannelName"],
                s3_uri=source["S3Uri"],
                input_mode=channel.get("InputMode") or default_mode,
                distribution=source.get("S3DataDistributionType", "FullyReplicated"),
                record_wrapper=channel.get("RecordWrapperType", "None"),
                content_type=channel.get("ContentType"),
            )
        )
    return tuple(channels)


class _JobReporter:
    """The runner's view of one job: callbacks that move the job's record along."""

    def __init__(self, jobs: TrainingJobs, name: str) -> None:
        self.jobs = jobs
        self.name = name

    def transition(self, secondary_status: str, message: str) -> None:
        self.jobs.record_step(self.name, secondary_status, message)

    def process_started(self, pid: int, start_ticks: int | None) -> None:
        record = {"TrainingJobName": self.name, "pid": pid, "start_ticks": start_ticks}
        self.jobs.ctx.store.put(TRAINING_PROCESS, self.name, record)

    def max_runtime_reached(self) -> None:
        try:
            self.jobs.begin_stop(
                self.name, "MaxRuntimeExceeded", "Stopping the training job: MaxRuntimeInSeconds reached"
            )
        except ValidationException:
            pass  # it ended or was stopped meanwhile

    def finished(self, outcome: Outcome) -> None:
        self.jobs.finish(self.name, outcome)


class TrainingJobs:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._runners: dict[str, TrainingRunner] = {}
        # What a job in Stopping ends as: Stopped (user) or MaxRuntimeExceeded (timer).
        self._stop_outcomes: dict[str, str] = {}

    def operations(self) -> dict[str, Operation]:
        return {
            "CreateTrainingJob": self.create_training_job,
            "DescribeTrainingJob": self.describe_training_job,
            "ListTrainingJobs": self.list_training_jobs,
            "StopTrainingJob": self.stop_training_job,
        }

    # --- operations ----------------------------------------------------------------------
    def create_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TrainingJobName"]
        algorithm = params.get("AlgorithmSpecification")
        resources = params.get("ResourceConfig")
        if not algorithm:
            raise ValidationException("AlgorithmSpecification is required for a training job.")
        if not resources or not resources.get("InstanceType") or not resources.get("InstanceCount"):
            raise ValidationException(
                "ResourceConfig with InstanceType and InstanceCount is required for a training job."
            )
        channel_names = [c["ChannelName"] for c in params.get("InputDataConfig", [])]
        if len(set(channel_names)) != len(channel_names):
            raise ValidationException("Channel names must be unique within a training job's InputDataConfig.")
        job_arn = arn("training-job", name)
        with self.ctx.lock:
            if self.ctx.store.get(TRAINING_JOB, name) is not None:
                raise _duplicate(job_arn)
            description = self._new_description(params, job_arn)
            self.ctx.store.put(TRAINING_JOB, name, description)
            try:
                runner = self._runner(description)
            except (images.UnsupportedImage, JobSetupError) as error:
                # Created, then failed with the reason: an unrunnable job must never look like it ran.
                reason = f"ClientError: {error}" if isinstance(error, JobSetupError) else str(error)
                self.finish(name, Outcome(FAILED, reason))
                return {"TrainingJobArn": job_arn}
            self._runners[name] = runner  # registered before it starts, so Stop can always reach it
        runner.start()
        return {"TrainingJobArn": job_arn}

    def describe_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return require(self.ctx.store.get(TRAINING_JOB, params["TrainingJobName"]), NOT_FOUND)

    def list_training_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        jobs = self.ctx.store.list(TRAINING_JOB)
        if (after := params.get("LastModifiedTimeAfter")) is not None:
            jobs = [j for j in jobs if j["LastModifiedTime"] > float(after)]
        if (before := params.get("LastModifiedTimeBefore")) is not None:
            jobs = [j for j in jobs if j["LastModifiedTime"] < float(before)]
        if params.get("WarmPoolStatusEquals") or params.get("TrainingPlanArnEquals"):
            jobs = []  # no local job has a warm pool or a training plan
        return list_page(
            jobs,
            params,
            result_key="TrainingJobSummaries",
            name_key="TrainingJobName",
            status_key="TrainingJobStatus",
            summarize=lambda j: pick(
                j,
                "TrainingJobName",
                "TrainingJobArn",
                "CreationTime",
                "TrainingEndTime",
                "LastModifiedTime",
                "TrainingJobStatus",
                "SecondaryStatus",
            ),
        )

    def stop_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        self.begin_stop(params["TrainingJobName"], "Stopped", "Stopping the training job at the user's request")
        return {}

    # --- lifecycle -----------------------------------------------------------------------
    def recover(self) -> None:
        """A previous server died with jobs running: kill their orphaned processes, fail the jobs."""
        for record in self.ctx.store.list(TRAINING_PROCESS):
            if kill_orphan(record["pid"], record.get("start_ticks")):
                log.warning("killed orphaned training process %s of %s", record["pid"], record["TrainingJobName"])
            self.ctx.store.delete(TRAINING_PROCESS, record["TrainingJobName"])
        for description in self.ctx.store.list(TRAINING_JOB):
            if description["TrainingJobStatus"] in ACTIVE_STATUSES:
                self.finish(description["TrainingJobName"], Outcome(FAILED, RESTART_REASON))

    def shutdown(self) -> None:
        """The server is stopping: terminate running jobs and fail them, saying why."""
        with self.ctx.lock:
            runners, self._runners = dict(self._runners), {}
        for runner in runners.values():
            runner.abort(SHUTDOWN_GRACE_S)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S + 2
        for name, runner in runners.items():
            if runner.join(max(0.0, deadline - time.monotonic())):
                self.ctx.store.delete(TRAINING_PROCESS, name)
            # else the process record stays, and the next recover() kills what is left
            self.finish(name, Outcome(FAILED, SHUTDOWN_REASON))

    # --- status machine ------------------------------------------------------------------
    def _new_description(self, params: dict[str, Any], job_arn: str) -> dict[str, Any]:
        created = now()
        description = {k: v for k, v in params.items() if k in _DESCRIBED_MEMBERS}
        stopping = dict(description.get("StoppingCondition") or {})
        stopping.setdefault("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_S)
        for flag in ("EnableNetworkIsolation", "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining"):
            description.setdefault(flag, False)
        output_path = params["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        # SageMaker describes an unencrypted output with KmsKeyId "" (the SDK v2's attach() reads it).
        output_config = {"KmsKeyId": ""} | params["OutputDataConfig"]
        return description | {
            "TrainingJobArn": job_arn,
            "OutputDataConfig": output_config,
            "StoppingCondition": stopping,
            # Required in every Describe; it names where the artifacts will be written.
            "ModelArtifacts": {"S3ModelArtifacts": f"{output_path}/{params['TrainingJobName']}/output/model.tar.gz"},
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Starting",
            "CreationTime": created,
            "LastModifiedTime": created,
            "SecondaryStatusTransitions": [
                {"Status": "Starting", "StartTime": created, "StatusMessage": "Launching requested ML instances"}
            ],
        }

    def _runner(self, description: dict[str, Any]) -> TrainingRunner:
        name = description["TrainingJobName"]
        algorithm = description["AlgorithmSpecification"]
        image = algorithm.get("TrainingImage") or algorithm.get("AlgorithmName") or ""
        framework = images.resolve(image, "training", self.ctx.pytorch_python)
        resources = description["ResourceConfig"]
        if resources["InstanceCount"] > 1:
            log.warning(
                "training job %s asks for %d instances; the local cloud runs one", name, resources["InstanceCount"]
            )
        spec = TrainingSpec(
            job_name=name,
            job_arn=description["TrainingJobArn"],
            python=framework.python,
            base_dir=self.ctx.work_dir("training", name),
            s3_endpoint_url=self.ctx.ministack_url,
            output_path=description["OutputDataConfig"]["S3OutputPath"],
            instance_type=resources["InstanceType"],
            hyperparameters=dict(description.get("HyperParameters") or {}),
            channels=_channels(description),
            environment=dict(description.get("Environment") or {}),
            max_runtime_s=description["StoppingCondition"]["MaxRuntimeInSeconds"],
            entrypoint=tuple(algorithm.get("ContainerEntrypoint") or ()),
            arguments=tuple(algorithm.get("ContainerArguments") or ()),
        )
        return TrainingRunner(spec, self.ctx.client("s3"), self.ctx.client("logs"), _JobReporter(self, name))

    def _append_transition(
        self, description: dict[str, Any], secondary: str, message: str, *, terminal: bool = False
    ) -> float:
        moment = now()
        transitions = description["SecondaryStatusTransitions"]
        if transitions and "EndTime" not in transitions[-1]:
            transitions[-1]["EndTime"] = moment
        entry: dict[str, Any] = {"Status": secondary, "StartTime": moment, "StatusMessage": message}
        if terminal:
            entry["EndTime"] = moment
        transitions.append(entry)
        description["SecondaryStatus"] = secondary
        description["LastModifiedTime"] = moment
        return moment

    def record_step(self, name: str, secondary: str, message: str) -> None:
        with self.ctx.lock:
            description = self.ctx.store.get(TRAINING_JOB, name)
            if description is None or description["TrainingJobStatus"] != "InProgress":
                return  # a stop or failure already took over
            moment = self._append_transition(description, secondary, message)
            if secondary == "Downloading":
                description["TrainingStartTime"] = moment  # billing starts once the instance is ready
            self.ctx.store.put(TRAINING_JOB, name, description)

    def begin_stop(self, name: str, final_secondary: str, message: str) -> None:
        with self.ctx.lock:
            description = require(self.ctx.store.get(TRAINING_JOB, name), NOT_FOUND)
            status = description["TrainingJobStatus"]
            if status != "InProgress":
                raise ValidationException(f"The request was rejected because the training job is in status {status}.")
            self._stop_outcomes[name] = final_secondary
            description["TrainingJobStatus"] = "Stopping"
            self._append_transition(description, "Stopping", message)
            self.ctx.store.put(TRAINING_JOB, name, description)
            runner = self._runners.get(name)
        if runner is not None:
            runner.stop()

    def finish(self, name: str, outcome: Outcome) -> None:
        with self.ctx.lock:
            self._runners.pop(name, None)
            final_secondary = self._stop_outcomes.pop(name, "Stopped")
            description = self.ctx.store.get(TRAINING_JOB, name)
            if description is None or description["TrainingJobStatus"] not in ACTIVE_STATUSES:
                return
            secondary = outcome.status if outcome.status != "Stopped" else final_secondary
            moment = self._append_transition(description, secondary, TERMINAL_MESSAGES[secondary], terminal=True)
            description["TrainingJobStatus"] = outcome.status
            if outcome.model_artifacts:
                description["ModelArtifacts"] = {"S3ModelArtifacts": outcome.model_artifacts}
            if outcome.failure_reason:
                description["FailureReason"] = outcome.failure_reason[:FAILURE_REASON_MAX]
            if outcome.status == COMPLETED:
                description.setdefault("TrainingStartTime", description["CreationTime"])
            if "TrainingStartTime" in description:
                seconds = max(1, round(moment - description["TrainingStartTime"]))
                description["TrainingEndTime"] = moment
                description["TrainingTimeInSeconds"] = seconds
                description["BillableTimeInSeconds"] = seconds * description["ResourceConfig"]["InstanceCount"]
            self.ctx.store.put(TRAINING_JOB, name, description)
        log.info("training job %s: %s %s", name, outcome.status, outcome.failure_reason or "")
