"""registry: the champion is the version behind the endpoint; settling and pruning versions (in-memory client)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.scones import registry
from include.scones.records import CandidateMetadata
from tests.scones.helpers import FakeRegistry

METADATA = CandidateMetadata(
    run_name="scones-20250101-000000-aaaaaaaa",
    training_job_name="scones-20250101-000000-aaaaaaaa",
    data_uri="s3://bkt/datasets/cifar100/ds1/",
    evaluation_uri="s3://bkt/models/j/output/evaluation.json",
    classes=("bicycle", "motorcycle"),
    confidence_threshold=0.93,
    accuracy=0.945,
    pass_share_at_threshold=0.81,
    accuracy_among_passed=None,
)


def test_metadata_travels_as_string_properties_within_the_registrys_limits() -> None:
    properties = METADATA.to_properties()
    assert all(isinstance(v, str) and len(v) <= 256 for v in properties.values()) and len(properties) <= 50
    assert properties["run_name"] == METADATA.run_name and properties["accuracy"] == "0.945"
    assert properties["accuracy_among_passed"] == "null"
    assert CandidateMetadata.from_properties(properties | {"reviewed_by": "ada"}) == METADATA  # unknown: ignored
    with pytest.raises(ValueError, match="accuracy"):
        CandidateMetadata.from_properties({k: v for k, v in properties.items() if k != "accuracy"})


def test_the_live_deployment_is_the_version_behind_the_endpoint() -> None:
    client = FakeRegistry()
    arn = client.add_version(3, "Approved", **METADATA.to_properties())
    client.add_version(4, "Rejected", **METADATA.to_properties())
    client.serve("ep", arn)
    live = registry.live_deployment(client, "ep")
    assert live is not None
    assert (live.model_package_arn, live.model_package_version, live.accuracy) == (arn, 3, 0.945)
    assert live.endpoint_config_name == client.endpoints["ep"]["EndpointConfigName"]
    assert live.model_name == f"{live.endpoint_config_name}-serving" and live.classes == METADATA.classes
    assert live.version_label == f"v3 ({METADATA.run_name})"
    client.serve("ep", client.add_version(5, "Approved", **METADATA.to_properties()), status="Updating")
    assert registry.live_deployment(client, "ep").model_package_version == 5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "case", ["no endpoint", "failed endpoint", "deleting endpoint", "not from a version", "version gone", "config gone"]
)
def test_nothing_is_live_when_the_chain_is_broken(case: str) -> None:
    client = FakeRegistry()
    arn = client.add_version(1, "Approved", **METADATA.to_properties())
    client.serve("ep", None if case == "not from a version" else arn)
    if case == "no endpoint":
        client.endpoints.clear()
    elif case.endswith("endpoint"):
        client.endpoints["ep"]["EndpointStatus"] = "Failed" if case.startswith("failed") else "Deleting"
    elif case == "version gone":
        client.packages.clear()
    elif case == "config gone":
        client.configs.clear()
    assert registry.live_deployment(client, "ep") is None


def test_other_errors_are_not_mistaken_for_nothing_live() -> None:
    class Denied(FakeRegistry):
        def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803
            from tests.scones.helpers import client_error

            raise client_error("AccessDeniedException", "DescribeEndpoint")

    with pytest.raises(ClientError, match="AccessDenied"):
        registry.live_deployment(Denied(), "ep")


def test_settle_records_the_status_why_and_by_whom() -> None:
    client = FakeRegistry()
    arn = client.add_version(1)
    registry.settle(client, arn, registry.REJECTED, "x" * 2000, "ada")
    package = client.packages[arn]
    assert package["ModelApprovalStatus"] == "Rejected" and len(package["ApprovalDescription"]) == 1024
    assert package["CustomerMetadataProperties"][registry.REVIEWER_PROPERTY] == "ada"
    with pytest.raises(ValueError, match="PendingManualApproval"):
        registry.settle(client, arn, registry.PENDING, "back", "ada")


def summaries(*statuses: str) -> list[dict[str, Any]]:
    """Versions 1..n with these statuses."""
    return [
        {"ModelPackageArn": f"arn/{n}", "ModelPackageVersion": n, "ModelApprovalStatus": status}
        for n, status in enumerate(statuses, start=1)
    ]


def test_plan_prune_keeps_the_newest_the_live_and_the_pending() -> None:
    versions = summaries("Approved", "Rejected", "PendingManualApproval", "Approved", "Rejected", "Approved")
    assert registry.plan_prune(versions, "arn/6", keep_last=2) == ["arn/4", "arn/2", "arn/1"]
    assert registry.plan_prune(versions, "arn/1", keep_last=2) == ["arn/4", "arn/2"]  # the live one stays
    assert registry.plan_prune(versions, None, keep_last=6) == []
    assert registry.plan_prune(list(reversed(versions)), None, keep_last=5) == ["arn/1"]  # order-independent


def test_prune_deletes_old_settled_versions_and_never_the_live_one() -> None:
    client = FakeRegistry()
    arns = [client.add_version(n, status, **METADATA.to_properties()) for n, status in
            enumerate(["Approved", "Rejected", "Approved", "Rejected", "Approved"], start=1)]  # fmt: skip
    client.serve("ep", arns[0])  # an old version went live again (a rollback)
    deleted = registry.prune(client, "group", "ep", keep_last=2)
    assert deleted == [arns[2], arns[1]]
    assert set(client.packages) == {arns[0], arns[3], arns[4]}
    assert registry.prune(client, "group", "ep", keep_last=2) == []  # idempotent
    assert [v["ModelPackageVersion"] for v in registry.versions(client, "group")] == [5, 4, 1]  # newest first


def _aws_metadata_value(value: str) -> bool:
    """AWS's CustomerMetadataValue: 1-256 characters of ^([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)$ (localcloud's
    validator skips \\p{L} patterns, so the request tests cannot see this)."""
    import unicodedata

    allowed = all(unicodedata.category(c)[0] in "LZN" or c in "_.:/=+-@" for c in value)
    return allowed and 1 <= len(value) <= 256


def test_the_pattern_check_can_fail() -> None:
    assert _aws_metadata_value("s3://bkt/models/j/output/evaluation.json") and _aws_metadata_value("0.945")
    assert not _aws_metadata_value('["bicycle"]') and not _aws_metadata_value("")


def test_metadata_values_satisfy_the_registrys_value_pattern() -> None:
    bad = {k: v for k, v in METADATA.to_properties().items() if not _aws_metadata_value(v)}
    assert bad == {}
    assert METADATA.to_properties()["classes"] == "bicycle motorcycle"
    assert registry.metadata_value("O'Brien, Ann") == "O-Brien- Ann" and _aws_metadata_value("O-Brien- Ann")


def test_prune_counts_a_version_deleted_meanwhile_as_done_and_other_errors_propagate() -> None:
    from tests.scones.helpers import client_error

    class Racing(FakeRegistry):
        """The first delete fails with `failure`; for ValidationException, someone else deleted the version after
        the listing."""

        failure, raced = "ValidationException", False

        def delete_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
            if not self.raced:
                self.raced = True
                self.packages.pop(ModelPackageName)
                raise client_error(self.failure, "DeleteModelPackage", f"{ModelPackageName} does not exist")
            return super().delete_model_package(ModelPackageName)

    client = Racing()
    arns = [client.add_version(n, "Rejected") for n in range(1, 5)]
    assert registry.prune(client, "group", "ep", keep_last=1) == [arns[1], arns[0]]  # arns[2] went by itself
    assert set(client.packages) == {arns[3]}

    throttled = Racing()
    throttled.failure = "ThrottlingException"
    for n in range(1, 4):
        throttled.add_version(n, "Rejected")
    with pytest.raises(ClientError, match="Throttling"):
        registry.prune(throttled, "group", "ep", keep_last=1)


def test_versions_of_a_group_that_does_not_exist_yet_are_none() -> None:
    from tests.scones.helpers import client_error

    class NoGroup(FakeRegistry):
        message = "Model Package Group group does not exist."

        def get_paginator(self, name: str) -> Any:
            from types import SimpleNamespace

            def paginate(ModelPackageGroupName: str) -> Any:  # noqa: N803
                raise client_error("ValidationException", "ListModelPackages", self.message)

            return SimpleNamespace(paginate=paginate)

    assert registry.versions(NoGroup(), "group") == []
    assert registry.prune(NoGroup(), "group", "ep", keep_last=1) == []
    other = NoGroup()
    other.message = "1 validation error detected: Value at 'modelPackageGroupName' failed"
    with pytest.raises(ClientError, match="validation error"):
        registry.versions(other, "group")


def test_a_reviewer_without_a_name_is_recorded_as_unknown() -> None:
    client = FakeRegistry()
    arn = client.add_version(1)
    registry.settle(client, arn, registry.APPROVED, "ok", "")
    assert client.packages[arn]["CustomerMetadataProperties"][registry.REVIEWER_PROPERTY] == "unknown"
    assert client.packages[arn]["ModelApprovalStatus"] == "Approved"
