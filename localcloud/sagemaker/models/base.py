"""What every resource component shares: the context (store, lock, clients), ARNs, clocks,
the AWS not-found/duplicate errors and List* paging."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from localcloud.config import ACCOUNT_ID, REGION
from localcloud.credentials import Credentials
from localcloud.sagemaker.exceptions import ValidationException
from localcloud.sagemaker.store import Store

Operation = Callable[[dict[str, Any]], dict[str, Any]]


def now() -> float:
    """Epoch seconds with a millisecond fraction, the form SageMaker's JSON responses use."""
    return round(time.time(), 3)


def arn(resource_type: str, name: str) -> str:
    # Real SageMaker ARNs lower-case the resource name.
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:{resource_type}/{name.lower()}"


@dataclass
class Context:
    """Everything a component needs besides its own state; built once by the server."""

    store: Store
    home: Path
    ministack_url: str
    pytorch_python: Path
    # The install's keys (LOCALCLOUD_* in the server's environment, set by the launcher): MiniStack checks them.
    credentials: Credentials = field(default_factory=Credentials.from_env)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """boto3 clients to MiniStack (S3, CloudWatch Logs). boto3 clients are thread-safe."""
        with self.lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(
                    service,
                    endpoint_url=self.ministack_url,
                    region_name=REGION,
                    aws_access_key_id=self.credentials.access_key_id,
                    aws_secret_access_key=self.credentials.secret_access_key,
                    config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32),
                )
            return self._clients[service]

    def work_dir(self, *parts: str) -> Path:
        path = self.home.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def require(found: dict[str, Any] | None, message: str) -> dict[str, Any]:
    if found is None:
        raise ValidationException(message)
    return found


def already_exists(kind_words: str, resource_arn: str) -> ValidationException:
    return ValidationException(f'Cannot create already existing {kind_words} "{resource_arn}".')


def list_page(
    items: list[dict[str, Any]],
    params: dict[str, Any],
    *,
    result_key: str,
    name_key: str,
    summarize: Callable[[dict[str, Any]], dict[str, Any]],
    status_key: str | None = None,
) -> dict[str, Any]:
    """Filter, sort and page like SageMaker's List* calls. The last page carries no NextToken:
    an empty string would make Airflow's pagination loop forever."""
    selected = items
    if contains := params.get("NameContains"):
        selected = [i for i in selected if contains.lower() in i[name_key].lower()]
    if status_key and (status := params.get("StatusEquals")):
        selected = [i for i in selected if i.get(status_key) == status]
    if (after := params.get("CreationTimeAfter")) is not None:
        selected = [i for i in selected if i["CreationTime"] > float(after)]
    if (before := params.get("CreationTimeBefore")) is not None:
        selected = [i for i in selected if i["CreationTime"] < float(before)]
    sort_by = params.get("SortBy", "CreationTime")
    sort_field = {"Name": name_key, "CreationTime": "CreationTime", "Status": status_key or name_key}.get(
        sort_by, "CreationTime"
    )
    descending = params.get("SortOrder", "Descending") == "Descending"
    selected = sorted(selected, key=lambda i: i.get(sort_field) or "", reverse=descending)
    try:
        start = int(params.get("NextToken") or 0)
    except ValueError as exc:
        raise ValidationException("Invalid pagination token.") from exc
    size = int(params.get("MaxResults") or 10)
    page = selected[start : start + size]
    result: dict[str, Any] = {result_key: [summarize(i) for i in page]}
    if start + size < len(selected):
        result["NextToken"] = str(start + size)
    return result


def pick(description: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: description[k] for k in keys if k in description}
