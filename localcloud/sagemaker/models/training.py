"""Training jobs: Create/Describe/List/Stop and their status machine. (Being built.)"""
from __future__ import annotations

from localcloud.sagemaker.models.base import Context, Operation


class TrainingJobs:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def operations(self) -> dict[str, Operation]:
        return {}

    def recover(self) -> None:
        pass

    def shutdown(self) -> None:
        pass
