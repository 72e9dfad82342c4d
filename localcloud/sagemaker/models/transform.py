"""Batch transform jobs: Create/Describe/List/Stop and their status machine
InProgress -> Completed | Failed | Stopping -> Stopped.

The work itself (model server, inputs, outputs) is runners/transform.py, run on one thread per job;
this module validates requests, keeps the durable description (stored exactly as
DescribeTransformJob returns it) and turns the runner's outcome into the job's status. The one
value Describe does not return, LastModifiedTime (ListTransformJobs shows it), is kept apart under
TRANSFORM_JOB_MODIFIED."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from localcloud.sagemaker import validation
from localcloud.sagemaker.exceptions import ResourceInUse, ValidationException
from localcloud.sagemaker.models.base import Context, Operation, arn, list_page, now, pick
from localcloud.sagemaker.models.registry import ModelRegistry
from localcloud.sagemaker.runners import images
from localcloud.sagemaker.runners.artifacts import parse_s3_uri
from localcloud.sagemaker.runners.transform import (
    MAX_REASON_CHARS,
    MB,
    TransformFailed,
    TransformSettings,
    TransformSpec,
    TransformStopped,
    discard_model_copy,
    run_transform,
)

log = logging.getLogger(__name__)

TRANSFORM_JOB = "transform-job"
TRANSFORM_JOB_MODIFIED = "transform-job-modified"
ACTIVE_STATUSES = ("InProgress", "Stopping")
SHUTDOWN_GRACE_S = 10.0  # the launcher SIGKILLs the server 30 s after asking it to stop
DEFAULT_INVOCATION_TIMEOUT_S = 600  # ModelClientConfig.InvocationsTimeoutInSeconds default
DEFAULT_MAX_PAYLOAD_MB = 6

RESTART_REASON = (
    "The local SageMaker restarted while this job was running; its work was lost. Retry with a new job name."
)
SHUTDOWN_REASON = "The local SageMaker was stopped while this job was running. Retry with a new job name."

_DESCRIBED_MEMBERS = frozenset(validation.service_model().operation_model("DescribeTransformJob").output_shape.members)
_SUMMARY_MEMBERS = (
    "TransformJobName",
    "TransformJobArn",
    "CreationTime",
    "TransformEndTime",
    "LastModifiedTime",
    "TransformJobStatus",
    "FailureReason",
)


def job_not_found(name: str) -> ValidationException:
    return ValidationException(f"Could not find requested job with name {name}")


def _duplicate(job_arn: str) -> ResourceInUse:
    return ResourceInUse(
        "Transform job names must be unique within an AWS account and region, and a transform job with this "
        f"name already exists ({job_arn})"
    )


def _refuse_unsupported(params: dict[str, Any]) -> None:
    """Features the local cloud cannot honour are refused up front, never silently ignored."""
    source = params["TransformInput"]["DataSource"]["S3DataSource"]
    problems = []
    if source["S3DataType"] not in ("S3Prefix", "ManifestFile"):
        problems.append(f"S3DataType {source['S3DataType']} (use S3Prefix or ManifestFile)")
    if params["TransformInput"].get("SplitType", "None") not in ("None", "Line"):
        problems.append(f"SplitType {params['TransformInput']['SplitType']} (use None or Line)")
    processing = params.get("DataProcessing") or {}
    if processing.get("InputFilter", "$") != "$" or processing.get("OutputFilter", "$") != "$":
        problems.append("DataProcessing InputFilter/OutputFilter")
    if processing.get("JoinSource", "None") != "None":
        problems.append("DataProcessing JoinSource")
    if params.get("DataCaptureConfig"):
        problems.append("DataCaptureConfig for transform jobs")
    if problems:
        raise ValidationException("The local cloud does not support " + "; ".join(problems) + ".")


def _settings(description: dict[str, Any]) -> TransformSettings:
    transform_input, transform_output = description["TransformInput"], description["TransformOutput"]
    client = description.get("ModelClientConfig") or {}
    return TransformSettings(
        content_type=transform_input.get("ContentType") or "application/octet-stream",
        accept=transform_output.get("Accept") or "application/json",
        split_type=transform_input.get("SplitType", "None"),
        batch_strategy=description.get("BatchStrategy", "MultiRecord"),
        assemble_with=transform_output.get("AssembleWith", "None"),
        compression=transform_input.get("CompressionType", "None"),
        # MaxPayloadInMB 0 means "no limit" to AWS (for streaming); the runtime's limit still applies.
        max_payload_bytes=(description.get("MaxPayloadInMB") or DEFAULT_MAX_PAYLOAD_MB) * MB,
        max_concurrent=description.get("MaxConcurrentTransforms") or 1,
        invocation_timeout_s=float(client.get("InvocationsTimeoutInSeconds") or DEFAULT_INVOCATION_TIMEOUT_S),
    )


@dataclass
class _Run:
    spec: TransformSpec
    thread: threading.Thread
    shutting_down: bool = False  # a server shutdown, not StopTransformJob, asked the job to stop


class TransformJobs:
    def __init__(self, ctx: Context, registry: ModelRegistry) -> None:
        self.ctx = ctx
        self.registry = registry
        self._runs: dict[str, _Run] = {}

    def operations(self) -> dict[str, Operation]:
        return {
            "CreateTransformJob": self.create_transform_job,
            "DescribeTransformJob": self.describe_transform_job,
            "ListTransformJobs": self.list_transform_jobs,
            "StopTransformJob": self.stop_transform_job,
        }

    # --- operations ----------------------------------------------------------------------
    def create_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TransformJobName"]
        _refuse_unsupported(params)
        job_arn = arn("transform-job", name)
        with self.ctx.lock:
            if self.ctx.store.get(TRANSFORM_JOB, name) is not None:
                raise _duplicate(job_arn)
            model = self.registry.get_model(params["ModelName"])
        self._require_input_objects(params, model)
        created = now()
        description = {k: v for k, v in params.items() if k in _DESCRIBED_MEMBERS} | {
            "TransformJobArn": job_arn,
            "TransformJobStatus": "InProgress",
            "CreationTime": created,
        }
        with self.ctx.lock:
            if self.ctx.store.get(TRANSFORM_JOB, name) is not None:  # a concurrent create won the name
                raise _duplicate(job_arn)
            self._save(description, created)
            try:
                spec = self._spec(description, model)
            except (images.UnsupportedImage, TransformFailed) as error:
                # Created, then failed with the reason: an unrunnable job must never look like it ran.
                self._finish(name, "Failed", getattr(error, "reason", None) or str(error))
                return {"TransformJobArn": job_arn}
            thread = threading.Thread(target=self._run, args=(name,), name=f"transform-{name}", daemon=True)
            self._runs[name] = _Run(spec, thread)  # registered before it starts, so Stop can always reach it
        thread.start()
        return {"TransformJobArn": job_arn}

    def describe_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        found = self.ctx.store.get(TRANSFORM_JOB, params["TransformJobName"])
        if found is None:
            raise job_not_found(params["TransformJobName"])
        return found

    def list_transform_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        modified = {m["TransformJobName"]: m["LastModifiedTime"] for m in self.ctx.store.list(TRANSFORM_JOB_MODIFIED)}
        jobs = [
            j | {"LastModifiedTime": modified.get(j["TransformJobName"], j["CreationTime"])}
            for j in self.ctx.store.list(TRANSFORM_JOB)
        ]
        if (after := params.get("LastModifiedTimeAfter")) is not None:
            jobs = [j for j in jobs if j["LastModifiedTime"] > float(after)]
        if (before := params.get("LastModifiedTimeBefore")) is not None:
            jobs = [j for j in jobs if j["LastModifiedTime"] < float(before)]
        return list_page(
            jobs,
            params,
            result_key="TransformJobSummaries",
            name_key="TransformJobName",
            status_key="TransformJobStatus",
            summarize=lambda j: pick(j, *_SUMMARY_MEMBERS),
        )

    def stop_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TransformJobName"]
        with self.ctx.lock:
            description = self.describe_transform_job(params)
            status = description["TransformJobStatus"]
            if status == "Stopping":
                return {}
            if status != "InProgress":
                raise ValidationException(f"The request was rejected because the transform job is in status {status}.")
            description["TransformJobStatus"] = "Stopping"
            self._save(description, now())
            run = self._runs.get(name)
        if run is not None:
            run.spec.stop_event.set()
        else:  # no thread is working on it (cannot normally happen): nothing to wait for
            self._finish(name, "Stopped")
        return {}

    # --- lifecycle -----------------------------------------------------------------------
    def recover(self) -> None:
        """A previous server died with jobs running: their threads and model servers are gone."""
        for description in self.ctx.store.list(TRANSFORM_JOB):
            name = description["TransformJobName"]
            if description["TransformJobStatus"] not in ACTIVE_STATUSES:
                continue
            if description["TransformJobStatus"] == "InProgress":
                self._finish(name, "Failed", RESTART_REASON)
            else:
                self._finish(name, "Stopped")
            discard_model_copy(self.ctx.home / "transform" / name)

    def shutdown(self) -> None:
        """The server is stopping: let in-flight requests finish, then fail the jobs, saying why."""
        with self.ctx.lock:
            runs = dict(self._runs)
            for run in runs.values():
                run.shutting_down = True
                run.spec.stop_event.set()
        for run in runs.values():
            run.thread.join(SHUTDOWN_GRACE_S)
        for name in runs:
            self._finish(name, "Failed", SHUTDOWN_REASON)  # a no-op for jobs that already finished

    # --- the job -------------------------------------------------------------------------
    def _require_input_objects(self, params: dict[str, Any], model: dict[str, Any]) -> None:
        """AWS refuses a transform job whose S3 prefix holds no objects, at Create."""
        source = params["TransformInput"]["DataSource"]["S3DataSource"]
        if source["S3DataType"] != "S3Prefix":
            return
        uri = source["S3Uri"]
        try:
            bucket, prefix = parse_s3_uri(uri)
            found = self.ctx.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0)
        except Exception:  # a missing bucket reads the same to the caller
            bucket, found = uri, 0
        if not found:
            role = model.get("ExecutionRoleArn", "")
            raise ValidationException(
                f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that the bucket '
                f"exists in the selected region ({self.ctx.client('s3').meta.region_name}), that objects exist under "
                f'that S3 prefix, and that the role "{role}" has "s3:ListBucket" permissions on bucket "{bucket}".'
            )

    def _spec(self, description: dict[str, Any], model: dict[str, Any]) -> TransformSpec:
        container = self.registry.primary_container(model)
        framework = images.resolve(container.get("Image", ""), "inference", self.ctx.pytorch_python)
        if not container.get("ModelDataUrl"):
            raise TransformFailed(f"ClientError: Model {model['ModelName']} has no ModelDataUrl to serve.")
        name = description["TransformJobName"]
        return TransformSpec(
            job_name=name,
            python=framework.python,
            model_data_url=container["ModelDataUrl"],
            # The job's Environment is added to the model container's, as in SageMaker.
            environment=dict(container.get("Environment") or {}) | dict(description.get("Environment") or {}),
            data_source=description["TransformInput"]["DataSource"]["S3DataSource"],
            output_path=description["TransformOutput"]["S3OutputPath"],
            settings=_settings(description),
            work_dir=self.ctx.work_dir("transform", name),
        )

    def _run(self, name: str) -> None:
        run = self._runs[name]
        self._mark_started(name)
        status, reason = "Completed", None
        try:
            run_transform(self.ctx.client("s3"), self.ctx.client("logs"), run.spec)
        except TransformStopped:
            status, reason = ("Failed", SHUTDOWN_REASON) if run.shutting_down else ("Stopped", None)
        except TransformFailed as failure:
            status, reason = "Failed", failure.reason
        except Exception as error:  # a bug or an S3 outage must still end the job, with a reason
            log.exception("transform job %s crashed", name)
            status, reason = "Failed", f"InternalServerError: {error}"
        with self.ctx.lock:
            self._runs.pop(name, None)
            self._finish(name, status, reason)

    def _mark_started(self, name: str) -> None:
        with self.ctx.lock:
            description = self.ctx.store.get(TRANSFORM_JOB, name)
            if description is not None and description["TransformJobStatus"] in ACTIVE_STATUSES:
                description["TransformStartTime"] = now()
                self._save(description, description["TransformStartTime"])

    def _finish(self, name: str, status: str, reason: str | None = None) -> None:
        with self.ctx.lock:
            description = self.ctx.store.get(TRANSFORM_JOB, name)
            if description is None or description["TransformJobStatus"] not in ACTIVE_STATUSES:
                return
            moment = now()
            description["TransformJobStatus"] = status
            description["TransformEndTime"] = moment
            if reason:
                description["FailureReason"] = reason[:MAX_REASON_CHARS]
            self._save(description, moment)
        log.info("transform job %s: %s %s", name, status, reason or "")

    def _save(self, description: dict[str, Any], modified: float) -> None:
        name = description["TransformJobName"]
        self.ctx.store.put(TRANSFORM_JOB, name, description)
        self.ctx.store.put(TRANSFORM_JOB_MODIFIED, name, {"TransformJobName": name, "LastModifiedTime": modified})
