"""Batch transform jobs. (Being built.)"""
from __future__ import annotations

from localcloud.sagemaker.models.base import Context, Operation
from localcloud.sagemaker.models.registry import ModelRegistry


class TransformJobs:
    def __init__(self, ctx: Context, registry: ModelRegistry) -> None:
        self.ctx = ctx
        self.registry = registry

    def operations(self) -> dict[str, Operation]:
        return {}

    def recover(self) -> None:
        pass

    def shutdown(self) -> None:
        pass
