"""Endpoints: Create/Describe/Update/Delete/List and InvokeEndpoint routing. (Being built.)"""
from __future__ import annotations

from localcloud.config import ACCOUNT_ID
from localcloud.sagemaker.exceptions import RuntimeValidationError
from localcloud.sagemaker.models.base import Context, Operation
from localcloud.sagemaker.models.invocation import Invocation, InvocationResult
from localcloud.sagemaker.models.registry import ModelRegistry


class Endpoints:
    def __init__(self, ctx: Context, registry: ModelRegistry) -> None:
        self.ctx = ctx
        self.registry = registry

    def operations(self) -> dict[str, Operation]:
        return {}

    async def invoke(self, invocation: Invocation) -> InvocationResult:
        raise RuntimeValidationError(f"Endpoint {invocation.endpoint_name} of account {ACCOUNT_ID} not found.")

    def recover(self) -> None:
        pass

    def shutdown(self) -> None:
        pass
