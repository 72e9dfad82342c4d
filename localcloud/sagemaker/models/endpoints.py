"""Endpoints: Create/Describe/Update/Delete/List, their status machine, and InvokeEndpoint routing.

The stored description (kind `endpoint`) is exactly what DescribeEndpoint returns. Runtime data
stays out of it: what is deployed (`endpoint-deployment`, the resolved variants, so a restart can
bring an endpoint back even after its config or model was deleted) and, in memory only, the routing
table `_fleets` that the invoke hot path reads without touching SQLite.

Each deployment is a `Fleet` of model-server processes per variant, started, stopped and watched by
the `FleetSupervisor` (models/endpoint_fleet.py). UpdateEndpoint is blue/green: the new fleet must
pass /ping while the old one serves, routing switches in one assignment, and the old servers drain
their in-flight requests before they stop. With a `DeploymentConfig` (deployment guardrails,
models/rollout.py) traffic shifts to the new fleet in steps, each baked with the alarms watched, and an
alarm in ALARM puts all traffic back on the old fleet. Every request's figures go to CloudWatch
(runners/metrics.py)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from localcloud.config import ACCOUNT_ID, REGION, aws_managed_s3_key_arn
from localcloud.sagemaker.exceptions import (
    ModelError,
    ModelNotReadyException,
    RuntimeValidationError,
    SageMakerError,
    ServiceUnavailable,
    ValidationException,
)
from localcloud.sagemaker.models.base import Context, Operation, already_exists, arn, list_page, now, pick
from localcloud.sagemaker.models.endpoint_fleet import (
    LOG_GROUP_PREFIX,
    PING_BUDGET_S,
    DeployFailed,
    Fleet,
    FleetSupervisor,
    VariantSpec,
    in_background,
)
from localcloud.sagemaker.models.invocation import Invocation, InvocationResult
from localcloud.sagemaker.models.quotas import InstanceQuotas, instances_in_use, requested_instances
from localcloud.sagemaker.models.registry import ModelRegistry
from localcloud.sagemaker.models.rollout import (
    BAKED,
    ROLL_BACK,
    AlarmWatch,
    RolloutPlan,
    Step,
    TrafficSplit,
    bake_verdict,
    plan_rollout,
    rollback_reason,
)
from localcloud.sagemaker.runners.artifacts import parse_s3_uri
from localcloud.sagemaker.runners.capture import CaptureWriter, enabled_sampling
from localcloud.sagemaker.runners.hosting import WorkerReply, WorkerRetired, WorkerTimeout, WorkerUnavailable
from localcloud.sagemaker.runners.metrics import MetricPublisher, Outcome, Series

log = logging.getLogger(__name__)

ENDPOINT = "endpoint"
DEPLOYMENT = "endpoint-deployment"
DEPLOYMENT_CONFIG = "endpoint-deployment-config"  # the DeploymentConfig RetainDeploymentConfig reuses
ALARM_POLL_S = 1.0  # how often a bake looks at its alarms
ROUTING_ATTEMPTS = 3  # a request that lands on a server being retired is routed again
INVOCATION_TIMED_OUT = (
    "Your invocation timed out while waiting for a response from container primary. "
    "Review the latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)
LOGS_CONSOLE = f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#logEventViewer:group="


def endpoint_not_found(name: str) -> ValidationException:
    return ValidationException(f'Could not find endpoint "{arn("endpoint", name)}".')


def capture_summary(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    enabled = bool(config.get("EnableCapture", True))  # the API's documented default
    return {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": config["InitialSamplingPercentage"],
        "DestinationS3Uri": config["DestinationS3Uri"],
        # With no key named, SageMaker encrypts captures with the account's default S3 key, and says which.
        "KmsKeyId": config.get("KmsKeyId") or aws_managed_s3_key_arn(),
    }


def resolved_image(specified: str) -> str:
    """The image by digest, as SageMaker resolves a tag when it deploys: `<registry>/<repository>@sha256:<digest>`.
    No registry is asked here, so the digest stands for the tag: the same image always resolves the same."""
    if "@sha256:" in specified:
        return specified
    repository = specified.rsplit(":", 1)[0] if ":" in specified.rsplit("/", 1)[-1] else specified
    return f"{repository}@sha256:{hashlib.sha256(specified.encode()).hexdigest()}"


def desired_summaries(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "VariantName": v["VariantName"],
            "DesiredWeight": float(v.get("InitialVariantWeight", 1.0)),
            "DesiredInstanceCount": int(v.get("InitialInstanceCount") or 1),
        }
        for v in config["ProductionVariants"]
    ]


def deployed_summaries(specs: list[VariantSpec], resolution_time: float) -> list[dict[str, Any]]:
    return [
        {
            "VariantName": s.VariantName,
            "DeployedImages": [
                {"SpecifiedImage": s.Image, "ResolvedImage": resolved_image(s.Image), "ResolutionTime": resolution_time}
            ],
            "CurrentWeight": s.Weight,
            "DesiredWeight": s.Weight,
            "CurrentInstanceCount": s.InstanceCount,
            "DesiredInstanceCount": s.InstanceCount,
        }
        for s in specs
    ]


def pending_summary(config: dict[str, Any], status: str, message: str) -> dict[str, Any]:
    """PendingDeploymentSummary while an update runs: the new config and its variants' status."""
    started = now()
    variants = [
        {
            "VariantName": v["VariantName"],
            "DesiredWeight": v["DesiredWeight"],
            "DesiredInstanceCount": v["DesiredInstanceCount"],
            "VariantStatus": [{"Status": status, "StatusMessage": message, "StartTime": started}],
        }
        for v in desired_summaries(config)
    ]
    return {"EndpointConfigName": config["EndpointConfigName"], "ProductionVariants": variants, "StartTime": started}


def model_error(endpoint_name: str, status: int, message: str) -> ModelError:
    side = "client" if 400 <= status < 500 else "server"
    group = f"{LOG_GROUP_PREFIX}/{endpoint_name}"
    return ModelError(
        f'Received {side} error ({status}) from primary with message "{message}". See {LOGS_CONSOLE}{group} '
        f"in account {ACCOUNT_ID} for more information.",
        original_status=status,
        original_message=message,
        log_stream_arn=f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{group}",
    )


class Endpoints:
    def __init__(self, ctx: Context, registry: ModelRegistry) -> None:
        self.ctx = ctx
        self.registry = registry
        self.capture: CaptureWriter | None = None
        self.metrics: MetricPublisher | None = None
        self._fleets: dict[str, Fleet] = {}  # endpoint name -> the fleet serving it (routing table)
        self._splits: dict[str, TrafficSplit] = {}  # endpoint -> the new fleet and its share, during a rollout
        self._recovering: set[str] = set()  # InService endpoints whose fleet is still starting after a restart
        self._updating: dict[str, int] = {}  # endpoint -> instances of the fleet an update is starting beside the old
        self.quotas = InstanceQuotas.from_env()
        self.supervisor = FleetSupervisor(ctx, self._fleets)

    def operations(self) -> dict[str, Operation]:
        return {
            "CreateEndpoint": self.create_endpoint,
            "DescribeEndpoint": self.describe_endpoint,
            "UpdateEndpoint": self.update_endpoint,
            "DeleteEndpoint": self.delete_endpoint,
            "ListEndpoints": self.list_endpoints,
        }

    # --- control plane --------------------------------------------------------------------------
    def create_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name, config_name = params["EndpointName"], params["EndpointConfigName"]
        with self.ctx.lock:
            if self.ctx.store.get(ENDPOINT, name):
                raise already_exists("endpoint", arn("endpoint", name))
            config = self.registry.get_endpoint_config(config_name)
            self._check_quotas(config)
            if deployment_config := params.get("DeploymentConfig"):
                plan_rollout(deployment_config, sum(requested_instances(config).values()))  # refused now, not later
            created = now()
            description: dict[str, Any] = {
                "EndpointName": name,
                "EndpointArn": arn("endpoint", name),
                "EndpointConfigName": config_name,
                "ProductionVariants": desired_summaries(config),
                "EndpointStatus": "Creating",
                "CreationTime": created,
                "LastModifiedTime": created,
            }
            if summary := capture_summary(config.get("DataCaptureConfig")):
                description["DataCaptureConfig"] = summary
            self.ctx.store.put(ENDPOINT, name, description)
            if deployment_config:  # CreateEndpoint only stores it, for UpdateEndpoint(RetainDeploymentConfig=true)
                self.ctx.store.put(DEPLOYMENT_CONFIG, name, deployment_config)
        in_background(self._deploy, name, config, False, None)
        return {"EndpointArn": description["EndpointArn"]}

    def describe_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._get(params["EndpointName"])

    def update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        with self.ctx.lock:
            description = self._get(name)
            status = description["EndpointStatus"]
            if status == "Failed":
                raise ValidationException(f'Cannot update failed endpoint "{description["EndpointArn"]}".')
            if status != "InService" or name in self._recovering:
                raise ValidationException(f'Cannot update in-progress endpoint "{description["EndpointArn"]}".')
            config = self.registry.get_endpoint_config(params["EndpointConfigName"])
            deployment_config = params.get("DeploymentConfig")
            if deployment_config is None and params.get("RetainDeploymentConfig"):
                deployment_config = self.ctx.store.get(DEPLOYMENT_CONFIG, name)
            plan = plan_rollout(deployment_config, sum(requested_instances(config).values()))
            self._require_alarms(plan)
            # Blue/green: the new fleet starts while the old one serves, so both count until the switch.
            self._updating[name] = self._check_quotas(config)
            description.pop("FailureReason", None)
            changes: dict[str, Any] = {"EndpointStatus": "Updating", "LastModifiedTime": now()}
            changes["PendingDeploymentSummary"] = pending_summary(config, "Creating", "Launching the new fleet.")
            if deployment_config:
                self.ctx.store.put(DEPLOYMENT_CONFIG, name, deployment_config)
                changes["LastDeploymentConfig"] = deployment_config
            self.ctx.store.put(ENDPOINT, name, description | changes)
        in_background(self._deploy, name, config, True, plan)
        return {"EndpointArn": description["EndpointArn"]}

    def _require_alarms(self, plan: RolloutPlan | None) -> None:
        """SageMaker reads the rollback alarms with cloudwatch:DescribeAlarms; an alarm it cannot find is refused
        here, before anything starts (AWS's wording for this case is not in the contracts doc)."""
        if plan is None or not plan.alarms:
            return
        missing = AlarmWatch(self.ctx.client("cloudwatch"), plan.alarms, datetime.now(UTC)).missing()
        if missing:
            raise ValidationException(
                f"AutoRollbackConfiguration names CloudWatch alarms that do not exist: {', '.join(missing)}."
            )

    def delete_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        with self.ctx.lock:
            description = self._get(name)
            self.ctx.store.put(ENDPOINT, name, description | {"EndpointStatus": "Deleting", "LastModifiedTime": now()})
            fleet = self._fleets.pop(name, None)  # from now on invoke answers "not found"
            self._splits.pop(name, None)  # a rollout in progress stops its new fleet when it sees Deleting
            self._recovering.discard(name)
        in_background(self._tear_down, name, fleet)
        return {}

    def list_endpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        return list_page(
            self.ctx.store.list(ENDPOINT),
            params,
            result_key="Endpoints",
            name_key="EndpointName",
            status_key="EndpointStatus",
            summarize=lambda e: pick(
                e, "EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus"
            ),
        )

    def _check_quotas(self, config: dict[str, Any]) -> int:
        """Refuse a deployment the instance quotas cannot hold (caller holds ctx.lock); returns its instances."""
        requested = requested_instances(config)
        in_use = instances_in_use(self.ctx.store.list(ENDPOINT)) + sum(self._updating.values())
        self.quotas.check(requested, in_use)
        return sum(requested.values())

    def _get(self, name: str) -> dict[str, Any]:
        description = self.ctx.store.get(ENDPOINT, name)
        if description is None:
            raise endpoint_not_found(name)
        return description

    # --- runtime (hot path: no SQLite, no locks held across awaits) ---------------------------
    def _route(self, name: str) -> Fleet | None:
        """The fleet for the next request: during a rollout the new fleet takes exactly its share."""
        fleet = self._fleets.get(name)
        split = self._splits.get(name)
        if fleet is not None and split is not None and split.take():
            return split.fleet  # type: ignore[no-any-return]
        return fleet

    async def invoke(self, invocation: Invocation) -> InvocationResult:
        name = invocation.endpoint_name
        started = time.perf_counter()
        for _ in range(ROUTING_ATTEMPTS):
            fleet = self._route(name)
            if fleet is None:
                if name in self._recovering:
                    raise ModelNotReadyException(f"Endpoint {name} is starting after a restart; retry shortly.")
                raise RuntimeValidationError(f"Endpoint {name} of account {ACCOUNT_ID} not found.")
            pool = fleet.choose(invocation.target_variant)
            server = pool.next_server()
            if server is None:
                variant = pool.spec.VariantName
                raise ServiceUnavailable(f"No instance of variant {variant} of endpoint {name} is up; restarting it.")
            sent = time.perf_counter()
            try:
                reply = await server.invoke(
                    invocation.body, invocation.content_type, invocation.accept, invocation.custom_attributes
                )
                break
            except WorkerRetired:
                continue  # the routing table has switched to a new fleet: route again
            except WorkerTimeout as error:
                self._measure(fleet, pool.spec, None, started, sent, time.perf_counter())
                raise model_error(name, 0, INVOCATION_TIMED_OUT) from error
            except WorkerUnavailable as error:
                self._measure(fleet, pool.spec, None, started, sent, time.perf_counter())
                log.warning("endpoint %s: %s", name, error.reason)
                raise ServiceUnavailable(
                    f"The instance serving variant {pool.spec.VariantName} of endpoint {name} is unavailable."
                ) from error
        else:
            raise ServiceUnavailable(f"Endpoint {name} is switching deployments; retry.")
        answered = time.perf_counter()
        try:
            return self._result(fleet, pool.spec.VariantName, invocation, reply)
        finally:
            self._measure(fleet, pool.spec, reply.status, started, sent, answered)

    def _measure(
        self, fleet: Fleet, spec: VariantSpec, status: int | None, started: float, sent: float, answered: float
    ) -> None:
        """One request's figures for CloudWatch: the model's time, and SageMaker's own (routing, capture)."""
        if self.metrics is None:
            return
        model_us = (answered - sent) * 1e6
        overhead_us = max(0.0, (time.perf_counter() - started) * 1e6 - model_us)
        series = Series(
            fleet.endpoint_name, spec.VariantName, fleet.config_name, spec.InstanceCount, fleet.metrics_by_config
        )
        self.metrics.record(series, Outcome(status, model_us, overhead_us))

    def _result(self, fleet: Fleet, variant: str, invocation: Invocation, reply: WorkerReply) -> InvocationResult:
        if not 200 <= reply.status < 300:
            raise model_error(fleet.endpoint_name, reply.status, reply.body.decode("utf-8", errors="replace"))
        result = InvocationResult(reply.body, reply.content_type, variant, reply.custom_attributes)
        if fleet.data_capture is not None and self.capture is not None:
            try:
                self.capture.record(fleet.endpoint_name, variant, fleet.data_capture, invocation, result)
            except Exception:  # capture must never fail the caller's request
                log.exception("data capture failed for endpoint %s", fleet.endpoint_name)
        return result

    # --- deployments ----------------------------------------------------------------------------
    def _deploy(self, name: str, config: dict[str, Any], is_update: bool, plan: RolloutPlan | None) -> None:
        started = time.monotonic()
        guarded = is_update and plan is not None and plan.guarded
        try:
            previous = self.ctx.store.get(DEPLOYMENT, name) or {}
            deployment = {
                "EndpointConfigName": config["EndpointConfigName"],
                "Variants": [asdict(spec) for spec in self._resolve_variants(config)],
                "DataCaptureConfig": config.get("DataCaptureConfig"),
                # Once a deployment has shifted traffic, the metrics carry EndpointConfigName too, and keep it.
                "MetricsByConfig": guarded or bool(previous.get("MetricsByConfig")),
            }
            self._require_capture_bucket(deployment["DataCaptureConfig"])
            fleet = self.supervisor.start(name, deployment)
        except DeployFailed as failure:
            log.warning("endpoint %s: deployment failed: %s", name, failure.reason)
            changes = {"EndpointStatus": "InService" if is_update else "Failed", "FailureReason": failure.reason[:1024]}
            self._change_description(name, changes, settled=True)
        else:
            if guarded:
                assert plan is not None
                self._shift(name, fleet, deployment, plan, started)
            else:
                self._activate(name, fleet, deployment, touch=True)
        finally:
            if is_update:  # from here on the description (old or new config) holds the count
                with self.ctx.lock:
                    self._updating.pop(name, None)

    def _require_capture_bucket(self, data_capture: dict[str, Any] | None) -> None:
        """AWS checks the capture destination only when it deploys, failing the endpoint if it cannot write
        there; here the check is a HeadBucket against MiniStack, so records are never spooled for nowhere."""
        if enabled_sampling(data_capture) is None:
            return
        assert data_capture is not None
        destination = data_capture["DestinationS3Uri"]
        try:
            bucket, _ = parse_s3_uri(destination)  # a config stored before s3:// was required may hold https://
        except ValueError as error:
            raise DeployFailed(f"Cannot write data capture to {destination}: not an s3:// destination.") from error
        try:
            self.ctx.client("s3").head_bucket(Bucket=bucket)
        except Exception as error:
            log.warning("endpoint capture destination %s: %s", destination, error)
            raise DeployFailed(
                f"Cannot write data capture to {destination}: the S3 bucket {bucket} does not exist or is not "
                "accessible."
            ) from error

    def _resolve_variants(self, config: dict[str, Any]) -> list[VariantSpec]:
        specs = []
        for variant in config["ProductionVariants"]:
            try:
                model = self.registry.get_model(variant["ModelName"])
                container = self.registry.primary_container(model)
            except SageMakerError as error:
                raise DeployFailed(error.message) from error
            specs.append(
                VariantSpec(
                    VariantName=variant["VariantName"],
                    ModelName=variant["ModelName"],
                    Image=container.get("Image", ""),
                    ModelDataUrl=container.get("ModelDataUrl"),
                    Environment=dict(container.get("Environment") or {}),
                    InstanceCount=int(variant.get("InitialInstanceCount") or 1),
                    Weight=float(variant.get("InitialVariantWeight", 1.0)),
                    PingBudgetSeconds=float(
                        variant.get("ContainerStartupHealthCheckTimeoutInSeconds") or PING_BUDGET_S
                    ),
                )
            )
        return specs

    # --- guarded deployments (deployment guardrails) ---------------------------------------------
    def _shift(self, name: str, green: Fleet, deployment: dict[str, Any], plan: RolloutPlan, started: float) -> None:
        """Shift traffic to the new fleet step by step, baking each step with the alarms watched; roll back on an
        alarm or on MaximumExecutionTimeoutInSeconds, else switch to it for good."""
        watch = AlarmWatch(self.ctx.client("cloudwatch"), plan.alarms, datetime.now(UTC) - timedelta(seconds=1))
        deadline = started + plan.timeout_s
        for step in plan.steps:
            with self.ctx.lock:
                if not self._rollout_goes_on(name):
                    self._splits.pop(name, None)
                    abandoned = True
                else:
                    self._splits[name] = TrafficSplit(green, step.share)
                    abandoned = False
            if abandoned:
                self.supervisor.stop(green)
                return
            self._show_step(name, deployment, step)
            reason = self._bake(name, watch, step.bake_s, deadline, plan.timeout_s)
            if reason == "":
                self.supervisor.stop(green)  # deleted or shutting down meanwhile
                return
            if reason is not None:
                self._roll_back(name, green, reason)
                return
        self._activate(name, green, deployment, touch=True)

    def _rollout_goes_on(self, name: str) -> bool:
        description = self.ctx.store.get(ENDPOINT, name)
        closing = self.supervisor.closing.is_set()
        return description is not None and description["EndpointStatus"] == "Updating" and not closing

    def _bake(self, name: str, watch: AlarmWatch, bake_s: float, deadline: float, timeout_s: float) -> str | None:
        """Wait `bake_s`, looking at the alarms at least once: a rollback reason, "" when the rollout was cut short
        (deleted, shut down), None when the bake passed."""
        end = time.monotonic() + bake_s
        while True:
            with self.ctx.lock:
                if not self._rollout_goes_on(name):
                    return ""
            try:
                tripped = watch.tripped()
            except Exception as error:  # CloudWatch unreachable: keep baking, as a missed poll would
                log.warning("endpoint %s: cannot read the rollback alarms: %s", name, error)
                tripped = None
            now_s = time.monotonic()
            verdict = bake_verdict(tripped, now_s, end, deadline)
            if verdict == ROLL_BACK:
                return rollback_reason(tripped, timeout_s)
            if verdict == BAKED:
                return None
            self.supervisor.closing.wait(min(ALARM_POLL_S, end - now_s, deadline - now_s))

    def _show_step(self, name: str, deployment: dict[str, Any], step: Step) -> None:
        with self.ctx.lock:
            description = self.ctx.store.get(ENDPOINT, name)
            if description is None or "PendingDeploymentSummary" not in description:
                return
            pending = description["PendingDeploymentSummary"]
            specs = [VariantSpec(**v) for v in deployment["Variants"]]
            variants = deployed_summaries(specs, now())
            for variant in variants:
                variant["CurrentWeight"] = variant["DesiredWeight"] * step.share
                variant["VariantStatus"] = [
                    {"Status": "Baking", "StatusMessage": step.message[:1024], "StartTime": now()}
                ]
            pending["ProductionVariants"] = variants
            self.ctx.store.put(ENDPOINT, name, description)

    def _roll_back(self, name: str, green: Fleet, reason: str) -> None:
        """All traffic back on the old fleet in one assignment, then the new fleet drains and stops."""
        log.warning("endpoint %s: %s", name, reason)
        with self.ctx.lock:
            self._splits.pop(name, None)
        self._change_description(name, {"EndpointStatus": "RollingBack"})
        self.supervisor.stop(green)  # requests it still holds finish; new ones on it are routed to the old fleet
        self._change_description(name, {"EndpointStatus": "InService", "FailureReason": reason[:1024]}, settled=True)

    def _activate(self, name: str, fleet: Fleet, deployment: dict[str, Any], *, touch: bool) -> None:
        """Switch routing to the fleet in one assignment, record it, then retire the previous fleet."""
        previous: Fleet | None = None
        with self.ctx.lock:
            description = self.ctx.store.get(ENDPOINT, name)
            closing = self.supervisor.closing.is_set()
            stale = description is None or description["EndpointStatus"] == "Deleting" or closing
            if not stale:
                assert description is not None
                previous = self._fleets.get(name)
                self._fleets[name] = fleet
                self._splits.pop(name, None)  # after the switch: a request routed meanwhile retries on this fleet
                self._recovering.discard(name)
                specs = [VariantSpec(**v) for v in deployment["Variants"]]
                description |= {
                    "EndpointConfigName": deployment["EndpointConfigName"],
                    "ProductionVariants": deployed_summaries(specs, now()),
                    "EndpointStatus": "InService",
                }
                if touch:
                    description["LastModifiedTime"] = now()
                    description.pop("FailureReason", None)
                description.pop("DataCaptureConfig", None)
                description.pop("PendingDeploymentSummary", None)
                if summary := capture_summary(deployment.get("DataCaptureConfig")):
                    description["DataCaptureConfig"] = summary
                self.ctx.store.put(ENDPOINT, name, description)
                self.ctx.store.put(DEPLOYMENT, name, deployment)
        if stale:
            self.supervisor.stop(fleet)
        elif previous is not None:
            self.supervisor.stop(previous)

    def _change_description(self, name: str, changes: dict[str, Any], *, settled: bool = False) -> None:
        """Apply changes; `settled`: the deployment is over, so its pending summary goes."""
        if self.supervisor.closing.is_set():
            return  # a deployment cut short by shutdown is settled by recover() at the next start
        with self.ctx.lock:
            description = self.ctx.store.get(ENDPOINT, name)
            if description is not None and description["EndpointStatus"] != "Deleting":
                description = description | changes | {"LastModifiedTime": now()}
                if settled:
                    description.pop("PendingDeploymentSummary", None)
                self.ctx.store.put(ENDPOINT, name, description)

    def _tear_down(self, name: str, fleet: Fleet | None) -> None:
        if fleet is not None:
            self.supervisor.stop(fleet)
        if self.capture is not None:
            self.capture.retire(name)  # its last records go out, then its spool goes with it
        with self.ctx.lock:
            self.ctx.store.delete(ENDPOINT, name)
            self.ctx.store.delete(DEPLOYMENT, name)
            self.ctx.store.delete(DEPLOYMENT_CONFIG, name)
        shutil.rmtree(self.ctx.home / "endpoints" / name, ignore_errors=True)

    # --- life cycle of the component -----------------------------------------------------------
    def recover(self) -> None:
        """After a restart: kill orphaned workers, bring InService endpoints back on their deployment."""
        self.supervisor.kill_orphans()
        self.capture = CaptureWriter(self.ctx.client("s3"), self.ctx.work_dir("data-capture-spool"))
        self.metrics = MetricPublisher(self.ctx.client("cloudwatch"))
        for description in self.ctx.store.list(ENDPOINT):
            self._recover_endpoint(description)
        self.supervisor.start_monitor()

    def _recover_endpoint(self, description: dict[str, Any]) -> None:
        name, status = description["EndpointName"], description["EndpointStatus"]
        deployment = self.ctx.store.get(DEPLOYMENT, name)
        if status == "Deleting":
            self._tear_down(name, None)
            return
        if status == "RollingBack":
            status = "Updating"  # the rollback was under way: the old deployment is what serves
        if status == "Creating" or (status in ("InService", "Updating") and deployment is None):
            reason = "The local SageMaker restarted before the endpoint was deployed. Delete it and create it again."
            self.ctx.store.put(ENDPOINT, name, description | {"EndpointStatus": "Failed", "FailureReason": reason})
            return
        if status not in ("InService", "Updating"):
            return
        assert deployment is not None
        if status == "Updating":
            reason = (
                f"The update was interrupted by a restart; the endpoint still runs {deployment['EndpointConfigName']}."
            )
            description = description | {"EndpointStatus": "InService", "FailureReason": reason}
            description.pop("PendingDeploymentSummary", None)
            self.ctx.store.put(ENDPOINT, name, description)
        self._recovering.add(name)
        in_background(self._redeploy, name, deployment)

    def _redeploy(self, name: str, deployment: dict[str, Any]) -> None:
        try:
            fleet = self.supervisor.start(name, deployment)
        except DeployFailed as failure:
            self._recovering.discard(name)
            self._change_description(name, {"EndpointStatus": "Failed", "FailureReason": failure.reason[:1024]})
            return
        self._activate(name, fleet, deployment, touch=False)

    def shutdown(self) -> None:
        """Stop every worker, letting in-flight requests finish, and only then flush data capture, so
        the records of requests that finished during the drain reach S3 (MiniStack stops after us)."""
        self.supervisor.closing.set()
        with self.ctx.lock:
            fleets = list(self._fleets.values())
            self._fleets.clear()  # from now on invoke answers "not found"
        with self.ctx.lock:
            fleets += [split.fleet for split in self._splits.values()]
            self._splits.clear()
        self.supervisor.stop_all(fleets)
        if self.capture is not None:
            self.capture.close()
        if self.metrics is not None:
            self.metrics.close()
