"""The Model Registry: model package groups, their numbered versions with metrics and an approval status, and the
container a model deployed from a version runs (aws-contracts-2.md section 1).

A group's versions are numbered 1, 2, ... in creation order, and a number is never reused, even after a version
is deleted. Packages are stored exactly as DescribeModelPackage returns them. Requests reach here validated
against botocore's model (names, lengths, enums, the CustomerMetadataProperties limits); the rules botocore
cannot express (which name to use, the approval transitions, a group that still has versions) are checked here,
with AWS's codes.

`ClientToken` makes CreateModelPackage idempotent, as the API reference says: a second call with a token already
used in the group answers the version that call created, and creates nothing (a retried registration task leaves
one version)."""

from __future__ import annotations

from typing import Any

from localcloud.sagemaker import validation
from localcloud.sagemaker.exceptions import ConflictException, ValidationException
from localcloud.sagemaker.models.base import Context, Operation, arn, list_page, now, pick

GROUP = "model-package-group"
PACKAGE = "model-package"
CLIENT_TOKEN = "model-package-client-token"  # "<group>/<token>" -> the version's store key
APPROVED, REJECTED, PENDING = "Approved", "Rejected", "PendingManualApproval"
# The developer guide's transitions; going back to PendingManualApproval is not among them.
ALLOWED_TRANSITIONS = {PENDING: {APPROVED, REJECTED}, REJECTED: {APPROVED}, APPROVED: {REJECTED}}
_DESCRIBED_MEMBERS = frozenset(validation.service_model().operation_model("DescribeModelPackage").output_shape.members)
_SUMMARY_MEMBERS = (
    "ModelPackageName",
    "ModelPackageGroupName",
    "ModelPackageVersion",
    "ModelPackageArn",
    "ModelPackageDescription",
    "CreationTime",
    "ModelPackageStatus",
    "ModelApprovalStatus",
)


def group_arn(name: str) -> str:
    return arn("model-package-group", name)


def package_arn(key: str) -> str:
    """`key` is `<group>/<version>` for a version, the package's name for an unversioned package."""
    return arn("model-package", key)


def _group_key(value: str) -> str:
    """A group named by name or ARN; ARNs lower-case the name, so the store's keys are lower case."""
    return (value.split(":model-package-group/", 1)[1] if ":model-package-group/" in value else value).lower()


def _package_key(value: str) -> str:
    """A package named by ARN (`...:model-package/<group>/<n>` or `.../<name>`), `<group>/<n>`, or its name."""
    return (value.split(":model-package/", 1)[1] if ":model-package/" in value else value).lower()


def group_not_found(name: str) -> ValidationException:
    return ValidationException(f"ModelPackageGroup {group_arn(name)} does not exist.")


def package_not_found(key: str) -> ValidationException:
    return ValidationException(f"ModelPackage {package_arn(key)} does not exist.")


def _summary(package: dict[str, Any]) -> dict[str, Any]:
    summary = pick(package, *_SUMMARY_MEMBERS)
    if "ModelPackageVersion" in summary:
        summary.pop("ModelPackageName", None)  # versioned summaries carry no name (sagemaker-python-sdk #5606)
    return summary


class ModelPackages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def operations(self) -> dict[str, Operation]:
        return {
            "CreateModelPackageGroup": self.create_group,
            "DescribeModelPackageGroup": self.describe_group,
            "ListModelPackageGroups": self.list_groups,
            "DeleteModelPackageGroup": self.delete_group,
            "CreateModelPackage": self.create_package,
            "DescribeModelPackage": self.describe_package,
            "ListModelPackages": self.list_packages,
            "UpdateModelPackage": self.update_package,
            "DeleteModelPackage": self.delete_package,
        }

    # --- groups ----------------------------------------------------------------------------------------------
    def create_group(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ModelPackageGroupName"]
        with self.ctx.lock:
            if self.ctx.store.get(GROUP, _group_key(name)) is not None:
                # Airflow's SageMakerRegisterModelVersionOperator matches this prefix.
                raise ValidationException(f"Model Package Group already exists: {group_arn(name)}")
            description = pick(params, "ModelPackageGroupName", "ModelPackageGroupDescription") | {
                "ModelPackageGroupArn": group_arn(name),
                "CreationTime": now(),
                "CreatedBy": {},
                "ModelPackageGroupStatus": "Completed",
                "next_version": 1,
            }
            self.ctx.store.put(GROUP, _group_key(name), description)
        return {"ModelPackageGroupArn": description["ModelPackageGroupArn"]}

    def get_group(self, value: str) -> dict[str, Any]:
        found = self.ctx.store.get(GROUP, _group_key(value))
        if found is None:
            raise group_not_found(_group_key(value))
        return found

    def describe_group(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in self.get_group(params["ModelPackageGroupName"]).items() if k != "next_version"}

    def list_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        return list_page(
            self.ctx.store.list(GROUP),
            params,
            result_key="ModelPackageGroupSummaryList",
            name_key="ModelPackageGroupName",
            summarize=lambda g: pick(
                g,
                "ModelPackageGroupName",
                "ModelPackageGroupArn",
                "ModelPackageGroupDescription",
                "CreationTime",
                "ModelPackageGroupStatus",
            ),
        )

    def delete_group(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            group = self.get_group(params["ModelPackageGroupName"])
            name = group["ModelPackageGroupName"]
            if any(p.get("ModelPackageGroupName") == name for p in self.ctx.store.list(PACKAGE)):
                raise ConflictException(
                    f"Model Package Group {group_arn(name)} still has model packages: delete them first."
                )
            self.ctx.store.delete(GROUP, _group_key(name))
        return {}

    # --- packages --------------------------------------------------------------------------------------------
    def create_package(self, params: dict[str, Any]) -> dict[str, Any]:
        group_value, name = params.get("ModelPackageGroupName"), params.get("ModelPackageName")
        if group_value and name:
            raise ValidationException(
                "Both ModelPackageName and ModelPackageGroupName are provided in the input. "
                "Cannot determine which one to use."
            )
        if not group_value and not name:
            raise ValidationException("Missing ARN.")
        if group_value and not params.get("InferenceSpecification", {}).get("Containers"):
            raise ValidationException("InferenceSpecification with at least one container is required.")
        created = now()
        description = {k: v for k, v in params.items() if k in _DESCRIBED_MEMBERS}
        with self.ctx.lock:
            if group_value:
                group = self.get_group(group_value)
                token = params.get("ClientToken")
                token_key = f"{group['ModelPackageGroupName']}/{token}".lower() if token else None
                if token_key and (earlier := self.ctx.store.get(CLIENT_TOKEN, token_key)) is not None:
                    if self.ctx.store.get(PACKAGE, earlier["key"]) is not None:
                        return {"ModelPackageArn": package_arn(earlier["key"])}
                version = group["next_version"]
                key = _package_key(f"{group['ModelPackageGroupName']}/{version}")
                description |= {
                    "ModelPackageGroupName": group["ModelPackageGroupName"],
                    "ModelPackageName": group["ModelPackageGroupName"],  # what AWS names a version
                    "ModelPackageVersion": version,
                }
                description.setdefault("ModelApprovalStatus", PENDING)
            else:
                key = _package_key(str(name))
                description["ModelPackageName"] = name
                if self.ctx.store.get(PACKAGE, key) is not None:
                    raise ConflictException(f"Model Package {package_arn(key)} already exists.")
            description |= {
                "ModelPackageArn": package_arn(key),
                "CreationTime": created,
                "LastModifiedTime": created,
                "ModelPackageStatus": "Completed",
                "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
                "CertifyForMarketplace": bool(params.get("CertifyForMarketplace", False)),
            }
            if group_value:
                self.ctx.store.put(
                    GROUP, _group_key(group["ModelPackageGroupName"]), group | {"next_version": version + 1}
                )
                if token_key:
                    self.ctx.store.put(CLIENT_TOKEN, token_key, {"key": key})
            self.ctx.store.put(PACKAGE, key, description)
        return {"ModelPackageArn": description["ModelPackageArn"]}

    def get_package(self, value: str) -> dict[str, Any]:
        key = _package_key(value)
        found = self.ctx.store.get(PACKAGE, key)
        if found is None:
            raise package_not_found(key)
        return found

    def describe_package(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.get_package(params["ModelPackageName"])

    def list_packages(self, params: dict[str, Any]) -> dict[str, Any]:
        packages = self.ctx.store.list(PACKAGE)
        if group_value := params.get("ModelPackageGroupName"):
            group = self.get_group(group_value)["ModelPackageGroupName"]
            packages = [p for p in packages if p.get("ModelPackageGroupName") == group]
        kind = params.get("ModelPackageType") or ("Versioned" if group_value else "Unversioned")
        if kind != "Both":
            packages = [p for p in packages if ("ModelPackageVersion" in p) == (kind == "Versioned")]
        if status := params.get("ModelApprovalStatus"):
            packages = [p for p in packages if p.get("ModelApprovalStatus") == status]
        return list_page(
            packages,
            params,
            result_key="ModelPackageSummaryList",
            name_key="ModelPackageArn",
            summarize=_summary,
        )

    def update_package(self, params: dict[str, Any]) -> dict[str, Any]:
        if ":model-package/" not in params["ModelPackageArn"]:
            raise ValidationException(
                f"ModelPackageArn must be the ARN of a model package, not '{params['ModelPackageArn']}'."
            )
        with self.ctx.lock:
            package = self.get_package(params["ModelPackageArn"])
            if (status := params.get("ModelApprovalStatus")) is not None:
                current = package.get("ModelApprovalStatus", PENDING)
                if status != current and status not in ALLOWED_TRANSITIONS.get(current, set()):
                    raise ValidationException(f"Cannot update ModelApprovalStatus from {current} to {status}.")
                package["ModelApprovalStatus"] = status
            if "ApprovalDescription" in params:
                package["ApprovalDescription"] = params["ApprovalDescription"]
            properties = dict(package.get("CustomerMetadataProperties") or {})
            properties |= params.get("CustomerMetadataProperties") or {}
            for removed in params.get("CustomerMetadataPropertiesToRemove") or []:
                properties.pop(removed, None)
            if properties or "CustomerMetadataProperties" in package:
                package["CustomerMetadataProperties"] = properties
            if "InferenceSpecification" in params:
                package["InferenceSpecification"] = params["InferenceSpecification"]
            package["LastModifiedTime"] = now()
            self.ctx.store.put(PACKAGE, _package_key(package["ModelPackageArn"]), package)
        return {"ModelPackageArn": package["ModelPackageArn"]}

    def delete_package(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            package = self.get_package(params["ModelPackageName"])
            self.ctx.store.delete(PACKAGE, _package_key(package["ModelPackageArn"]))
        return {}

    # --- deployment ------------------------------------------------------------------------------------------
    def container(self, container: dict[str, Any]) -> dict[str, Any]:
        """A model's container as it runs: one naming a ModelPackageName gets the version's image, model data and
        environment (the container's own Environment entries win)."""
        if not container.get("ModelPackageName"):
            return container
        package = self.get_package(container["ModelPackageName"])
        [first, *_] = package["InferenceSpecification"]["Containers"]
        environment = dict(first.get("Environment") or {}) | dict(container.get("Environment") or {})
        return (
            pick(first, "Image", "ModelDataUrl")
            | {"Environment": environment}
            | {k: v for k, v in container.items() if k not in ("ModelPackageName", "Environment")}
        )
