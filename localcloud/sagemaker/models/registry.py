"""Models and endpoint configurations: plain records that endpoints and transform jobs use."""

from __future__ import annotations

from typing import Any

from localcloud.sagemaker.exceptions import ValidationException
from localcloud.sagemaker.models.base import Context, Operation, already_exists, arn, list_page, now, pick, require
from localcloud.sagemaker.models.model_packages import ModelPackages
from localcloud.sagemaker.runners.artifacts import parse_s3_uri

MODEL = "model"
ENDPOINT_CONFIG = "endpoint-config"
RESOLVED = "_resolved_primary_container"  # stored beside a model's description, never returned


def model_not_found(name: str) -> ValidationException:
    return ValidationException(f'Could not find model "{arn("model", name)}".')


def endpoint_config_not_found(name: str) -> ValidationException:
    return ValidationException(f'Could not find endpoint configuration "{name}".')


def require_s3_capture_destination(data_capture: dict[str, Any] | None) -> None:
    """The model's pattern also admits https:// URLs, which the local SageMaker cannot deliver to: refused up
    front rather than retried for ever."""
    if not data_capture:
        return
    destination = data_capture["DestinationS3Uri"]
    try:
        parse_s3_uri(destination)
    except ValueError:
        raise ValidationException(
            "The local SageMaker delivers data capture only to s3://<bucket>/<prefix> destinations, "
            f"not '{destination}'."
        ) from None


class ModelRegistry:
    def __init__(self, ctx: Context, packages: ModelPackages) -> None:
        self.ctx = ctx
        self.packages = packages

    def operations(self) -> dict[str, Operation]:
        return {
            "CreateModel": self.create_model,
            "DescribeModel": self.describe_model,
            "DeleteModel": self.delete_model,
            "ListModels": self.list_models,
            "CreateEndpointConfig": self.create_endpoint_config,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "DeleteEndpointConfig": self.delete_endpoint_config,
            "ListEndpointConfigs": self.list_endpoint_configs,
        }

    # --- models ----------------------------------------------------------------------------
    def create_model(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ModelName"]
        containers = [params["PrimaryContainer"]] if params.get("PrimaryContainer") else params.get("Containers") or []
        if not containers:
            raise ValidationException("Either PrimaryContainer or Containers must be specified.")
        if not all(c.get("Image") or c.get("ModelPackageName") for c in containers):
            raise ValidationException("Every container must specify an Image.")
        for container in containers:
            if container.get("ModelPackageName"):
                self.packages.get_package(container["ModelPackageName"])  # a version that does not exist is refused
        with self.ctx.lock:
            if self.ctx.store.get(MODEL, name):
                raise already_exists("model", arn("model", name))
            description = {k: v for k, v in params.items() if k != "Tags"} | {
                "ModelArn": arn("model", name),
                "CreationTime": now(),
                # A version's image, data and environment are copied now: the model keeps serving them after the
                # version is deleted (pruned). DescribeModel still shows the ModelPackageName it was created from.
                RESOLVED: self.packages.container(containers[0]),
            }
            description.setdefault("EnableNetworkIsolation", False)
            self.ctx.store.put(MODEL, name, description)
        return {"ModelArn": description["ModelArn"]}

    def get_model(self, name: str) -> dict[str, Any]:
        found = self.ctx.store.get(MODEL, name)
        if found is None:
            raise model_not_found(name)
        return found

    def primary_container(self, model: dict[str, Any]) -> dict[str, Any]:
        """The model's first container as it runs (a ModelPackageName resolved to the version's image and data)."""
        if RESOLVED in model:
            return dict(model[RESOLVED])
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]  # stored before RESOLVED
        return self.packages.container(container)

    def describe_model(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in self.get_model(params["ModelName"]).items() if k != RESOLVED}

    def delete_model(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            self.get_model(params["ModelName"])
            self.ctx.store.delete(MODEL, params["ModelName"])
        return {}

    def list_models(self, params: dict[str, Any]) -> dict[str, Any]:
        return list_page(
            self.ctx.store.list(MODEL),
            params,
            result_key="Models",
            name_key="ModelName",
            summarize=lambda m: pick(m, "ModelName", "ModelArn", "CreationTime"),
        )

    # --- endpoint configurations ------------------------------------------------------------
    def create_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointConfigName"]
        variants = [dict(v) for v in params["ProductionVariants"]]
        names = [v["VariantName"] for v in variants]
        if len(set(names)) != len(names):
            raise ValidationException("Each production variant must have a unique VariantName.")
        require_s3_capture_destination(params.get("DataCaptureConfig"))
        with self.ctx.lock:
            if self.ctx.store.get(ENDPOINT_CONFIG, name):
                raise already_exists("endpoint configuration", arn("endpoint-config", name))
            for variant in variants:
                if variant.get("ModelName") is None:
                    raise ValidationException("ProductionVariant ModelName is required.")
                self.get_model(variant["ModelName"])
                variant.setdefault("InitialVariantWeight", 1.0)
            description = {k: v for k, v in params.items() if k != "Tags"} | {
                "ProductionVariants": variants,
                "EndpointConfigArn": arn("endpoint-config", name),
                "CreationTime": now(),
            }
            self.ctx.store.put(ENDPOINT_CONFIG, name, description)
        return {"EndpointConfigArn": description["EndpointConfigArn"]}

    def get_endpoint_config(self, name: str) -> dict[str, Any]:
        return require(self.ctx.store.get(ENDPOINT_CONFIG, name), endpoint_config_not_found(name).message)

    def describe_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.get_endpoint_config(params["EndpointConfigName"])

    def delete_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            self.get_endpoint_config(params["EndpointConfigName"])
            self.ctx.store.delete(ENDPOINT_CONFIG, params["EndpointConfigName"])
        return {}

    def list_endpoint_configs(self, params: dict[str, Any]) -> dict[str, Any]:
        return list_page(
            self.ctx.store.list(ENDPOINT_CONFIG),
            params,
            result_key="EndpointConfigs",
            name_key="EndpointConfigName",
            summarize=lambda c: pick(c, "EndpointConfigName", "EndpointConfigArn", "CreationTime"),
        )
