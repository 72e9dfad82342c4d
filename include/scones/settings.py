"""Project settings: one place that reads environment variables and Airflow Variables, with defaults.

Precedence for every setting: an Airflow Variable of the same name, then the environment variable, then the
default. Airflow is not imported here: DAG tasks pass a `variables` lookup (see `load`), so parsing a DAG file
never touches the metadata database, and unit tests pass a dict.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

OFFICIAL_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
OFFICIAL_CIFAR_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

# (setting, variable name, default). Defaults work unchanged on the local cloud; on AWS set at least SCONES_BUCKET.
_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("cifar_url", "SCONES_CIFAR_URL", OFFICIAL_CIFAR_URL),
    ("cifar_md5", "SCONES_CIFAR_MD5", OFFICIAL_CIFAR_MD5),
    ("cache_dir", "SCONES_CACHE_DIR", str(Path.home() / ".cache" / "scones-unlimited")),
    ("bucket", "SCONES_BUCKET", "scones-unlimited"),
    ("data_prefix", "SCONES_DATA_PREFIX", "datasets/cifar100"),
    ("model_prefix", "SCONES_MODEL_PREFIX", "models"),
    ("code_prefix", "SCONES_CODE_PREFIX", "code"),
    ("capture_prefix", "SCONES_CAPTURE_PREFIX", "data_capture"),
    ("registry_prefix", "SCONES_REGISTRY_PREFIX", "registry"),
    ("endpoint_name", "SCONES_ENDPOINT_NAME", "scones-vehicle-classifier"),
    ("sagemaker_role", "SCONES_SAGEMAKER_ROLE", "scones-sagemaker-execution"),
    ("training_image", "SCONES_TRAINING_IMAGE", ""),
    ("inference_image", "SCONES_INFERENCE_IMAGE", ""),
    ("lambda_role", "SCONES_LAMBDA_ROLE", "scones-lambda-execution"),
    ("states_role", "SCONES_STATES_ROLE", "scones-states-execution"),
    ("smoke_executions", "SCONES_SMOKE_EXECUTIONS", "6"),
    ("alert_low_confidence_share", "SCONES_ALERT_LOW_CONFIDENCE_SHARE", "0.5"),
    ("alert_psi", "SCONES_ALERT_PSI", "0.25"),
    ("alert_min_records", "SCONES_ALERT_MIN_RECORDS", "50"),
    ("report_lag_minutes", "SCONES_REPORT_LAG_MINUTES", "15"),
    ("pytorch_version", "SCONES_PYTORCH_VERSION", "2.5.1"),
    ("python_version", "SCONES_PYTHON_VERSION", "py311"),
)


@dataclass(frozen=True)
class Settings:
    cifar_url: str
    cifar_md5: str
    cache_dir: str
    bucket: str
    data_prefix: str
    model_prefix: str
    code_prefix: str
    capture_prefix: str
    registry_prefix: str
    endpoint_name: str
    # A role name (resolved against the caller's account) or a full role ARN.
    sagemaker_role: str
    # Empty means "the AWS Deep Learning Container for the connection's region" (see include/scones/images.py).
    training_image: str
    inference_image: str
    # The inference workflow: roles (names or ARNs), smoke executions per run, monitoring alert limits.
    lambda_role: str
    states_role: str
    smoke_executions: str
    alert_low_confidence_share: str
    alert_psi: str
    alert_min_records: str
    # AWS delivers capture files minutes late: the report stops this long before now (the local cloud: seconds).
    report_lag_minutes: str
    pytorch_version: str
    python_version: str

    @property
    def capture_uri(self) -> str:
        return f"s3://{self.bucket}/{self.capture_prefix}"

    @property
    def registry_key(self) -> str:
        """The deployment registry entry: the live model, its accuracy and evaluation (gate and monitoring)."""
        return f"{self.registry_prefix}/{self.endpoint_name}.json"

    def role_arn(self, account_id: str, role: str | None = None) -> str:
        """A role setting (name or ARN) as an ARN; the SageMaker execution role by default."""
        role = self.sagemaker_role if role is None else role
        return role if role.startswith("arn:") else f"arn:aws:iam::{account_id}:role/{role}"


VARIABLE_NAMES = tuple(name for _, name, _ in _SETTINGS)


def load(
    env: Mapping[str, str] | None = None,
    variables: Callable[[str], str | None] | Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings. `variables` is Airflow's Variable lookup (or a dict in tests)."""
    env = os.environ if env is None else env
    if variables is None:
        lookup: Callable[[str], str | None] = lambda _name: None  # noqa: E731
    elif isinstance(variables, Mapping):
        lookup = variables.get
    else:
        lookup = variables
    values: dict[str, str] = {}
    for attribute, name, default in _SETTINGS:
        value = lookup(name)
        if value in (None, ""):
            value = env.get(name) or default
        values[attribute] = str(value).strip()
    assert {f.name for f in fields(Settings)} == set(values)
    return Settings(**values)


def parse_time_setting(name: str, default: str) -> str:
    """Settings needed while the DAG file is parsed (schedule, connection id): environment only, never Variables."""
    return os.environ.get(name) or default


AWS_CONN_ID_VARIABLE = "SCONES_AWS_CONN_ID"
# How often operators and waiters poll SageMaker; tests and the demo lower it.
POLL_SECONDS_VARIABLE = "SCONES_POLL_SECONDS"
# The Airflow Asset the training DAG updates after each deploy; the workflow DAG is scheduled on it.
ENDPOINT_ASSET_NAME = "scones_vehicle_classifier_endpoint"
