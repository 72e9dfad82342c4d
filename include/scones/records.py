"""The records that the DAGs, their tasks and the tools exchange: each defined once, typed, with a JSON round trip.

| Record | Written by | Read by |
|---|---|---|
| `RunPlan` | the training DAG's `plan` | every later task of that DAG |
| `EvaluationResult` | `evaluate` | `register_candidate`, `gate`, the review |
| `CandidateMetadata` | `register_candidate`, as the version's `CustomerMetadataProperties` | `DeploymentRecord` |
| `DeploymentRecord` | read from the Model Registry: the version behind the endpoint (`registry.live_deployment`) | |
| | the gate (champion), the workflow DAG, the monitoring report, `make demo`, the load generator | |
| `WorkflowPlan` | the workflow DAG's `plan` | every later task of that DAG |
| `BatchRequest` | the batch DAG's `plan`: the batch state machine's input | the machine, `collect_batch_results` |
| `BatchPlan` | the batch DAG's `plan` | `start_batch` |
| `BatchSummary` | `collect_batch_results`: the output, `<batch_prefix>/latest.json` | the batch DAG, the report |

XCom carries them as JSON-ready dicts (`to_xcom`, `from_xcom`), the registry as string properties
(`to_properties`, `from_properties`). Reading checks every field's type, so a renamed, missing or mistyped field
fails where it is read, with its name, instead of as a `KeyError` deep inside the other DAG. Metadata read from
the registry ignores properties it does not know, so a version written by a newer release stays readable.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from include.scones.params import TrainingParams


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_xcom(cls, data: Any) -> Self:
        return cls.model_validate(data)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        return cls.model_validate_json(text)


class RunPlan(Record):
    """What a training run decides up front: every resource's name, the images, and the validated Params."""

    name: str
    bucket: str
    region: str
    role_arn: str
    training_image: str
    inference_image: str
    endpoint_name: str
    model_output_uri: str  # s3://bucket/models/
    capture_uri: str
    model_package_group: str
    params: TrainingParams

    @property
    def transform_job_name(self) -> str:
        return f"{self.name}-eval"

    @property
    def serving_model_name(self) -> str:
        """The model the endpoint serves, made from the approved version (the run's own model is the evaluated
        artifact, which the batch transform scores)."""
        return f"{self.name}-serving"

    def evaluation_output_uri(self, training_job_name: str) -> str:
        return f"{self.model_output_uri}{training_job_name}/evaluation/"


class EvaluationResult(Record):
    """The candidate's scores on the test split; the whole evaluation is at `evaluation_uri`."""

    training_job_name: str
    data_uri: str
    evaluation_uri: str
    accuracy: float
    pass_share_at_threshold: float
    accuracy_among_passed: float | None  # None when no test image clears the threshold


class CandidateMetadata(Record):
    """What a registered version carries besides its metrics file: its run, data and scores. The registry stores
    string properties whose values may hold only letters, digits, spaces and `_.:/=+-@` (AWS's pattern): strings
    as they are, the classes space-separated (CIFAR names have none), numbers and None as JSON."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_name: str
    training_job_name: str
    data_uri: str
    evaluation_uri: str
    classes: tuple[str, ...]
    confidence_threshold: float
    accuracy: float
    pass_share_at_threshold: float
    accuracy_among_passed: float | None

    @classmethod
    def of(cls, plan: RunPlan, result: EvaluationResult) -> CandidateMetadata:
        return cls(
            run_name=plan.name,
            classes=plan.params.classes,
            confidence_threshold=plan.params.confidence_threshold,
            **result.model_dump(),
        )

    def to_properties(self) -> dict[str, str]:
        def text(value: Any) -> str:
            if isinstance(value, str):
                return value
            return " ".join(value) if isinstance(value, list) else json.dumps(value)

        return {name: text(value) for name, value in self.model_dump(mode="json").items()}

    @classmethod
    def from_properties(cls, properties: dict[str, str]) -> Self:
        def value(name: str, text: str) -> Any:
            annotation = cls.model_fields[name].annotation
            if annotation is str:
                return text
            return tuple(text.split()) if annotation == tuple[str, ...] else json.loads(text)

        return cls.model_validate({n: value(n, t) for n, t in properties.items() if n in cls.model_fields})


class DeploymentRecord(Record):
    """The live model: the registered version behind the endpoint. The next gate's champion and the monitoring
    report's baseline."""

    endpoint_name: str
    endpoint_config_name: str
    model_name: str
    model_package_arn: str
    model_package_version: int
    run_name: str
    training_job_name: str
    accuracy: float
    pass_share_at_threshold: float
    accuracy_among_passed: float | None
    evaluation_uri: str
    data_uri: str
    classes: tuple[str, ...]
    confidence_threshold: float
    deployed_at: datetime  # the endpoint's LastModifiedTime: its last update, a rolled-back one included

    @property
    def version_label(self) -> str:
        """`v3 (scones-20261201-101500-1a2b3c4d)`: how logs and the review name a version."""
        return f"v{self.model_package_version} ({self.run_name})"


class WorkflowPlan(Record):
    """What a workflow run works on: the live deployment, the bucket and the roles the Lambdas and Step Functions
    assume."""

    deployment: DeploymentRecord
    bucket: str
    lambda_role_arn: str
    states_role_arn: str


class BatchRequest(Record):
    """The batch state machine's input: classify every object under s3://s3_bucket/prefix, and write the results
    under results_prefix (and the summary to latest_key too). Its fields are collect_batch_results's event."""

    s3_bucket: str
    prefix: str
    results_prefix: str  # <batch_prefix>/<execution name>
    latest_key: str  # <batch_prefix>/latest.json
    classes: tuple[str, ...]


class BatchSummary(Record):
    """What collect_batch_results returns and stores: the counts of one batch run and where its results are."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # a newer Lambda may add fields

    s3_bucket: str
    prefix: str
    results_key: str  # a line per image: {s3_key, status, label, confidence, inferences[, error, cause]}
    map_run_arn: str
    finished_at: datetime
    images: int
    routed: int
    not_routed: int
    errors: int
    routed_by_label: dict[str, int]

    @property
    def results_uri(self) -> str:
        return f"s3://{self.s3_bucket}/{self.results_key}"

    @property
    def routed_share(self) -> float | None:
        return self.routed / self.images if self.images else None


class BatchPlan(Record):
    """What a batch run works on: the batch machine, the execution's name (from the run id, so a retry finds the
    execution its first try started) and the machine's input."""

    machine_arn: str
    execution_name: str
    request: BatchRequest
