"""The training DAG's run Params: one JSON schema per Param (what the Airflow UI form shows and the API validates
when a run is triggered), and `validate`, which the first task runs again so a bad value fails before any AWS
call, however the run started.

What the trigger form does with each schema key (Airflow 3.3):
- `title` labels the field and `description` is shown under it; every Param has both, and the description ends
  with the allowed values, written from the same bounds that are enforced.
- A number field copies a top-level `minimum`/`maximum` into its input, which then *silently clamps* a value
  typed out of range (5 became 1). So numeric bounds sit under `allOf`: the form leaves what was typed alone, and
  the API still refuses the trigger, naming the Param and the bound ("5 is greater than the maximum of 1").
- `enum` makes a drop-down (instance types), `examples` on an array makes a multi-select that only offers those
  names (the CIFAR-100 classes), and `values_display` labels the options.
- A class name outside CIFAR-100 can only come from JSON (the form's configuration editor, the CLI or the REST
  API). The API checks the list's length and uniqueness; the names are checked by `validate` in the `plan` task,
  whose error names only the wrong entries (an `enum` would make the API's message list all 100 names, twice).

Model hyperparameter defaults equal `include/model/train.py`'s own defaults (a test keeps them in step), except the
confidence threshold, for which train.py has none: the DAG always sends this Param's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from include.scones.cifar_labels import FINE_LABEL_NAMES

TRAINING_INSTANCE_TYPES = {
    "ml.m5.xlarge": "ml.m5.xlarge (4 vCPU, 16 GiB)",
    "ml.m5.2xlarge": "ml.m5.2xlarge (8 vCPU, 32 GiB)",
    "ml.m5.4xlarge": "ml.m5.4xlarge (16 vCPU, 64 GiB)",
    "ml.c5.xlarge": "ml.c5.xlarge (4 vCPU, 8 GiB, compute optimised)",
    "ml.c5.2xlarge": "ml.c5.2xlarge (8 vCPU, 16 GiB, compute optimised)",
}
INFERENCE_INSTANCE_TYPES = {
    "ml.t2.medium": "ml.t2.medium (2 vCPU, 4 GiB, burstable)",
    "ml.m5.large": "ml.m5.large (2 vCPU, 8 GiB)",
    "ml.m5.xlarge": "ml.m5.xlarge (4 vCPU, 16 GiB)",
    "ml.c5.large": "ml.c5.large (2 vCPU, 4 GiB, compute optimised)",
    "ml.c5.xlarge": "ml.c5.xlarge (4 vCPU, 8 GiB, compute optimised)",
}
MIN_CLASSES, MAX_CLASSES = 2, 10
# Keys that describe a Param to people or to the form; every other key is a validation rule.
_PRESENTATION_KEYS = frozenset({"default", "title", "description", "examples", "values_display"})


def _bound_text(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def allowed_range(bounds: Mapping[str, float]) -> str:
    """The bounds as a reader says them: "1 to 300", "more than 0, up to 1", "at least 0"."""
    low = (
        f"more than {_bound_text(bounds['exclusiveMinimum'])}"
        if "exclusiveMinimum" in bounds
        else (_bound_text(bounds["minimum"]) if "minimum" in bounds else None)
    )
    high = _bound_text(bounds["maximum"]) if "maximum" in bounds else None
    if low is not None and high is not None:
        return f"{low}, up to {high}" if "exclusiveMinimum" in bounds else f"{low} to {high}"
    if low is not None:
        return low if "exclusiveMinimum" in bounds else f"at least {low}"
    return f"at most {high}"


def _numeric(default: float, kind: str, title: str, description: str, **bounds: float) -> dict[str, Any]:
    whole = " (whole number)" if kind == "integer" else ""
    return {
        "default": default,
        "type": kind,
        "title": title,
        "description": f"{description} Allowed: {allowed_range(bounds)}{whole}.",
        "allOf": [bounds],  # not top-level: the form would clamp to them silently (module docstring)
    }


def _choice(default: str, options: Mapping[str, str], title: str, description: str) -> dict[str, Any]:
    return {
        "default": default,
        "type": "string",
        "enum": list(options),
        "values_display": dict(options),
        "title": title,
        "description": description,
    }


PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "classes": {
        "default": ["bicycle", "motorcycle"],
        "type": "array",
        "items": {"type": "string"},
        "examples": list(FINE_LABEL_NAMES),
        "minItems": MIN_CLASSES,
        "maxItems": MAX_CLASSES,
        "uniqueItems": True,
        "title": "CIFAR-100 classes",
        "description": (
            f"The fine-label names to tell apart, in label order (label 0 first). "
            f"Allowed: {MIN_CLASSES} to {MAX_CLASSES} distinct CIFAR-100 names."
        ),
    },
    "epochs": _numeric(
        120, "integer", "Epochs", "Passes over the training images, per ensemble member.", minimum=1, maximum=300
    ),  # fmt: skip
    "learning_rate": _numeric(
        0.05,
        "number",
        "Peak learning rate",
        "SGD learning rate at the top of the one-cycle schedule.",
        exclusiveMinimum=0,
        maximum=1,
    ),  # fmt: skip
    "batch_size": _numeric(64, "integer", "Batch size", "Images per training step.", minimum=8, maximum=1024),
    "weight_decay": _numeric(
        0.0005, "number", "Weight decay", "L2 penalty on the network weights.", minimum=0, maximum=0.1
    ),
    "seed": _numeric(
        42,
        "integer",
        "Random seed",
        "Seeds the shuffling, augmentation and initialisation (reproducible runs).",
        minimum=0,
        maximum=2**31 - 1,
    ),  # fmt: skip
    "members": _numeric(
        2,
        "integer",
        "Ensemble members",
        "Networks trained with seeds seed, seed+1, ...; the endpoint averages them. Training time scales with it.",
        minimum=1,
        maximum=5,
    ),  # fmt: skip
    "training_instance_type": _choice(
        "ml.m5.xlarge",
        TRAINING_INSTANCE_TYPES,
        "Training instance type",
        "The CPU instance the SageMaker training job runs on (the local cloud runs it on this machine).",
    ),  # fmt: skip
    "inference_instance_type": _choice(
        "ml.m5.large",
        INFERENCE_INSTANCE_TYPES,
        "Endpoint instance type",
        "The instance behind the endpoint and the batch transform; the endpoint bills by the hour on AWS.",
    ),  # fmt: skip
    "model_server_workers": _numeric(
        2,
        "integer",
        "Model-server workers per instance",
        "SAGEMAKER_MODEL_SERVER_WORKERS: processes per endpoint instance, each with its own copy of the model, "
        "answering requests side by side. 2 is TorchServe's own default on the default instance (one per vCPU).",
        minimum=1,
        maximum=8,
    ),  # fmt: skip
    "max_runtime_seconds": _numeric(
        3600,
        "integer",
        "Training time limit (s)",
        "SageMaker stops the training job after this many seconds.",
        minimum=300,
        maximum=86400,
    ),  # fmt: skip
    "min_accuracy": _numeric(
        0.9,
        "number",
        "Accuracy floor",
        "Deploy only at or above this test accuracy, and only if not worse than the live model.",
        minimum=0,
        maximum=1,
    ),  # fmt: skip
    "confidence_threshold": _numeric(
        0.93,
        "number",
        "Confidence threshold",
        "The workflow's filter: inferences below it end as low confidence. The evaluation reports the share "
        "passing it and their accuracy.",
        minimum=0,
        maximum=1,
    ),  # fmt: skip
    "approval": _choice(
        "auto",
        {
            "auto": "auto: the gate's rules approve or reject the version",
            "manual": "manual: after the rules pass, a person approves or rejects it (Browse → Required Actions)",
        },
        "Approval",
        "How the registered version is approved before it is deployed. auto: the accuracy floor and the "
        "comparison with the live model decide. manual: after those rules pass, a reviewer approves or rejects it "
        "in the UI; no answer within the review timeout rejects it.",
    ),  # fmt: skip
    "rollout": _choice(
        "canary",
        {
            "canary": "canary: a share of the traffic first, bake, then all of it",
            "linear": "linear: the traffic in equal steps, each baked",
            "all_at_once": "all_at_once: all the traffic at once, then bake",
        },
        "Rollout",
        "How an update shifts traffic to the new version (SageMaker deployment guardrails). Every bake watches the "
        "5XX-errors and model-latency alarms; one in ALARM rolls back to the live version. The first deployment of "
        "the endpoint has nothing to shift from and goes all at once.",
    ),  # fmt: skip
    "rollout_percent": _numeric(
        20,
        "integer",
        "Canary or step size (%)",
        "The share of traffic the canary gets, or each linear step adds.",
        minimum=10,
        maximum=50,
    ),  # fmt: skip
    "bake_seconds": _numeric(
        300,
        "integer",
        "Bake time (s)",
        "How long each traffic step, and the final bake on all the traffic, runs with the alarms watched. "
        "SCONES_ROLLOUT_BAKE_SECONDS sets this default.",
        minimum=0,
        maximum=3600,
    ),  # fmt: skip
    "capture_percentage": _numeric(
        100,
        "integer",
        "Data capture sampling (%)",
        "Share of endpoint requests captured for monitoring.",
        minimum=0,
        maximum=100,
    ),  # fmt: skip
}

# Sent to train.py. The confidence threshold goes too, so its reported pass share is the workflow's: train.py has
# no default of its own for it (one value, this Param's), and the filter Lambda gets it as THRESHOLD.
HYPERPARAMETERS = ("epochs", "learning_rate", "batch_size", "weight_decay", "seed", "members", "confidence_threshold")
THRESHOLD_HYPERPARAMETER = "confidence_threshold"


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
    model_server_workers: int
    max_runtime_seconds: int
    min_accuracy: float
    confidence_threshold: float
    approval: str
    rollout: str
    rollout_percent: int
    bake_seconds: int
    capture_percentage: int

    def hyperparameters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HYPERPARAMETERS}


def with_defaults(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """PARAM_SCHEMAS with some defaults replaced (the DAG's, from parse-time settings such as the bake time)."""
    return {name: schema | ({"default": overrides[name]} if name in overrides else {}) for name, schema in
            PARAM_SCHEMAS.items()}  # fmt: skip


def defaults() -> dict[str, Any]:
    return {name: schema["default"] for name, schema in PARAM_SCHEMAS.items()}


def rules(name: str, schemas: Mapping[str, Mapping[str, Any]] = PARAM_SCHEMAS) -> dict[str, Any]:
    """The validation rules of one Param: its schema without the keys meant for people and the form."""
    return {k: v for k, v in schemas[name].items() if k not in _PRESENTATION_KEYS}


def _problem(name: str, value: Any, schemas: Mapping[str, Mapping[str, Any]]) -> str | None:
    schema = schemas[name]
    # JSON Schema treats True as an integer-compatible number; a Param of True is a mistake here.
    if isinstance(value, bool):
        article = "an" if schema["type"][0] in "aeiou" else "a"
        return f"{value!r} is not {article} {schema['type']}"
    try:
        jsonschema.validate(value, rules(name, schemas))
    except jsonschema.ValidationError as exc:
        return exc.message
    if name == "classes":
        unknown = [entry for entry in value if entry not in FINE_LABEL_NAMES]
        if unknown:
            verb = "is not a CIFAR-100 fine label" if len(unknown) == 1 else "are not CIFAR-100 fine labels"
            return f"{', '.join(map(repr, unknown))} {verb}"
    return None


def checked_values(
    params: Mapping[str, Any], schemas: Mapping[str, Mapping[str, Any]], error: type[ValueError]
) -> dict[str, Any]:
    """Every Param of `schemas` from `params` or its default, checked against its schema; `error` lists each bad
    Param with the reason. Shared by the DAGs whose Params these modules define (training, teardown)."""
    values = {name: schema["default"] for name, schema in schemas.items()}
    values |= {k: v for k, v in params.items() if k in schemas}
    problems = []
    for name, schema in schemas.items():
        # The UI form and JSON conf may send 60.0 for an integer; SageMaker and train.py need 60.
        value = values[name]
        if schema["type"] == "integer" and isinstance(value, float) and value.is_integer():
            values[name] = int(value)
        problem = _problem(name, values[name], schemas)
        if problem:
            problems.append(f"{name}: {problem}")
    if problems:
        raise error("invalid DAG Params: " + "; ".join(problems))
    return values


def validate(params: Mapping[str, Any]) -> TrainingParams:
    """Check every Param against its schema; the error lists each bad Param with the reason."""
    values = checked_values(params, PARAM_SCHEMAS, InvalidParams)
    values["classes"] = tuple(values["classes"])
    return TrainingParams(**values)
