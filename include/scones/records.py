"""The records that the DAGs, their tasks and the tools exchange: each defined once, typed, with a JSON round trip.

| Record | Written by | Read by |
|---|---|---|
| `RunPlan` | the training DAG's `plan` | every later task of that DAG |
| `EvaluationResult` | `evaluate` | `gate`, `record_deployment` |
| `DeploymentRecord` | `record_deployment`, to S3 `registry/<endpoint>.json` | the next gate, the workflow DAG, |
| | | the monitoring report, `make demo`, the load generator |
| `WorkflowPlan` | the workflow DAG's `plan` | every later task of that DAG |

XCom carries them as JSON-ready dicts (`to_xcom`, `from_xcom`), S3 as JSON text (`to_json`, `from_json`).
Reading checks every field's type, so a renamed, missing or mistyped field fails where it is read, with its name,
instead of as a `KeyError` deep inside the other DAG. A record read from S3 ignores fields it does not know, so a
registry written by a newer version stays readable.
"""

from __future__ import annotations

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
    registry_key: str
    params: TrainingParams

    @property
    def transform_job_name(self) -> str:
        return f"{self.name}-eval"

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


class DeploymentRecord(Record):
    """The live model behind the endpoint: the next gate's champion and the monitoring report's baseline."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    endpoint_name: str
    endpoint_config_name: str
    model_name: str
    training_job_name: str
    accuracy: float
    pass_share_at_threshold: float
    accuracy_among_passed: float | None
    evaluation_uri: str
    data_uri: str
    classes: tuple[str, ...]
    confidence_threshold: float
    deployed_at: datetime

    @classmethod
    def of(cls, plan: RunPlan, result: EvaluationResult, deployed_at: datetime) -> DeploymentRecord:
        return cls(
            endpoint_name=plan.endpoint_name,
            endpoint_config_name=plan.name,
            model_name=plan.name,
            training_job_name=result.training_job_name,
            accuracy=result.accuracy,
            pass_share_at_threshold=result.pass_share_at_threshold,
            accuracy_among_passed=result.accuracy_among_passed,
            evaluation_uri=result.evaluation_uri,
            data_uri=result.data_uri,
            classes=plan.params.classes,
            confidence_threshold=plan.params.confidence_threshold,
            deployed_at=deployed_at,
        )


class WorkflowPlan(Record):
    """What a workflow run works on: the live deployment, the bucket and the roles the Lambdas and Step Functions
    assume."""

    deployment: DeploymentRecord
    bucket: str
    lambda_role_arn: str
    states_role_arn: str


def read_deployment(hook: Any, bucket: str, key: str) -> DeploymentRecord | None:
    """The registry entry through an S3Hook, or None when nothing was ever deployed."""
    if not hook.check_for_key(key, bucket_name=bucket):
        return None
    return DeploymentRecord.from_json(hook.read_key(key, bucket_name=bucket))
