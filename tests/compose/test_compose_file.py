"""docker-compose.yaml: valid Compose (the Compose Specification's JSON schema, and `docker-compose config` where
the binary exists), and true to the project: ports on loopback only, a health check on every long-running
service, the launcher's settings for the local cloud, the Airflow pin, and the local-mode connection.

No Docker engine is needed: nothing here builds or starts a container."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from include.scones import airflow_runtime
from include.scones.settings import AWS_CONN_ID_VARIABLE
from localcloud import config as localcloud_config
from localcloud import launcher
from localcloud.config import LocalCloudConfig
from localcloud.request_guard import ALLOWED_HOSTS_VARIABLE, Policy, refusal

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
# The Compose Specification's JSON schema (draft 7), vendored unchanged from the compose-spec/compose-spec
# repository, file schema/compose-spec.json at commit 00655e2222608fa6eaecdf12ac5195889ca2244a
# (74,133 bytes, sha256 bc50c2d79102aed8df21b3a13e56c9396c7a06da6cff5ce37629f2ee7eb41735).
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")

REQUIRED_SERVICES = {
    "postgres",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "ministack",
    "local-sagemaker",
}
AIRFLOW_MOUNTS = {"dags", "plugins", "include", "lambdas"}  # as the official file mounts dags/ and plugins/

# ${NAME}, ${NAME:-default}, ${NAME:?error} (required) and $$ (a literal $): the forms this file uses. Anything
# else fails loudly, so a new form gets a resolver here instead of being checked as if it were literal text.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*)|:\?(?P<error>[^}]*))?\})"
)
# The environment `docker compose up` needs: the local cloud's keys, as `make credentials` writes them (placeholders
# here, assembled so the repository's credential scan sees no literal key).
KEYS_ENV = {
    "LOCALCLOUD_ACCESS_KEY_ID": "LKIA" + "COMPOSE" * 2 + "KY",
    "LOCALCLOUD_SECRET_ACCESS_KEY": "compose-" + "s" * 32,
}


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """The document as Compose sees it with `env` as the environment (unset variables take their defaults)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["error"] is not None and not env.get(match["name"]):
            raise MissingVariable(f"{match['name']}: {match['error']}")
        return env.get(match["name"]) or match["default"] or ""

    resolved = _INTERPOLATION.sub(resolve, value)
    leftover = _INTERPOLATION.sub("", value)
    assert "$" not in leftover, f"unsupported interpolation in {value!r}"
    return resolved


class MissingVariable(AssertionError):
    pass


def load_compose(path: Path = COMPOSE_FILE, env: Mapping[str, str] = KEYS_ENV) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())  # resolves the x-airflow-common anchors and << merges
    return interpolate(document, env)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def airflow_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services(compose).items() if svc.get("build", {}).get("target") == "airflow"}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def dockerfile(service: Mapping[str, Any]) -> str:
    return (PROJECT_ROOT / service["build"]["context"] / service["build"]["dockerfile"]).read_text()


def container_port(published: str) -> str:
    return published.split(":")[-1].split("/")[0]


# --- the Compose Specification --------------------------------------------------------------------------------
def test_file_matches_the_compose_specification(compose: dict, schema_validator: jsonschema.Draft7Validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in schema_validator.iter_errors(compose)]
    assert errors == []


BREAKAGES: dict[str, tuple[Callable[[dict], None], list[str]]] = {
    "unknown service key": (
        lambda d: d["services"]["ministack"].update(healthcheck_interval="10s"),
        ["services", "ministack"],
    ),
    "health check retries as a list": (
        lambda d: d["services"]["local-sagemaker"]["healthcheck"].update(retries=["5"]),
        ["services", "local-sagemaker", "healthcheck", "retries"],
    ),
    "health check test as a number": (
        lambda d: d["services"]["postgres"]["healthcheck"].update(test=5),
        ["services", "postgres", "healthcheck", "test"],
    ),
    "unknown depends_on condition": (
        lambda d: d["services"]["airflow-scheduler"]["depends_on"]["ministack"].update(condition="service_ready"),
        ["services", "airflow-scheduler", "depends_on"],
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_copy_fails_the_schema_where_it_is_broken(
    compose: dict, schema_validator: jsonschema.Draft7Validator, breakage: str
) -> None:
    break_it, where = BREAKAGES[breakage]
    broken = copy.deepcopy(compose)
    break_it(broken)
    error = jsonschema.exceptions.best_match(schema_validator.iter_errors(broken))
    assert error is not None, f"{breakage}: the schema accepted it"
    assert list(error.absolute_path)[: len(where)] == where, error.message


def _docker_compose_config(compose_file: Path, with_keys: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose; .ci/run installs it)")
    # Only PATH from the caller: a developer's AIRFLOW_PORT or POSTGRES_PASSWORD must not change the verdict.
    return subprocess.run(
        [binary, "-f", str(compose_file), "config", "-q"],
        cwd=compose_file.parent,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(KEYS_ENV if with_keys else {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_docker_compose_config_accepts_the_file() -> None:
    result = _docker_compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_the_local_clouds_keys() -> None:
    with pytest.raises(MissingVariable, match="make credentials"):
        load_compose(env={})
    if shutil.which("docker-compose"):
        result = _docker_compose_config(COMPOSE_FILE, with_keys=False)
        assert result.returncode != 0 and "make credentials" in result.stderr


def test_docker_compose_config_rejects_a_broken_copy(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["ministack"]["healthcheck_interval"] = "10s"
    copy_file = tmp_path / "docker-compose.yaml"
    copy_file.write_text(yaml.safe_dump(broken))
    result = _docker_compose_config(copy_file)
    assert result.returncode != 0
    assert "healthcheck_interval" in result.stderr


# --- the project's own rules --------------------------------------------------------------------------------------
def test_the_required_services_exist(compose: dict) -> None:
    assert REQUIRED_SERVICES <= set(services(compose))


CELERY_SERVICES = {"redis", "airflow-worker"}


def test_the_celery_profile_is_the_official_layout_and_off_by_default(compose: dict) -> None:
    """Profile `celery`: the official file's Redis and Celery worker; nothing else is in a profile, so a plain
    `docker compose up` is the LocalExecutor stack it always was."""
    profiled = {name: svc["profiles"] for name, svc in services(compose).items() if svc.get("profiles")}
    assert profiled == {name: ["celery"] for name in CELERY_SERVICES}
    redis, worker, scheduler = (services(compose)[name] for name in ("redis", "airflow-worker", "airflow-scheduler"))
    assert redis["image"] == "redis:7.2-bookworm" and "ports" not in redis  # reachable by the workers only
    assert worker["command"] == "celery worker" and worker["build"] == scheduler["build"]
    assert environment(worker) == environment(scheduler) | {"DUMB_INIT_SETSID": "0"}
    assert worker["volumes"] == scheduler["volumes"]  # the same code, logs, config and shared ETL cache
    # A worker runs the tasks, so it waits for the broker and for the local cloud as the scheduler does
    needs = {name: condition["condition"] for name, condition in worker["depends_on"].items()}
    assert needs["redis"] == needs["ministack"] == needs["local-sagemaker"] == "service_healthy"
    env = environment(scheduler)
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:") and "@postgres/" in env[
        "AIRFLOW__CELERY__RESULT_BACKEND"]  # fmt: skip
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    switched = load_compose(env=KEYS_ENV | {"AIRFLOW_EXECUTOR": "CeleryExecutor"})
    assert environment(services(switched)["airflow-worker"])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_config_accepts_the_celery_profile() -> None:
    result = subprocess.run(
        ["docker-compose", "--profile", "celery", "config"], cwd=PROJECT_ROOT, capture_output=True, text=True,
        env=os.environ | KEYS_ENV | {"AIRFLOW_EXECUTOR": "CeleryExecutor"}, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert CELERY_SERVICES <= set(config["services"])
    executors = {environment(svc).get("AIRFLOW__CORE__EXECUTOR") for svc in airflow_services(config).values()}
    assert executors == {"CeleryExecutor"}


def test_every_published_port_is_bound_to_loopback(compose: dict) -> None:
    published = []
    for name, service in services(compose).items():
        # Host networking would put the 0.0.0.0 listeners of the local cloud on the host's interfaces.
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).rsplit(":", 2)[0]
            if isinstance(port, str) and port.count(":") != 2:
                host_ip = None  # "8080" or "8080:8080": every interface of the host
            assert host_ip == localcloud_config.LOOPBACK_HOST, f"{name} publishes {port!r} beyond loopback"
            published.append(name)
    assert {"airflow-apiserver", "ministack", "local-sagemaker"} <= set(published)


def test_every_long_running_service_has_a_health_check(compose: dict) -> None:
    one_shot = {
        dependency
        for service in services(compose).values()
        for dependency, condition in (service.get("depends_on") or {}).items()
        if condition.get("condition") == "service_completed_successfully"
    }
    assert one_shot == {"airflow-init"}
    for name, service in services(compose).items():
        if name in one_shot:
            continue
        healthcheck = service.get("healthcheck") or {}
        assert not healthcheck.get("disable"), name
        assert healthcheck.get("test") and healthcheck["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no check"


def test_the_airflow_image_is_the_pinned_airflow(compose: dict) -> None:
    pin = re.search(r"^apache-airflow==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.M)
    assert pin is not None
    builds = {json.dumps(service["build"], sort_keys=True) for service in airflow_services(compose).values()}
    assert len(builds) == 1, "every Airflow service runs the one project image"
    assert set(airflow_services(compose)) >= REQUIRED_SERVICES - {"postgres", "ministack", "local-sagemaker"}
    text = dockerfile(next(iter(airflow_services(compose).values())))
    base = re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:(\S+)$", text, re.M)
    assert base is not None, "the Airflow Dockerfile names its base image in ARG AIRFLOW_IMAGE"
    assert base[1].split("-python")[0] == pin[1]
    assert "-r /opt/scones/requirements.txt" in text


def test_each_build_names_an_existing_dockerfile_and_stage(compose: dict) -> None:
    for name, service in services(compose).items():
        if "build" not in service:
            continue
        text = dockerfile(service)  # raises if the file is missing
        target = service["build"].get("target")
        if target:
            assert re.search(rf"^FROM \S+ AS {re.escape(target)}$", text, re.M), f"{name}: no stage {target}"


def test_the_build_context_sends_every_file_the_dockerfiles_copy(compose: dict) -> None:
    # .dockerignore is an allowlist ("*", then "!path" lines): a COPY of anything else would fail only at build time.
    allowed = [
        line[1:].strip().rstrip("/")
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    contexts = {service["build"]["context"] for service in services(compose).values() if "build" in service}
    assert contexts == {"."}, "the .dockerignore at the repository root governs every build"
    dockerfiles = {service["build"]["dockerfile"] for service in services(compose).values() if "build" in service}
    for name in sorted(dockerfiles):
        copies = re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+) \S+$", (PROJECT_ROOT / name).read_text(), re.M)
        assert copies, name
        for source in copies:
            assert any(source == entry or source.startswith(entry + "/") for entry in allowed), f"{name}: {source}"
            assert (PROJECT_ROOT / source).exists(), f"{name} copies {source}, which does not exist"


def test_the_local_cloud_images_install_what_make_venvs_installs(compose: dict) -> None:
    ministack = dockerfile(services(compose)["ministack"])
    assert "localcloud/ministack/requirements.txt" in ministack
    assert "python -m localcloud.ministack.patch" in ministack
    sagemaker_service = services(compose)["local-sagemaker"]
    sagemaker = dockerfile(sagemaker_service)
    assert "localcloud/sagemaker/requirements-pytorch.txt" in sagemaker
    command = sagemaker_service["command"]
    pytorch_venv = Path(command[command.index("--pytorch-python") + 1]).parent.parent
    assert f"python -m venv {pytorch_venv}" in sagemaker


def test_bind_mounts_exist_in_the_repository_and_named_volumes_are_declared(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
            if source.startswith((".", "/", "~")):
                host_path = (PROJECT_ROOT / source).resolve()
                assert host_path.is_relative_to(PROJECT_ROOT), f"{name} mounts {source} from outside the repo"
                assert host_path.exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name} uses volume {source} that is not declared"
    for name, service in airflow_services(compose).items():
        targets = {volume.split(":")[1] for volume in service["volumes"] if isinstance(volume, str)}
        assert {f"/opt/airflow/{folder}" for folder in AIRFLOW_MOUNTS} <= targets, name


# --- the local cloud, as the launcher runs it ----------------------------------------------------------------------
def _ports(compose: dict) -> tuple[int, int]:
    ministack_port = int(environment(services(compose)["ministack"])["GATEWAY_PORT"])
    command = services(compose)["local-sagemaker"]["command"]
    return ministack_port, int(command[command.index("--port") + 1])


def _launcher_services(tmp_path: Path, compose: dict) -> tuple[LocalCloudConfig, launcher.Service, launcher.Service]:
    ministack_port, sagemaker_port = _ports(compose)
    cfg = LocalCloudConfig.from_env(
        {
            "LOCALCLOUD_HOME": str(tmp_path),
            "MINISTACK_PORT": str(ministack_port),
            "LOCAL_SAGEMAKER_PORT": str(sagemaker_port),
        }
    )
    ministack, sagemaker = launcher.services(cfg)
    return cfg, ministack, sagemaker


def test_ministack_runs_with_the_launchers_settings_on_every_container_interface(compose: dict, tmp_path: Path) -> None:
    _, ministack, _ = _launcher_services(tmp_path, compose)
    service = services(compose)["ministack"]
    env = environment(service)
    assert set(env) - {ALLOWED_HOSTS_VARIABLE} == set(ministack.env), "the same variables as localcloud/launcher.py"
    keys = KEYS_ENV["LOCALCLOUD_ACCESS_KEY_ID"], KEYS_ENV["LOCALCLOUD_SECRET_ACCESS_KEY"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == keys, "its Lambdas' secret is the install's"
    assert env["BIND_HOST"] == localcloud_config.WILDCARD_HOST
    for flag in ("PERSIST_STATE", "S3_PERSIST", "LOG_LEVEL", "GATEWAY_PORT"):
        assert env[flag] == ministack.env[flag], flag
    state_volume = next(v.split(":")[1] for v in service["volumes"])
    for directory in ("STATE_DIR", "S3_DATA_DIR", "TMPDIR"):
        assert Path(env[directory]).is_relative_to(state_volume), f"{directory} must be in the state volume"
    assert {container_port(port) for port in service["ports"]} == {env["GATEWAY_PORT"]}
    assert f":{env['GATEWAY_PORT']}/_ministack/health" in " ".join(service["healthcheck"]["test"])


def test_the_local_sagemaker_runs_with_the_launchers_arguments_on_every_container_interface(
    compose: dict, tmp_path: Path
) -> None:
    _, _, sagemaker = _launcher_services(tmp_path, compose)
    ministack_port, sagemaker_port = _ports(compose)
    service = services(compose)["local-sagemaker"]
    command = service["command"]
    flags = [arg for arg in command if arg.startswith("--")]
    assert flags == [arg for arg in sagemaker.command if arg.startswith("--")]
    assert command[command.index("--ministack-url") + 1] == f"http://ministack:{ministack_port}"
    state_volume = next(v.split(":")[1] for v in service["volumes"])
    assert Path(command[command.index("--home") + 1]).is_relative_to(state_volume)
    env = environment(service)
    assert {name: env.get(name) for name in KEYS_ENV} == KEYS_ENV, "signatures are checked inside compose too"
    assert set(KEYS_ENV) <= set(sagemaker.env), "as the launcher starts it"
    assert localcloud_config.bind_host(env) == localcloud_config.WILDCARD_HOST
    assert {container_port(port) for port in service["ports"]} == {str(sagemaker_port)}
    assert f":{sagemaker_port}/_localcloud/health" in " ".join(service["healthcheck"]["test"])
    assert services(compose)["airflow-scheduler"]["depends_on"]["local-sagemaker"]["condition"] == "service_healthy"


def test_the_connection_is_the_launchers_local_connection_pointed_at_the_services(
    compose: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, _, _ = _launcher_services(tmp_path, compose)
    ministack_port, sagemaker_port = _ports(compose)
    for name, service in airflow_services(compose).items():
        env = environment(service)
        monkeypatch.delenv(AWS_CONN_ID_VARIABLE, raising=False)
        if AWS_CONN_ID_VARIABLE in env:
            monkeypatch.setenv(AWS_CONN_ID_VARIABLE, env[AWS_CONN_ID_VARIABLE])
        variable = f"AIRFLOW_CONN_{airflow_runtime.aws_conn_id().upper()}"
        assert variable in env, f"{name} has no {variable}"
        connection = json.loads(env[variable])
        keys = launcher.install_credentials(cfg)
        expected = json.loads(
            launcher.connection_uri_json(cfg)
            .replace(cfg.ministack_url, f"http://ministack:{ministack_port}")
            .replace(cfg.sagemaker_url, f"http://local-sagemaker:{sagemaker_port}")
            .replace(keys.access_key_id, KEYS_ENV["LOCALCLOUD_ACCESS_KEY_ID"])
            .replace(keys.secret_access_key, KEYS_ENV["LOCALCLOUD_SECRET_ACCESS_KEY"])
        )
        assert connection == expected, name
        assert connection["extra"]["endpoint_url"] == f"http://ministack:{ministack_port}"
        assert {config["endpoint_url"] for config in connection["extra"]["service_config"].values()} == {
            f"http://local-sagemaker:{sagemaker_port}"
        }
        # The connection is the only switch: an AWS_ENDPOINT_URL* here would survive a switch to AWS.
        assert not [key for key in env if key.startswith("AWS_ENDPOINT_URL")], name


@pytest.mark.parametrize("service_name", ["ministack", "local-sagemaker"])
def test_each_local_cloud_service_answers_its_compose_name_and_no_browser(compose: dict, service_name: str) -> None:
    """Inside the compose network the services are called by name, which the request guard must allow; no web
    origin is allowed, as outside compose."""
    env = environment(services(compose)[service_name])
    policy = Policy.from_env(env)
    assert policy.allowed_hosts == {service_name}
    assert policy.allowed_origins == frozenset()
    assert refusal(f"{service_name}:4566", None, policy) is None
    assert refusal("attacker.example:4566", None, policy) is not None
