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

# Patterns that the model states too narrowly to enforce literally (see the contracts doc), by shape name:
# DestinationS3Uri's pattern reads as a one-character bucket; enforced with the bucket as one or more characters.
# Messages still quote the model's pattern, as AWS's do.
_PATTERN_OVERRIDES = {"DestinationS3Uri": "(https|s3)://([^/]+)/?(.*)"}

# The Java character classes the runtime's header patterns use, as Python ranges (inside a [...] class).
# Patterns with any other \p{...} class (Unicode letters and the like) are not enforced.
_JAVA_CLASSES = {"ASCII": r"\x00-\x7F", "Print": r"\x20-\x7E"}

# AWS shortens long values it echoes in "Value '...' at '...'" messages; its exact cut-off is not in the
# contracts doc. 256 characters keep a message readable and bounded whatever the caller sent.
MAX_ECHOED_CHARS = 256
# Every error is counted, but only the first ones are spelled out: a 2 MiB list of bad items would otherwise
# make a message of hundreds of megabytes.
MAX_LISTED_ERRORS = 10
# The deepest non-recursive input shape in the model (CreateAlgorithm) nests 10 levels; only recursive shapes
# (SearchExpression.SubExpressions) go deeper. 100 leaves room for those while the validator's recursion
# (about two frames per level) stays far inside Python's 1000-frame limit.
MAX_NESTING_DEPTH = 100
TOO_DEEP = f"The request body is nested more than {MAX_NESTING_DEPTH} levels deep."


@functools.cache
def service_model(service: str = "sagemaker") -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def operation_model(name: str, service: str = "sagemaker") -> OperationModel:
    model = service_model(service)
    if name not in model.operation_names:
        raise UnknownOperationException(f"The action or operation {name} is not valid for this web service.")
    return model.operation_model(name)


def _python_regex(pattern: str) -> str | None:
    """Java regex -> Python: the \\p{...} classes in _JAVA_CLASSES and \\z (end of input); None when the
    pattern uses a class Python's `re` cannot express."""
    out, in_class, index = [], False, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            escape = pattern[index + 1]
            if escape == "p" and pattern.startswith("{", index + 2):
                end = pattern.find("}", index + 3)
                ranges = _JAVA_CLASSES.get(pattern[index + 3 : end]) if end > 0 else None
                if ranges is None:
                    return None
                out.append(ranges if in_class else f"[{ranges}]")
                index = end + 1
                continue
            out.append(r"\Z" if escape == "z" else pattern[index : index + 2])
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """AWS patterns are Java regexes matched against the whole value; skip ones Python can't read."""
    translated = _python_regex(pattern)
    if translated is None:
        return None
    try:
        return re.compile(translated)
    except re.error:
        return None


def _member_path(parent: str, name: str) -> str:
    member = name[:1].lower() + name[1:]
    return f"{parent}.{member}" if parent else member


def shorten(text: str) -> str:
    """A caller-supplied text as messages echo it: at most MAX_ECHOED_CHARS characters, then "..."."""
    return text if len(text) <= MAX_ECHOED_CHARS else text[:MAX_ECHOED_CHARS] + "..."


def _show(value: Any) -> str:
    return "null" if value is None else shorten(str(value))


def nesting_depth_exceeded(value: Any, limit: int = MAX_NESTING_DEPTH) -> bool:
    """Whether a decoded JSON value nests more than `limit` containers deep; iterative, so any depth is safe."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        container, depth = stack.pop()
        if depth > limit:
            return True
        children = container.values() if isinstance(container, dict) else container
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


class _Collector:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.total = 0

    def add(self, value: Any, path: str, constraint: str) -> None:
        self.total += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(f"Value '{_show(value)}' at '{path}' failed to satisfy constraint: {constraint}")

    def walk(self, shape: Shape, value: Any, path: str) -> None:
        kind = shape.type_name
        if kind == "structure":
            self._structure(shape, value, path)  # type: ignore[arg-type]
        elif kind == "list":
            self._list(shape, value, path)  # type: ignore[arg-type]
        elif kind == "map":
            self._map(shape, value, path)  # type: ignore[arg-type]
        elif kind == "string":
            self._string(shape, value, path)
        elif kind in ("integer", "long"):
            # JSON has one number type; a fraction (or 1e2) here is a type error, as botocore would never send it.
            if isinstance(value, bool) or not isinstance(value, int):
                raise SerializationException(f"Expected an integer at '{path}'")
            self._number(shape, value, path)
        elif kind in ("float", "double"):
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
                raise SerializationException(f"Unknown member '{shorten(name)}' at '{path or 'input'}'")
            if member_value is not None:
                self.walk(member_shape, member_value, _member_path(path, name))

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
            self.walk(shape.value, item, f"{path}.{shorten(key)}.value")

    def _string(self, shape: Shape, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise SerializationException(f"Expected a string at '{path}'")
        self._length(shape, value, len(value), path)
        enum = shape.enum
        if enum and value not in enum:
            self.add(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
            return
        pattern = shape.metadata.get("pattern")
        if pattern:
            compiled = _compiled(_PATTERN_OVERRIDES.get(shape.name, pattern))
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


class ValidationErrors(list[str]):
    """The errors spelled out (at most MAX_LISTED_ERRORS), and how many there were in all."""

    def __init__(self, listed: list[str], total: int) -> None:
        super().__init__(listed)
        self.total = total


def validation_errors(shape: Shape | None, value: Any, path: str = "") -> ValidationErrors:
    if shape is None:
        return ValidationErrors([], 0)
    if nesting_depth_exceeded(value):
        raise SerializationException(TOO_DEEP)
    collector = _Collector()
    collector.walk(shape, value, path)
    return ValidationErrors(collector.errors, collector.total)


def validation_message(errors: list[str]) -> str:
    """`N validation error(s) detected: e1; e2` (AWS's shape); past MAX_LISTED_ERRORS the rest are counted."""
    count = max(len(errors), getattr(errors, "total", 0))
    noun = "error" if count == 1 else "errors"
    message = f"{count} validation {noun} detected: " + "; ".join(errors[:MAX_LISTED_ERRORS])
    unlisted = count - min(len(errors), MAX_LISTED_ERRORS)
    return message + (f"; and {unlisted} more" if unlisted else "")


def raise_for_errors(errors: list[str]) -> None:
    if errors:
        raise ValidationException(validation_message(errors))


def validate_input(operation: OperationModel, params: dict[str, Any]) -> None:
    raise_for_errors(validation_errors(operation.input_shape, params))


def output_errors(operation: OperationModel, body: dict[str, Any]) -> list[str]:
    """Used by tests: a response must satisfy the output shape (required members, enums, ranges)."""
    return validation_errors(operation.output_shape, body)
