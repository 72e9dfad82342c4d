"""Typed request/result of InvokeEndpoint, shared by the runtime protocol layer and hosting."""

from __future__ import annotations

from dataclasses import dataclass

MAX_PAYLOAD_BYTES = 6_291_456  # SageMaker runtime's documented body limit


@dataclass(frozen=True)
class Invocation:
    endpoint_name: str
    body: bytes
    content_type: str
    accept: str
    custom_attributes: str | None = None
    target_variant: str | None = None
    inference_id: str | None = None


@dataclass(frozen=True)
class InvocationResult:
    body: bytes
    content_type: str
    variant: str
    custom_attributes: str | None = None
