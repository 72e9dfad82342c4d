"""Project settings: one typed model, read from Airflow Variables and environment variables, checked once.

Precedence for every setting: an Airflow Variable of the same name, then the environment variable, then the
default; an empty value counts as unset, and values are stripped. Each field's variable is `SCONES_` plus its
name in capitals. Values are converted and checked when the settings are loaded, so a task never parses a
string itself, and a wrong value fails with the variable's name ("SCONES_SMOKE_EXECUTIONS: Input should be a
valid integer").

Airflow is not imported here: tasks pass a `variables` lookup (see `load`), so parsing a DAG file never touches the
metadata database, and unit tests pass a dict. The few settings a DAG file needs while it is parsed (connection
id, schedules, poll interval) come from the environment only (`parse_time`), never from Variables.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

OFFICIAL_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
OFFICIAL_CIFAR_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
PREFIX = "SCONES_"

Lookup = Callable[[str], Any]


class InvalidSettings(ValueError):
    pass


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def variable_names(cls) -> tuple[str, ...]:
        return tuple(variable_name(name) for name in cls.model_fields)

    @classmethod
    def from_lookups(cls, *lookups: Lookup) -> Any:
        """The first non-empty value of each field's variable over `lookups`, in order; then the default."""
        values: dict[str, str] = {}
        for name in cls.model_fields:
            for lookup in lookups:
                value = lookup(variable_name(name))
                if value is not None and str(value).strip():
                    values[name] = str(value).strip()
                    break
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{variable_name(str(error['loc'][0]))}: {error['msg']} (got {error['input']!r})"
                for error in exc.errors()
            )
            raise InvalidSettings(problems) from None


def variable_name(field: str) -> str:
    return PREFIX + field.upper()


class Settings(_Model):
    """Defaults work unchanged on the local cloud; on AWS set at least SCONES_BUCKET."""

    cifar_url: str = OFFICIAL_CIFAR_URL
    cifar_md5: str = OFFICIAL_CIFAR_MD5
    cache_dir: str = str(Path.home() / ".cache" / "scones-unlimited")
    bucket: str = "scones-unlimited"
    data_prefix: str = "datasets/cifar100"
    model_prefix: str = "models"
    code_prefix: str = "code"
    capture_prefix: str = "data_capture"
    # Batch classification's results: <batch_prefix>/<run>/results.jsonl, and <batch_prefix>/latest.json.
    batch_prefix: str = "batch"
    endpoint_name: str = "scones-vehicle-classifier"
    # The Model Registry group every evaluated candidate is registered in (one version per training run), and how
    # many of its newest versions pruning keeps besides the live one (include/scones/registry.py).
    model_package_group: str = "scones-vehicle-classifier"
    registry_keep_last: int = Field(5, ge=1)
    # The rollout's model-latency alarm: ModelLatency above this average over a minute rolls an update back.
    latency_alarm_ms: float = Field(1000.0, gt=0)
    # A role name (resolved against the caller's account) or a full role ARN.
    sagemaker_role: str = "scones-sagemaker-execution"
    # Empty means "the AWS Deep Learning Container for the connection's region" (see include/scones/images.py).
    training_image: str = ""
    inference_image: str = ""
    # The inference workflow: roles (names or ARNs), smoke executions per run, monitoring alert limits.
    lambda_role: str = "scones-lambda-execution"
    states_role: str = "scones-states-execution"
    smoke_executions: int = Field(6, ge=1)
    alert_low_confidence_share: float = Field(0.5, ge=0, le=1)
    alert_psi: float = Field(0.25, ge=0)
    alert_min_records: int = Field(50, ge=0)
    # Input drift: the PSI limit of each image statistic against the training images (monitoring/live.py).
    alert_image_psi: float = Field(0.25, ge=0)
    # The labelling loop (issue #18): how many filtered inferences each report queues for review, how far back
    # the report merges people's labels with captures, and whether an alert requests a retraining run (Asset
    # scones_retraining_requested, which the training DAG is scheduled on besides its timetable).
    review_queue_per_report: int = Field(200, ge=0)
    label_lookback_hours: float = Field(24.0, gt=0)
    retrain_on_alert: bool = True
    # AWS delivers capture files minutes late: the report stops this long before now (the local cloud: seconds).
    report_lag_minutes: float = Field(15.0, ge=0)
    pytorch_version: str = "2.5.1"
    python_version: str = "py311"

    @property
    def capture_uri(self) -> str:
        return f"s3://{self.bucket}/{self.capture_prefix}"

    def role_arn(self, account_id: str, role: str | None = None) -> str:
        """A role setting (name or ARN) as an ARN; the SageMaker execution role by default."""
        role = self.sagemaker_role if role is None else role
        return role if role.startswith("arn:") else f"arn:aws:iam::{account_id}:role/{role}"


class ParseTimeSettings(_Model):
    """What a DAG file needs while it is parsed: from the environment only (a Variable would cost a database query
    at every parse)."""

    aws_conn_id: str = "aws_default"
    # How often operators, sensors and waiters poll SageMaker and Step Functions; tests and the demo lower it.
    poll_seconds: int = Field(30, ge=1)
    training_schedule: str = "@weekly"
    workflow_schedule: str = "@hourly"
    # approval=manual: how long the review waits for a person; then the version is rejected (the run succeeds).
    review_timeout_hours: float = Field(24.0, gt=0)
    # The rollout's default bake time (the bake_seconds Param); the demo and tests lower it.
    rollout_bake_seconds: int = Field(300, ge=0, le=3600)


VARIABLE_NAMES = Settings.variable_names()


def load(env: Mapping[str, str] | None = None, variables: Lookup | Mapping[str, str] | None = None) -> Settings:
    """The settings. `variables` is Airflow's Variable lookup (or a dict in tests); `env` defaults to os.environ."""
    env = os.environ if env is None else env
    if variables is None:
        lookup: Lookup = lambda _name: None  # noqa: E731
    elif isinstance(variables, Mapping):
        lookup = variables.get
    else:
        lookup = variables
    settings: Settings = Settings.from_lookups(lookup, env.get)
    return settings


def parse_time(env: Mapping[str, str] | None = None) -> ParseTimeSettings:
    settings: ParseTimeSettings = ParseTimeSettings.from_lookups((os.environ if env is None else env).get)
    return settings


AWS_CONN_ID_VARIABLE = variable_name("aws_conn_id")
POLL_SECONDS_VARIABLE = variable_name("poll_seconds")
# The Airflow Asset the training DAG updates after each deploy; the workflow DAG is scheduled on it.
ENDPOINT_ASSET_NAME = "scones_vehicle_classifier_endpoint"
# The Asset a monitoring alert updates (SCONES_RETRAIN_ON_ALERT); the training DAG is scheduled on it too.
RETRAINING_ASSET_NAME = "scones_retraining_requested"
