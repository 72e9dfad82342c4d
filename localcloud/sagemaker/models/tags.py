"""AddTags / ListTags / DeleteTags, keyed by resource ARN (the training DAG's gate reads them)."""

from __future__ import annotations

from typing import Any

from localcloud.sagemaker.models.base import Context, Operation

TAGS = "tags"


class Tags:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def operations(self) -> dict[str, Operation]:
        return {"AddTags": self.add_tags, "ListTags": self.list_tags, "DeleteTags": self.delete_tags}

    def attach(self, resource_arn: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
        with self.ctx.lock:
            current = {t["Key"]: t["Value"] for t in (self.ctx.store.get(TAGS, resource_arn) or {}).get("Tags", [])}
            current.update({t["Key"]: t.get("Value", "") for t in tags})
            merged = [{"Key": k, "Value": v} for k, v in current.items()]
            self.ctx.store.put(TAGS, resource_arn, {"Tags": merged})
        return merged

    def add_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": self.attach(params["ResourceArn"], params["Tags"])}

    def list_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": (self.ctx.store.get(TAGS, params["ResourceArn"]) or {}).get("Tags", [])}

    def delete_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            doomed = set(params["TagKeys"])
            kept = [t for t in self.list_tags(params)["Tags"] if t["Key"] not in doomed]
            self.ctx.store.put(TAGS, params["ResourceArn"], {"Tags": kept})
        return {}
