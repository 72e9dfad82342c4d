"""The SageMaker backend: composes the resource components and maps operation names to them."""

from __future__ import annotations

import logging
from typing import Any

from localcloud.sagemaker.exceptions import UnknownOperationException
from localcloud.sagemaker.models.base import Context, Operation
from localcloud.sagemaker.models.endpoints import Endpoints
from localcloud.sagemaker.models.model_packages import ModelPackages
from localcloud.sagemaker.models.registry import ModelRegistry
from localcloud.sagemaker.models.tags import Tags
from localcloud.sagemaker.models.training import TrainingJobs
from localcloud.sagemaker.models.transform import TransformJobs

log = logging.getLogger(__name__)


class SageMakerBackend:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tags = Tags(ctx)
        self.packages = ModelPackages(ctx)
        self.registry = ModelRegistry(ctx, self.packages)
        self.training = TrainingJobs(ctx)
        self.endpoints = Endpoints(ctx, self.registry)
        self.transforms = TransformJobs(ctx, self.registry)
        self._operations: dict[str, Operation] = {}
        for component in (self.tags, self.packages, self.registry, self.training, self.endpoints, self.transforms):
            self._operations.update(component.operations())

    @property
    def operation_names(self) -> set[str]:
        return set(self._operations)

    def dispatch(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = self._operations.get(operation)
        if handler is None:
            raise UnknownOperationException(f"The local SageMaker does not implement {operation}.")
        result = handler(params)
        if operation.startswith("Create") and params.get("Tags"):
            resource_arn = next((v for k, v in result.items() if k.endswith("Arn")), None)
            if resource_arn:
                self.tags.attach(resource_arn, params["Tags"])
        return result

    def recover(self) -> None:
        """After a crash or restart: nothing stays InProgress, InService endpoints come back."""
        self.training.recover()
        self.transforms.recover()
        self.endpoints.recover()

    def shutdown(self) -> None:
        """Stop serving (flushing data capture) and stop running jobs."""
        self.endpoints.shutdown()
        self.transforms.shutdown()
        self.training.shutdown()
