"""Builders shared by the include/scones unit tests: CIFAR-format pickles and archives, PNG source folders,
a scripted HTTP server on 127.0.0.1, and in-memory stand-ins for the provider hooks."""

from __future__ import annotations

import io
import pickle
import socket
import struct
import tarfile
import threading
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from include.scones.cifar import ARCHIVE_ROOT, FINE_LABEL_NAMES, CifarArchive, CifarSplit
from include.scones.records import DeploymentRecord, EvaluationResult

BICYCLE = FINE_LABEL_NAMES.index("bicycle")  # 8
MOTORCYCLE = FINE_LABEL_NAMES.index("motorcycle")  # 48
BUS = FINE_LABEL_NAMES.index("bus")  # 13


# --- CIFAR data ----------------------------------------------------------------------------------------------
def solid_row(value: int) -> np.ndarray:
    """A CIFAR row whose red, green and blue planes are value, value+1, value+2."""
    return np.concatenate([np.full(1024, (value + k) % 256, dtype=np.uint8) for k in range(3)])


def make_split(rows: Sequence[tuple[int, str]], seed: int = 0) -> CifarSplit:
    """A CifarSplit of (fine label, filename) rows with seeded random pixels."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(len(rows), 3072), dtype=np.uint8)
    return CifarSplit(data=data, fine_labels=[label for label, _ in rows], filenames=[name for _, name in rows])


def make_archive(train: Sequence[tuple[int, str]], test: Sequence[tuple[int, str]]) -> CifarArchive:
    return CifarArchive(
        fine_label_names=list(FINE_LABEL_NAMES), splits={"train": make_split(train, 1), "test": make_split(test, 2)}
    )


def split_pickle(split: CifarSplit, protocol: int = 4) -> bytes:
    return pickle.dumps(
        {"data": split.data, "fine_labels": list(split.fine_labels), "filenames": list(split.filenames)},
        protocol=protocol,
    )


def meta_pickle() -> bytes:
    return pickle.dumps({"fine_label_names": list(FINE_LABEL_NAMES)}, protocol=2)


def write_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz holding `members` (names relative to the archive root `cifar-100-python/`)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{ARCHIVE_ROOT}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


class ShellPayload:
    """Unpickling this runs `os.system(command)`: what a tampered CIFAR file would carry."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return os.system, (self.command,)


class EvalPayload:
    def __reduce__(self) -> tuple[Any, ...]:
        return eval, ("1 + 1",)


class ReducePayload:
    """Unpickling this calls `function(*args)`, with the global named as the pickler names `function`."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.function, self.args


def global_call_pickle(module: str, name: str, args: Sequence[str], protocol: int) -> bytes:
    """A hand-built pickle that calls `module.name(*args)` on str arguments, spelling the global as protocol
    `protocol` does (GLOBAL up to 3, STACK_GLOBAL from 4): it can name globals the pickler never writes, such as
    `codecs.encode` (pickle names that function `_codecs.encode`)."""

    def text(value: str) -> bytes:
        raw = value.encode()
        return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw

    if protocol >= 4:
        reference = text(module) + text(name) + pickle.STACK_GLOBAL
    else:
        reference = pickle.GLOBAL + f"{module}\n{name}\n".encode()
    arguments = pickle.MARK + b"".join(text(a) for a in args) + pickle.TUPLE
    return pickle.PROTO + bytes([protocol]) + reference + arguments + pickle.REDUCE + pickle.STOP


class Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's pickle writes CIFAR's dicts: every str (and numpy's raw array bytes) is a Python 2
    `str`, written as SHORT_BINSTRING/BINSTRING. Python 3 cannot emit those opcodes (its protocol-2 `bytes` are
    `_codecs.encode(...)` calls), so this is an emulation: strings are written as Python 2 writes them, everything
    else by Python 3's pure-Python pickler at protocol 2 (the same opcodes Python 2 uses for dicts, lists, ints and
    numpy's reduce), except that numpy 2 names its global `numpy._core.multiarray`, not `numpy.core.multiarray`."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        length = bytes([len(raw)]) if len(raw) < 256 else struct.pack("<i", len(raw))
        opcode = pickle.SHORT_BINSTRING if len(raw) < 256 else pickle.BINSTRING
        self.write(opcode + length + raw)  # type: ignore[attr-defined]  # _Pickler's own, missing from typeshed
        self.memoize(obj)  # type: ignore[attr-defined]

    dispatch[str] = save_python2_str  # type: ignore[assignment]  # typeshed types the table for Unpickler
    dispatch[bytes] = save_python2_str  # type: ignore[assignment]


def python2_pickle(obj: Any) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


# --- PNG source folders for the fixture builder ---------------------------------------------------------------
def write_png_source(root: Path, per_class: int = 10, classes: int = 2, seed: int = 7) -> dict[str, np.ndarray]:
    """RGBA 32x32 PNGs plus train.lst (labels 0..classes-1, indices shuffled); returns filename -> RGB array."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    indices = rng.permutation(per_class * classes) * 3 + 5  # unique, unordered CIFAR indices
    lines, rgb_by_name = [], {}
    for number, index in enumerate(indices):
        label = number % classes
        name = f"class{label}_s_{index:06d}.png"
        rgba = rng.integers(0, 256, size=(32, 32, 4), dtype=np.uint8)
        rgba[..., 3] = rng.integers(1, 256, size=(32, 32), dtype=np.uint8)  # translucent, never fully clear
        Image.fromarray(rgba, mode="RGBA").save(root / name)
        rgb_by_name[name] = rgba[..., :3].copy()
        lines.append(f"{index}\t{label}\t{name}\n")
    (root / "train.lst").write_text("".join(lines))
    return rgb_by_name


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- A scripted HTTP server on 127.0.0.1 ----------------------------------------------------------------------
class ScriptedServer:
    """Answers GET `path` with scripted (status, body) responses in order; the last one repeats."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, bytes]]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                responses = server.script.get(self.path, [(404, b"not found")])
                status, body = responses.pop(0) if len(responses) > 1 else responses[0]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def serve(self, path: str, *responses: tuple[int, bytes]) -> str:
        self.script[path] = list(responses)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# --- In-memory stand-ins for provider hooks and the SageMaker client -----------------------------------------
class MemoryS3Hook:
    """The S3Hook methods the training steps use, over a dict {(bucket, key): bytes}; URIs are parsed by the
    provider's own S3Hook.parse_s3_url."""

    parse_s3_url = staticmethod(S3Hook.parse_s3_url)

    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None) -> None:
        self.objects = dict(objects or {})
        self.buckets = {bucket for bucket, _ in self.objects}
        self.writes: list[tuple[str, str]] = []

    def check_for_bucket(self, bucket_name: str | None = None) -> bool:
        return bucket_name in self.buckets

    def create_bucket(self, bucket_name: str | None = None, region_name: str | None = None) -> None:
        assert bucket_name is not None
        self.buckets.add(bucket_name)

    def check_for_key(self, key: str, bucket_name: str | None = None) -> bool:
        return (bucket_name, key) in self.objects

    def read_key(self, key: str, bucket_name: str | None = None) -> str:
        return self.objects[(str(bucket_name), key)].decode()

    def list_keys(self, bucket_name: str | None = None, prefix: str | None = None) -> list[str]:
        return sorted(k for b, k in self.objects if b == bucket_name and k.startswith(prefix or ""))

    def load_string(self, string_data: str, key: str, bucket_name: str | None = None, replace: bool = False) -> None:
        self.load_bytes(string_data.encode(), key=key, bucket_name=bucket_name, replace=replace)

    def load_bytes(self, bytes_data: bytes, key: str, bucket_name: str | None = None, replace: bool = False) -> None:
        assert bucket_name is not None
        self.writes.append((bucket_name, key))
        self.objects[(bucket_name, key)] = bytes_data

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> None:
        for key in keys:
            self.objects.pop((bucket, key), None)


def client_error(code: str, operation: str, message: str = "") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message or code}}, operation)


def closed_port_url() -> str:
    """A URL on a loopback port nothing listens on (bound, then released): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-100-python.tar.gz"


def deployment_record(**overrides: Any) -> DeploymentRecord:
    """The live version as registry.live_deployment reads it; `overrides` change fields."""
    fields: dict[str, Any] = {
        "endpoint_name": "ep",
        "endpoint_config_name": "scones-20250101-000000-aaaaaaaa",
        "model_name": "scones-20250101-000000-aaaaaaaa-serving",
        "model_package_arn": "arn:aws:sagemaker:us-east-1:000000000000:model-package/group/1",
        "model_package_version": 1,
        "run_name": "scones-20250101-000000-aaaaaaaa",
        "training_job_name": "scones-20250101-000000-aaaaaaaa",
        "accuracy": 0.95,
        "pass_share_at_threshold": 0.8,
        "accuracy_among_passed": 0.99,
        "evaluation_uri": "s3://bkt/models/job/output/evaluation.json",
        "data_uri": "s3://bkt/datasets/cifar100/ds1/",
        "classes": ("bicycle", "motorcycle"),
        "confidence_threshold": 0.93,
        "deployed_at": "2025-01-01T00:00:00+00:00",
    }
    return DeploymentRecord(**(fields | overrides))


class FakeRegistry:
    """A SageMaker client with the calls include/scones/registry.py makes, over in-memory endpoints, configs,
    models and model package versions (summaries as ListModelPackages gives them). Unknown names answer
    ValidationException, as SageMaker does."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from botocore.exceptions import ClientError

        self.exceptions = SimpleNamespace(ClientError=ClientError)
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.packages: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []

    # --- building the state ----------------------------------------------------------------------------------
    def add_version(self, version: int, status: str = "PendingManualApproval", **properties: str) -> str:
        arn = f"arn:aws:sagemaker:us-east-1:000000000000:model-package/group/{version}"
        self.packages[arn] = {
            "ModelPackageArn": arn,
            "ModelPackageGroupName": "group",
            "ModelPackageVersion": version,
            "ModelApprovalStatus": status,
            "CustomerMetadataProperties": dict(properties),
        }
        return arn

    def serve(self, endpoint: str, package_arn: str | None, status: str = "InService") -> None:
        """The endpoint on a config whose model was made from `package_arn` (from an image when None)."""
        config = f"{endpoint}-config-{len(self.configs)}"
        model = f"{config}-serving"
        container = {"ModelPackageName": package_arn} if package_arn else {"Image": "i", "ModelDataUrl": "s3://b/m"}
        self.models[model] = {"ModelName": model, "PrimaryContainer": container}
        self.configs[config] = {"EndpointConfigName": config, "ProductionVariants": [{"ModelName": model}]}
        self.endpoints[endpoint] = {
            "EndpointName": endpoint,
            "EndpointConfigName": config,
            "EndpointStatus": status,
            "LastModifiedTime": "2025-01-01T00:00:00+00:00",
        }

    # --- the client ------------------------------------------------------------------------------------------
    @staticmethod
    def _get(table: dict[str, dict[str, Any]], name: str, operation: str) -> dict[str, Any]:
        if name not in table:
            raise client_error("ValidationException", operation, f"Could not find {name}")
        return dict(table[name])

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803
        return self._get(self.endpoints, EndpointName, "DescribeEndpoint")

    def describe_endpoint_config(self, EndpointConfigName: str) -> dict[str, Any]:  # noqa: N803
        return self._get(self.configs, EndpointConfigName, "DescribeEndpointConfig")

    def describe_model(self, ModelName: str) -> dict[str, Any]:  # noqa: N803
        return self._get(self.models, ModelName, "DescribeModel")

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
        return self._get(self.packages, ModelPackageName, "DescribeModelPackage")

    def update_model_package(self, **request: Any) -> dict[str, Any]:
        package = self.packages[request["ModelPackageArn"]]
        package["ModelApprovalStatus"] = request["ModelApprovalStatus"]
        package["ApprovalDescription"] = request["ApprovalDescription"]
        package["CustomerMetadataProperties"] |= request.get("CustomerMetadataProperties", {})
        return {"ModelPackageArn": request["ModelPackageArn"]}

    def delete_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
        self._get(self.packages, ModelPackageName, "DeleteModelPackage")
        del self.packages[ModelPackageName]
        self.deleted.append(ModelPackageName)
        return {}

    def get_paginator(self, name: str) -> Any:
        assert name == "list_model_packages", name
        registry = self

        class Pages:
            def paginate(self, ModelPackageGroupName: str) -> list[dict[str, Any]]:  # noqa: N803
                summaries = [
                    {k: v for k, v in p.items() if k != "CustomerMetadataProperties"}
                    for p in registry.packages.values()
                    if p["ModelPackageGroupName"] == ModelPackageGroupName
                ]
                return [{"ModelPackageSummaryList": summaries[:2]}, {"ModelPackageSummaryList": summaries[2:]}]

        return Pages()


class RegistryVersions:
    """What registry.prune needs from a fake SageMaker client besides the endpoint calls: settled versions
    1..n of one group (odd ones Approved, even ones Rejected), and models that are not made from a version."""

    def __init__(self, count: int = 7) -> None:
        self.versions = [
            {
                "ModelPackageArn": f"arn:aws:sagemaker:us-east-1:000000000000:model-package/group/{n}",
                "ModelPackageVersion": n,
                "ModelApprovalStatus": "Approved" if n % 2 else "Rejected",
            }
            for n in range(1, count + 1)
        ]

    def arn(self, version: int) -> str:
        return str(self.versions[0]["ModelPackageArn"]).rsplit("/", 1)[0] + f"/{version}"

    def paginator(self) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(paginate=lambda ModelPackageGroupName: [{"ModelPackageSummaryList": self.versions}])  # noqa: N803

    def delete(self, ModelPackageName: str) -> None:  # noqa: N803
        self.versions = [v for v in self.versions if v["ModelPackageArn"] != ModelPackageName]

    @staticmethod
    def describe_model(ModelName: str) -> dict[str, Any]:  # noqa: N803
        return {"ModelName": ModelName, "PrimaryContainer": {"Image": "i"}}  # deployed before the registry


def evaluation_result(**overrides: Any) -> EvaluationResult:
    """A candidate's scores as `evaluate` returns them; `overrides` change fields."""
    fields: dict[str, Any] = {
        "training_job_name": "scones-20250102-000000-bbbbbbbb",
        "data_uri": "s3://bkt/datasets/ds1/",
        "evaluation_uri": "s3://bkt/models/j/output/evaluation.json",
        "accuracy": 0.955,
        "pass_share_at_threshold": 0.82,
        "accuracy_among_passed": 0.99,
    }
    return EvaluationResult(**(fields | overrides))
