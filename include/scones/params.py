"""The training DAG's run Params: one JSON schema per Param (what the Airflow UI form shows and validates), and
`validate`, which the first task runs again so a bad value fails before any AWS call, however the run started.

Model hyperparameter defaults equal `include/model/train.py`'s own defaults (a test keeps them in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from include.scones.cifar_labels import FINE_LABEL_NAMES

TRAINING_INSTANCE_TYPES = ("ml.m5.xlarge", "ml.m5.2xlarge", "ml.m5.4xlarge", "ml.c5.xlarge", "ml.c5.2xlarge")
INFERENCE_INSTANCE_TYPES = ("ml.t2.medium", "ml.m5.large", "ml.m5.xlarge", "ml.c5.large", "ml.c5.xlarge")

PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "classes": {
        "default": ["bicycle", "motorcycle"],
        "type": "array",
        "items": {"type": "string", "enum": FINE_LABEL_NAMES},
        "minItems": 2,
        "maxItems": 10,
        "uniqueItems": True,
        "title": "CIFAR-100 classes",
        "description": "Fine-label names to classify, in label order (label 0 first).",
    },
    "epochs": {"default": 120, "type": "integer", "minimum": 1, "maximum": 300, "title": "Epochs"},
    "learning_rate": {
        "default": 0.05,
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 1,
        "title": "Peak learning rate",
    },
    "batch_size": {"default": 64, "type": "integer", "minimum": 8, "maximum": 1024, "title": "Batch size"},
    "weight_decay": {"default": 0.0005, "type": "number", "minimum": 0, "maximum": 0.1, "title": "Weight decay"},
    "seed": {"default": 42, "type": "integer", "minimum": 0, "maximum": 2**31 - 1, "title": "Random seed"},
    "members": {
        "default": 2,
        "type": "integer",
        "minimum": 1,
        "maximum": 5,
        "title": "Ensemble members",
        "description": "Networks trained with seeds seed, seed+1, ...; the endpoint averages them (time scales).",
    },
    "training_instance_type": {
        "default": "ml.m5.xlarge",
        "type": "string",
        "enum": list(TRAINING_INSTANCE_TYPES),
        "title": "Training instance type (CPU)",
    },
    "inference_instance_type": {
        "default": "ml.m5.large",
        "type": "string",
        "enum": list(INFERENCE_INSTANCE_TYPES),
        "title": "Endpoint instance type",
    },
    "max_runtime_seconds": {
        "default": 3600,
        "type": "integer",
        "minimum": 300,
        "maximum": 86400,
        "title": "Training time limit (s)",
    },
    "min_accuracy": {
        "default": 0.9,
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "title": "Accuracy floor",
        "description": "Deploy only at or above this test accuracy, and only if not worse than the live model.",
    },
    "confidence_threshold": {
        "default": 0.93,
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "title": "Confidence threshold",
        "description": "The workflow's filter; evaluation reports the share passing it and their accuracy.",
    },
    "capture_percentage": {
        "default": 100,
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
        "title": "Data capture sampling (%)",
    },
}

HYPERPARAMETERS = ("epochs", "learning_rate", "batch_size", "weight_decay", "seed", "members")


class InvalidParams(ValueError):
    pass


@dataclass(frozen=True)
class TrainingParams:
    classes: tuple[str, ...]
    epochs: int
    learning_rate: float
    batch_size: int
    weight_decay: float
    seed: int
    members: int
    training_instance_type: str
    inference_instance_type: str
    max_runtime_seconds: int
    min_accuracy: float
    confidence_threshold: float
    capture_percentage: int

    def hyperparameters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HYPERPARAMETERS}


def defaults() -> dict[str, Any]:
    return {name: schema["default"] for name, schema in PARAM_SCHEMAS.items()}


def validate(params: Mapping[str, Any]) -> TrainingParams:
    """Check every Param against its schema; the error lists each bad Param with the reason."""
    values = defaults() | {k: v for k, v in params.items() if k in PARAM_SCHEMAS}
    problems = []
    for name, schema in PARAM_SCHEMAS.items():
        rules = {k: v for k, v in schema.items() if k not in ("default", "title", "description")}
        # JSON Schema treats True as an integer-compatible number; a Param of True is a mistake here.
        if isinstance(values[name], bool):
            problems.append(f"{name}: {values[name]!r} is not a {schema['type']}")
            continue
        # The UI form and JSON conf may send 60.0 for an integer; SageMaker and train.py need 60.
        if schema["type"] == "integer" and isinstance(values[name], float) and values[name].is_integer():
            values[name] = int(values[name])
        try:
            jsonschema.validate(values[name], rules)
        except jsonschema.ValidationError as exc:
            problems.append(f"{name}: {exc.message}")
    if problems:
        raise InvalidParams("invalid DAG Params: " + "; ".join(problems))
    values["classes"] = tuple(values["classes"])
    return TrainingParams(**values)
