"""settings: Airflow Variable > environment > default, and the derived names."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.scones.settings import (
    OFFICIAL_CIFAR_MD5,
    OFFICIAL_CIFAR_URL,
    VARIABLE_NAMES,
    InvalidSettings,
    ParseTimeSettings,
    Settings,
    load,
    parse_time,
)


def test_defaults_without_env_or_variables() -> None:
    settings = load(env={}, variables={})
    assert settings.cifar_url == OFFICIAL_CIFAR_URL
    assert settings.cifar_md5 == OFFICIAL_CIFAR_MD5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert settings.bucket == "scones-unlimited"
    assert settings.endpoint_name == "scones-vehicle-classifier"
    assert settings.sagemaker_role == "scones-sagemaker-execution"
    assert settings.training_image == settings.inference_image == ""
    assert (settings.pytorch_version, settings.python_version) == ("2.5.1", "py311")
    assert settings.cache_dir == str(Path.home() / ".cache" / "scones-unlimited")


def test_variable_beats_env_beats_default() -> None:
    env = {"SCONES_BUCKET": "from-env", "SCONES_ENDPOINT_NAME": "env-endpoint"}
    variables = {"SCONES_BUCKET": "from-variable"}
    settings = load(env=env, variables=variables)
    assert settings.bucket == "from-variable"  # Variable over env
    assert settings.endpoint_name == "env-endpoint"  # env over default
    assert settings.data_prefix == "datasets/cifar100"  # default


def test_empty_values_fall_through_and_values_are_stripped() -> None:
    settings = load(
        env={"SCONES_BUCKET": "env-bucket", "SCONES_MODEL_PREFIX": "", "SCONES_CODE_PREFIX": "  src  "},
        variables={"SCONES_BUCKET": "", "SCONES_CIFAR_MD5": " ABC \n"},
    )
    assert settings.bucket == "env-bucket"  # an empty Variable does not hide the env value
    assert settings.model_prefix == "models"  # an empty env value does not hide the default
    assert settings.code_prefix == "src"
    assert settings.cifar_md5 == "ABC"


def test_variables_may_be_a_lookup_function() -> None:
    asked: list[str] = []

    def lookup(name: str) -> str | None:
        asked.append(name)
        return "var-bucket" if name == "SCONES_BUCKET" else None

    assert load(env={}, variables=lookup).bucket == "var-bucket"
    assert asked == list(VARIABLE_NAMES)  # every setting is looked up, each once


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCONES_CAPTURE_PREFIX", "cap")
    assert load().capture_prefix == "cap"
    monkeypatch.setenv("SCONES_POLL_SECONDS", "7")
    monkeypatch.delenv("SCONES_AWS_CONN_ID", raising=False)
    assert (parse_time().poll_seconds, parse_time().aws_conn_id) == (7, "aws_default")


def test_role_arn_from_a_name_or_an_arn() -> None:
    assert load(env={}).role_arn("123456789012") == "arn:aws:iam::123456789012:role/scones-sagemaker-execution"
    arn = "arn:aws-cn:iam::999999999999:role/custom/path"
    assert load(env={"SCONES_SAGEMAKER_ROLE": arn}).role_arn("123456789012") == arn


def test_registry_group_keep_last_and_capture_uri() -> None:
    settings = load(
        env={"SCONES_BUCKET": "b", "SCONES_CAPTURE_PREFIX": "cap/x", "SCONES_REGISTRY_KEEP_LAST": "2"},
        variables={"SCONES_MODEL_PACKAGE_GROUP": "grp"},
    )
    assert (settings.model_package_group, settings.registry_keep_last) == ("grp", 2)
    assert settings.capture_uri == "s3://b/cap/x"
    defaults = load(env={})
    assert (defaults.model_package_group, defaults.registry_keep_last) == ("scones-vehicle-classifier", 5)
    assert defaults.capture_uri == "s3://scones-unlimited/data_capture"
    with pytest.raises(InvalidSettings, match="SCONES_REGISTRY_KEEP_LAST"):
        load(env={"SCONES_REGISTRY_KEEP_LAST": "0"})  # the newest version is always kept


def test_every_variable_maps_to_a_field() -> None:
    assert len(VARIABLE_NAMES) == len(set(VARIABLE_NAMES)) == len(Settings.model_fields)
    assert all(name.startswith("SCONES_") for name in VARIABLE_NAMES)


def test_values_are_typed_and_checked_once() -> None:
    settings = load(
        env={"SCONES_SMOKE_EXECUTIONS": "4", "SCONES_REPORT_LAG_MINUTES": "0"}, variables={"SCONES_ALERT_PSI": "0.5"}
    )
    assert (settings.smoke_executions, settings.report_lag_minutes, settings.alert_psi) == (4, 0.0, 0.5)
    assert isinstance(settings.alert_min_records, int) and settings.alert_min_records == 50


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCONES_SMOKE_EXECUTIONS": "many"}, "SCONES_SMOKE_EXECUTIONS: Input should be a valid integer"),
        ({"SCONES_SMOKE_EXECUTIONS": "0"}, "SCONES_SMOKE_EXECUTIONS: Input should be greater than or equal to 1"),
        ({"SCONES_ALERT_LOW_CONFIDENCE_SHARE": "2"}, "SCONES_ALERT_LOW_CONFIDENCE_SHARE: Input should be less than"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSettings, match=message):
        load(env=env)


def test_parse_time_settings_come_from_the_environment_only_and_are_typed() -> None:
    settings = parse_time({"SCONES_POLL_SECONDS": " 5 ", "SCONES_TRAINING_SCHEDULE": "@daily"})
    assert settings == ParseTimeSettings(poll_seconds=5, training_schedule="@daily")
    assert isinstance(settings.poll_seconds, int)  # one type in every DAG (it was an int in two, a float in one)
    with pytest.raises(InvalidSettings, match="SCONES_POLL_SECONDS"):
        parse_time({"SCONES_POLL_SECONDS": "1.5"})
