"""Validate request parameters (and, in tests, responses) against botocore's own SageMaker model.

botocore checks only required members, types and `min` on the client side; AWS enforces `max`
lengths, patterns, enums and ranges on the server. This module does the server's half, with
AWS's message shape:
    1 validation error detected: Value '<v>' at '<member>' failed to satisfy constraint: ...
"""

from __future__ import annotations

import functools
import re
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from localcloud.sagemaker.exceptions import SerializationException, UnknownOperationException, ValidationException

# Patterns that the model states too narrowly to enforce literally (see the contracts doc):
# DataCaptureConfig.DestinationS3Uri's pattern reads as a one-character bucket.
_UNENFORCED_PATTERN_MEMBERS = {"DestinationS3Uri"}

_JAVA_CLASS = re.compile(r"\\p\{[A-Za-z]+\}")


@functools.cache
def service_model(service: str = "sagemaker") -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def operation_model(name: str, service: str = "sagemaker") -> OperationModel:
    model = service_model(service)
    if name not in model.operation_names:
        raise UnknownOperationException(f"The action or operation {name} is not valid for this web service.")
    return model.operation_model(name)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """AWS patterns are Java regexes matched against the whole value; skip ones Python can't read."""
    if _JAVA_CLASS.search(pattern):
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _member_path(parent: str, name: str) -> str:
    member = name[:1].lower() + name[1:]
    return f"{parent}.{member}" if parent else member


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


class _Collector:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, value: Any, path: str, constraint: str) -> None:
        self.errors.append(f"Value '{_show(value)}' at '{path}' failed to satisfy constraint: {constraint}")

    def walk(self, shape: Shape, value: Any, path: str, member_name: str = "") -> None:
        kind = shape.type_name
        if kind == "structure":
            self._structure(shape, value, path)  # type: ignore[arg-type]
        elif kind == "list":
            self._list(shape, value, path)  # type: ignore[arg-type]
        elif kind == "map":
            self._map(shape, value, path)  # type: ignore[arg-type]
        elif kind == "string":
            self._string(shape, value, path, member_name)
        elif kind in ("integer", "long", "float", "double"):
            self._number(shape, value, path)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise SerializationException(f"Expected a boolean at '{path}'")
        elif kind == "timestamp":
            if not isinstance(value, (int, float, str)) or isinstance(value, bool):
                raise SerializationException(f"Expected a timestamp at '{path}'")
        # blobs arrive base64-encoded as strings; nothing to enforce

    def _structure(self, shape: StructureShape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise SerializationException(f"Start of structure or map found where not expected at '{path or 'input'}'")
        for name in shape.required_members:
            if value.get(name) is None:
                self.add(None, _member_path(path, name), "Member must not be null")
        for name, member_value in value.items():
            member_shape = shape.members.get(name)
            if member_shape is None:
                raise SerializationException(f"Unknown member '{name}' at '{path or 'input'}'")
            if member_value is not None:
                self.walk(member_shape, member_value, _member_path(path, name), name)

    def _length(self, shape: Shape, value: Any, length: int, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if high is not None and length > high:
            self.add(value, path, f"Member must have length less than or equal to {high}")
        if low is not None and length < low:
            self.add(value, path, f"Member must have length greater than or equal to {low}")

    def _list(self, shape: ListShape, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise SerializationException(f"Expected a list at '{path}'")
        self._length(shape, value, len(value), path)
        for index, item in enumerate(value, start=1):
            self.walk(shape.member, item, f"{path}.{index}.member")

    def _map(self, shape: MapShape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise SerializationException(f"Expected a map at '{path}'")
        self._length(shape, value, len(value), path)
        for key, item in value.items():
            self.walk(shape.key, key, f"{path}.key")
            self.walk(shape.value, item, f"{path}.{key}.value")

    def _string(self, shape: Shape, value: Any, path: str, member_name: str) -> None:
        if not isinstance(value, str):
            raise SerializationException(f"Expected a string at '{path}'")
        self._length(shape, value, len(value), path)
        enum = shape.enum
        if enum and value not in enum:
            self.add(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
            return
        pattern = shape.metadata.get("pattern")
        if pattern and member_name not in _UNENFORCED_PATTERN_MEMBERS:
            compiled = _compiled(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                self.add(value, path, f"Member must satisfy regular expression pattern: {pattern}")

    def _number(self, shape: Shape, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SerializationException(f"Expected a number at '{path}'")
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if high is not None and value > high:
            self.add(value, path, f"Member must have value less than or equal to {high}")
        if low is not None and value < low:
            self.add(value, path, f"Member must have value greater than or equal to {low}")


def validation_errors(shape: Shape | None, value: Any, path: str = "") -> list[str]:
    if shape is None:
        return []
    collector = _Collector()
    collector.walk(shape, value, path)
    return collector.errors


def raise_for_errors(errors: list[str]) -> None:
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        raise ValidationException(f"{len(errors)} validation {noun} detected: " + "; ".join(errors))


def validate_input(operation: OperationModel, params: dict[str, Any]) -> None:
    raise_for_errors(validation_errors(operation.input_shape, params))


def output_errors(operation: OperationModel, body: dict[str, Any]) -> list[str]:
    """Used by tests: a response must satisfy the output shape (required members, enums, ranges)."""
    return validation_errors(operation.output_shape, body)
