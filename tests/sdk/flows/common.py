"""What both SDK flows share: channels built from the vendored CIFAR-100 images, a recorder of every SageMaker
response the SDK received (raw bytes, for the test to check against botocore's output shapes), and the result
file. Standard library and boto3 only: it runs in the SDK's venv, as the user's code would."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import boto3

PROJECT_ROOT = Path(__file__).resolve().parents[3]
MODEL_CODE = PROJECT_ROOT / "include" / "model"
DATASET = PROJECT_ROOT / "datasets" / "cifar100-bicycle-motorcycle"
TRAINING_ROLE = "SageMaker-AutoRole-Training"  # made by `make up`, as IamRoleResolver makes it on AWS
SERVING_ROLE = "SageMaker-AutoRole-Serving"
INSTANCE_TYPE = "ml.m5.large"
PYTORCH_VERSION, PYTHON_VERSION = "2.5.1", "py311"
# Short on purpose: the flows prove the SDK's plumbing, not the model's accuracy (make bench measures that).
HYPERPARAMETERS = {"epochs": 1, "batch_size": 16, "members": 1, "confidence_threshold": 0.93}
PER_CLASS = {"train": 24, "test": 8}


def arguments() -> argparse.Namespace:
    """The flow's arguments; also shows the SDK's own progress (job logs included) as a user's script would."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True, help="where responses.jsonl and result.json go")
    parser.add_argument("--name", required=True, help="a run-unique prefix for the flow's resources")
    return parser.parse_args()


def rows_by_label() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for row in (DATASET / "train.lst").read_text().splitlines():
        rows.setdefault(row.split("\t")[1], []).append(row)
    return rows


def write_channels(root: Path) -> dict[str, Path]:
    """train/ and test/ as the project's transform step writes them: `<split>.lst` and images/."""
    rows = rows_by_label()
    channels = {}
    offset = 0
    for split, count in PER_CLASS.items():
        chosen = [row for label in sorted(rows) for row in rows[label][offset : offset + count]]
        offset += count
        images = root / split / "images"
        images.mkdir(parents=True)
        for row in chosen:
            shutil.copy(DATASET / "train" / row.split("\t")[2], images)
        (root / split / f"{split}.lst").write_text("".join(f"{row}\n" for row in chosen))
        channels[split] = root / split
    return channels


def sample_png() -> bytes:
    first = (DATASET / "train.lst").read_text().splitlines()[0]
    return (DATASET / "train" / first.split("\t")[2]).read_bytes()


class ResponseRecorder:
    """Every SageMaker control-plane response, as bytes on the wire, appended to responses.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, http_response: Any, model: Any, **_: Any) -> None:
        record = {
            "operation": model.name,
            "status": http_response.status_code,
            "body": http_response.content.decode("utf-8", "replace"),
        }
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


def recorded_session(out: Path) -> boto3.Session:
    """A boto3 session whose SageMaker clients record what they receive (a botocore event handler: the SDK's
    own code is untouched). Endpoints and keys come from the environment (`. .localcloud/env`)."""
    out.mkdir(parents=True, exist_ok=True)
    session = boto3.Session()
    session.events.register("after-call.sagemaker", ResponseRecorder(out / "responses.jsonl"))
    return session


def default_bucket(session: boto3.Session) -> str:
    """The name the SDK gives its default bucket. The SDK finds the account through STS at the regional endpoint
    it names explicitly (https://sts.<region>.amazonaws.com, past AWS_ENDPOINT_URL), so the flows name the bucket
    themselves with `Session(default_bucket=...)`, the SDK's own setting; the account comes from the local STS."""
    account = session.client("sts").get_caller_identity()["Account"]
    return f"sagemaker-{session.region_name}-{account}"


def write_result(out: Path, result: dict[str, Any]) -> None:
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
