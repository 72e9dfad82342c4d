"""params: the DAG Param schemas, validate(), and the hyperparameter defaults shared with train.py."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from include.scones.cifar_labels import FINE_LABEL_NAMES
from include.scones.params import (
    HYPERPARAMETERS,
    PARAM_SCHEMAS,
    THRESHOLD_HYPERPARAMETER,
    InvalidParams,
    TrainingParams,
    allowed_range,
    defaults,
    rules,
    validate,
)

TRAIN_PY = Path(__file__).resolve().parents[2] / "include" / "model" / "train.py"


def test_defaults_validate() -> None:
    params = validate({})
    assert params == TrainingParams(
        classes=("bicycle", "motorcycle"),
        epochs=120,
        learning_rate=0.05,
        batch_size=64,
        weight_decay=0.0005,
        seed=42,
        members=2,
        training_instance_type="ml.m5.xlarge",
        inference_instance_type="ml.m5.large",
        model_server_workers=2,
        max_runtime_seconds=3600,
        approval="auto",
        min_accuracy=0.9,
        confidence_threshold=0.93,
        rollout="canary",
        rollout_percent=20,
        bake_seconds=300,
        capture_percentage=100,
    )
    assert validate(defaults()) == params
    assert params.hyperparameters() == {
        "epochs": 120,
        "learning_rate": 0.05,
        "batch_size": 64,
        "weight_decay": 0.0005,
        "seed": 42,
        "members": 2,
        "confidence_threshold": 0.93,
    }


def test_overrides_and_unknown_keys() -> None:
    params = validate({"epochs": 5, "classes": ["bus", "tractor", "train"], "not_a_param": object()})
    assert params.epochs == 5
    assert params.classes == ("bus", "tractor", "train")


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("epochs", 0, "0 is less than the minimum of 1"),
        ("epochs", 301, "301 is greater than the maximum of 300"),
        ("learning_rate", 0, "0 is less than or equal to the minimum of 0"),
        ("batch_size", "x", "'x' is not of type 'integer'"),
        ("epochs", True, "True is not an integer"),
        ("learning_rate", False, "False is not a number"),
        ("classes", ["bicycle"], "['bicycle'] is too short"),
        ("classes", ["bicycle", "unicorn"], "'unicorn' is not a CIFAR-100 fine label"),
        ("classes", ["bicycle", 7], "7 is not of type 'string'"),
        ("classes", ["bicycle", "bicycle"], "['bicycle', 'bicycle'] has non-unique elements"),
        ("training_instance_type", "ml.p3.2xlarge", "'ml.p3.2xlarge' is not one of"),
        ("inference_instance_type", "ml.g4dn.xlarge", "'ml.g4dn.xlarge' is not one of"),
        ("min_accuracy", 1.5, "1.5 is greater than the maximum of 1"),
        ("capture_percentage", -1, "-1 is less than the minimum of 0"),
        ("model_server_workers", 0, "0 is less than the minimum of 1"),
        ("max_runtime_seconds", 60, "60 is less than the minimum of 300"),
    ],
)
def test_each_bad_value_names_its_param(name: str, value: Any, reason: str) -> None:
    with pytest.raises(InvalidParams) as raised:
        validate({name: value})
    message = str(raised.value)
    assert message.startswith("invalid DAG Params: ")
    assert f"{name}: " in message
    assert f"{name}: {reason}" in message
    assert message.count(": ") == 2  # exactly one problem reported


def test_several_bad_values_are_all_named() -> None:
    with pytest.raises(InvalidParams) as raised:
        validate({"epochs": 0, "batch_size": "x", "min_accuracy": 1.5, "classes": ["bicycle"]})
    message = str(raised.value)
    for name in ("epochs", "batch_size", "min_accuracy", "classes"):
        assert f"{name}: " in message
    assert "learning_rate" not in message and "seed" not in message


@pytest.mark.parametrize(
    "name", ["epochs", "batch_size", "seed", "max_runtime_seconds", "capture_percentage", "model_server_workers"]
)
def test_integer_params_given_as_floats_are_rejected_or_made_ints(name: str) -> None:
    value = float(defaults()[name])
    try:
        params = validate({name: value})
    except InvalidParams as exc:
        assert f"{name}: " in str(exc)
    else:
        assert type(getattr(params, name)) is int


def _train_py_defaults() -> dict[str, tuple[str | None, Any]]:
    """{name: (type name, default)} of the add("name", type=..., default=...) calls in train.py's parse_args."""
    tree = ast.parse(TRAIN_PY.read_text())
    parse_args = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "parse_args")
    found: dict[str, tuple[str | None, Any]] = {}
    for call in ast.walk(parse_args):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "add"):
            continue
        if not (call.args and isinstance(call.args[0], ast.Constant)):
            continue
        keywords = {k.arg: k.value for k in call.keywords}
        if "default" not in keywords:
            continue
        try:
            default = ast.literal_eval(keywords["default"])
        except ValueError:
            continue  # computed defaults (environment lookups) are not hyperparameters
        kind = keywords.get("type")
        found[call.args[0].value] = (kind.id if isinstance(kind, ast.Name) else None, default)
    return found


def test_hyperparameter_defaults_match_train_py() -> None:
    train_defaults = _train_py_defaults()
    assert set(HYPERPARAMETERS) <= set(train_defaults), "train.py must declare every hyperparameter"
    assert train_defaults[THRESHOLD_HYPERPARAMETER][1] is None, "one threshold: train.py must not default it"
    for name in HYPERPARAMETERS:
        if name == THRESHOLD_HYPERPARAMETER:
            continue
        kind, default = train_defaults[name]
        schema = PARAM_SCHEMAS[name]
        assert default == schema["default"], name
        assert kind == {"integer": "int", "number": "float"}[schema["type"]], name
    assert train_defaults["epochs"] == ("int", 120)  # the parser really read the file


def test_a_wrong_class_name_is_named_alone() -> None:
    with pytest.raises(InvalidParams) as raised:
        validate({"classes": ["bicycle", "unicorn", "motorcycle", "dragon"]})
    message = str(raised.value)
    assert message == "invalid DAG Params: classes: 'unicorn', 'dragon' are not CIFAR-100 fine labels"
    assert "apple" not in message  # none of the 100 valid names is listed


@pytest.mark.parametrize("name", sorted(PARAM_SCHEMAS))
def test_every_param_has_a_title_and_a_description(name: str) -> None:
    schema = PARAM_SCHEMAS[name]
    assert schema["title"].strip() and schema["title"] != name
    assert len(schema["description"]) > 20


@pytest.mark.parametrize("name", sorted(n for n, s in PARAM_SCHEMAS.items() if s["type"] in ("integer", "number")))
def test_numeric_bounds_are_enforced_shown_and_out_of_the_forms_clamping_reach(name: str) -> None:
    schema = PARAM_SCHEMAS[name]
    # The trigger form clamps to top-level minimum/maximum silently; the bounds must live elsewhere.
    assert not {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & set(schema)
    (bounds,) = schema["allOf"]
    assert f"Allowed: {allowed_range(bounds)}" in schema["description"]
    high = bounds["maximum"]
    with pytest.raises(InvalidParams, match=f"{name}: .* is greater than the maximum of"):
        validate({name: high * 2 + 1})


def test_the_api_side_schema_refuses_what_validate_refuses() -> None:
    """The trigger is validated by Airflow with jsonschema over the whole Param schema (presentation keys are
    ignored by jsonschema), so the same bounds refuse the run before it exists."""
    import jsonschema

    full = PARAM_SCHEMAS["learning_rate"]
    with pytest.raises(jsonschema.ValidationError, match="5 is greater than the maximum of 1"):
        jsonschema.validate(5, full)
    jsonschema.validate(0.5, full)
    assert rules("learning_rate") == {"type": "number", "allOf": [{"exclusiveMinimum": 0, "maximum": 1}]}


def test_classes_are_offered_as_the_cifar_names() -> None:
    schema = PARAM_SCHEMAS["classes"]
    assert schema["examples"] == list(FINE_LABEL_NAMES) and len(schema["examples"]) == 100
    assert "enum" not in schema["items"]  # an enum makes the API's error list all 100 names


@pytest.mark.parametrize(
    ("bounds", "text"),
    [
        ({"minimum": 1, "maximum": 300}, "1 to 300"),
        ({"exclusiveMinimum": 0, "maximum": 1}, "more than 0, up to 1"),
        ({"minimum": 0, "maximum": 0.1}, "0 to 0.1"),
        ({"minimum": 0, "maximum": 2**31 - 1}, "0 to 2,147,483,647"),
        ({"minimum": 5}, "at least 5"),
        ({"maximum": 5}, "at most 5"),
    ],
)
def test_allowed_range_reads_naturally(bounds: dict, text: str) -> None:
    assert allowed_range(bounds) == text


def test_approval_is_auto_or_manual() -> None:
    assert validate({"approval": "manual"}).approval == "manual"
    with pytest.raises(InvalidParams, match="approval: 'sometimes' is not one of"):
        validate({"approval": "sometimes"})


def test_the_dag_s_bake_default_comes_from_parse_time_settings() -> None:
    from include.scones.params import PARAM_SCHEMAS, with_defaults

    schemas = with_defaults({"bake_seconds": 5})
    assert schemas["bake_seconds"]["default"] == 5 and PARAM_SCHEMAS["bake_seconds"]["default"] == 300
    assert {k: v for k, v in schemas.items() if k != "bake_seconds"} == {
        k: v for k, v in PARAM_SCHEMAS.items() if k != "bake_seconds"
    }
    with pytest.raises(InvalidParams, match="rollout_percent"):
        validate({"rollout_percent": 60})  # a canary of more than half, or linear steps outside 10-50%
    with pytest.raises(InvalidParams, match="rollout"):
        validate({"rollout": "rolling"})
