"""Endpoint fleets: the model-server processes behind each deployment, and their supervision.

A `Fleet` is one deployment of one endpoint: a `VariantPool` of model servers per production
variant (SAGEMAKER_MODEL_SERVER_WORKERS processes per instance). `FleetSupervisor` starts a fleet
(download, launch, /ping), stops it (drain, terminate, close its log streams), records every
worker's pid under kind `endpoint-processes` so a restarted server can kill orphans, and restarts
workers that die while their fleet serves.

This lives with the models, not the runners, because it writes those pid records to the store and
reads the endpoints' routing table; the processes themselves are `runners.hosting.ModelServer`."""

from __future__ import annotations

import functools
import itertools
import logging
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.config import ACCOUNT_ID
from localcloud.sagemaker.exceptions import RuntimeValidationError
from localcloud.sagemaker.models.base import Context
from localcloud.sagemaker.runners import images
from localcloud.sagemaker.runners.cloudwatch import LogStream
from localcloud.sagemaker.runners.hosting import (
    HostingError,
    ModelServer,
    WorkerFailed,
    log_tail,
    model_server_workers,
    prepare_model_dir,
)
from localcloud.sagemaker.runners.processes import kill_orphan, process_start_ticks

log = logging.getLogger(__name__)

PROCESSES = "endpoint-processes"
PING_BUDGET_S = 240.0  # a container must pass /ping within 4 minutes of start
MONITOR_INTERVAL_S = 1.0
RESTART_BACKOFF_S = 5.0
LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints"


class DeployFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ping_failure(variant: str) -> str:
    return (
        f"The primary container for production variant {variant} did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )


def in_background(target: Callable[..., None], *args: Any) -> None:
    threading.Thread(target=target, args=args, name=f"endpoints-{target.__name__}", daemon=True).start()


@dataclass(frozen=True)
class VariantSpec:
    """One production variant resolved against its model: everything needed to (re)start it."""

    VariantName: str
    ModelName: str
    Image: str
    ModelDataUrl: str | None
    Environment: dict[str, str]
    InstanceCount: int
    Weight: float
    PingBudgetSeconds: float


@dataclass
class VariantPool:
    spec: VariantSpec
    servers: list[ModelServer] = field(default_factory=list)
    log_streams: list[LogStream] = field(default_factory=list)
    _cursor: itertools.count = field(default_factory=itertools.count)

    def next_server(self) -> ModelServer | None:
        """The least busy worker process that is up, over every instance's workers (a model server gives a
        request to a free worker); ties go round robin, so an idle pool spreads its requests."""
        start = next(self._cursor)
        count = len(self.servers)
        best: ModelServer | None = None
        for offset in range(count):
            server = self.servers[(start + offset) % count]
            if server.alive() and not server.retired and (best is None or server.in_flight < best.in_flight):
                best = server
        return best


@dataclass
class Fleet:
    endpoint_name: str
    pools: dict[str, VariantPool]
    data_capture: dict[str, Any] | None
    work_dir: Path
    config_name: str = ""
    metrics_by_config: bool = False  # publish the metrics with EndpointConfigName too (after a traffic shift)

    def choose(self, target_variant: str | None) -> VariantPool:
        if target_variant:
            pool = self.pools.get(target_variant)
            if pool is None:
                raise RuntimeValidationError(
                    f"Endpoint {self.endpoint_name} of account {ACCOUNT_ID} has no variant {target_variant}."
                )
            return pool
        names = list(self.pools)
        weights = [self.pools[n].spec.Weight for n in names]
        if sum(weights) <= 0:
            raise RuntimeValidationError(
                f"Every variant of endpoint {self.endpoint_name} has weight 0; set TargetVariant."
            )
        return self.pools[random.choices(names, weights)[0]]

    def servers(self) -> list[ModelServer]:
        return [server for pool in self.pools.values() for server in pool.servers]


class FleetSupervisor:
    def __init__(self, ctx: Context, routing: dict[str, Fleet]) -> None:
        self.ctx = ctx
        # Owned by Endpoints (endpoint name -> serving fleet); read here so only serving fleets get restarts.
        self.routing = routing
        self.closing = threading.Event()  # set once by shutdown: no worker starts after it
        self._live: dict[int, ModelServer] = {}  # every running server, for shutdown
        self._restarting: set[int] = set()
        self._monitor: threading.Thread | None = None

    # --- starting and stopping fleets -----------------------------------------------------------
    def start(self, name: str, deployment: dict[str, Any]) -> Fleet:
        """Download, launch and health-check every instance; on any failure nothing is left running."""
        work_dir = self.ctx.work_dir("endpoints", name, f"{deployment['EndpointConfigName']}-{uuid.uuid4().hex[:8]}")
        capture = deployment.get("DataCaptureConfig")
        fleet = Fleet(
            name,
            {},
            capture if capture and capture.get("EnableCapture", False) else None,
            work_dir,
            config_name=deployment["EndpointConfigName"],
            metrics_by_config=bool(deployment.get("MetricsByConfig")),
        )
        try:
            for spec in (VariantSpec(**v) for v in deployment["Variants"]):
                # In the fleet before any process starts, so a failure half-way still stops them all.
                fleet.pools[spec.VariantName] = pool = VariantPool(spec)
                self._start_pool(name, pool, work_dir / spec.VariantName)
            for pool in fleet.pools.values():
                self._wait_healthy(pool)
        except BaseException:
            self.stop(fleet)
            raise
        return fleet

    def _start_pool(self, name: str, pool: VariantPool, variant_dir: Path) -> None:
        spec = pool.spec
        try:
            python = images.resolve(spec.Image, "inference", self.ctx.pytorch_python).python
            model_dir = variant_dir / "model"
            if spec.ModelDataUrl:
                prepare_model_dir(self.ctx.client("s3"), spec.ModelDataUrl, model_dir)
            else:
                model_dir.mkdir(parents=True, exist_ok=True)
        except (images.UnsupportedImage, HostingError) as error:
            raise DeployFailed(getattr(error, "reason", str(error))) from error
        try:
            workers, refusal = model_server_workers(spec.Environment), ""
        except WorkerFailed as error:
            workers, refusal = 0, error.reason
        for index in range(spec.InstanceCount):
            group, instance = f"{LOG_GROUP_PREFIX}/{name}", f"{spec.VariantName}/i-{uuid.uuid4().hex[:17]}"
            stream = LogStream(self.ctx.client("logs"), group, instance)
            pool.log_streams.append(stream)
            if refusal:  # the model server does not start: the instance's log says why, the endpoint Fails
                stream.write(f"{refusal}\n")
                raise DeployFailed(ping_failure(spec.VariantName))
            for worker in range(workers):  # an instance's workers share its log stream, as in one container
                log_path = variant_dir / (f"instance-{index}.log" if workers == 1 else f"instance-{index}-{worker}.log")
                launch = functools.partial(
                    ModelServer.launch,
                    python=python,
                    model_dir=model_dir,
                    environment=spec.Environment,
                    log_path=log_path,
                    log_sink=stream.write,
                    endpoint_url=self.ctx.ministack_url,  # the model's boto3 reaches this MiniStack, never real AWS
                )
                pool.servers.append(self._register(name, launch))

    @staticmethod
    def _wait_healthy(pool: VariantPool) -> None:
        deadline = time.monotonic() + pool.spec.PingBudgetSeconds  # one budget for all instances started together
        for server in pool.servers:
            try:
                server.wait_healthy(max(0.0, deadline - time.monotonic()))
            except WorkerFailed as error:
                log.warning("%s\n--- worker log tail ---\n%s", error.reason, log_tail(server.log_path))
                raise DeployFailed(ping_failure(pool.spec.VariantName)) from error

    def stop(self, fleet: Fleet) -> None:
        for server in fleet.servers():
            self._stop_server(server)
        for pool in fleet.pools.values():
            for stream in pool.log_streams:
                stream.close()
        shutil.rmtree(fleet.work_dir, ignore_errors=True)

    # --- worker processes and their pid records -------------------------------------------------
    def _register(self, name: str, launch: Callable[[], ModelServer]) -> ModelServer:
        with self.ctx.lock:
            if self.closing.is_set():
                raise DeployFailed("The local SageMaker is shutting down.")
            server = launch()
            self._live[server.pid] = server
            record = {"pid": server.pid, "start_ticks": process_start_ticks(server.pid), "EndpointName": name}
            self.ctx.store.put(PROCESSES, str(server.pid), record)
        return server

    def _stop_server(self, server: ModelServer) -> None:
        server.stop()
        with self.ctx.lock:
            self._live.pop(server.pid, None)
            self.ctx.store.delete(PROCESSES, str(server.pid))

    def kill_orphans(self) -> None:
        """After a restart: kill the workers a previous server process left running."""
        for record in self.ctx.store.list(PROCESSES):
            if kill_orphan(record["pid"], record.get("start_ticks")):
                log.info("killed orphaned model server pid %d", record["pid"])
            self.ctx.store.delete(PROCESSES, str(record["pid"]))

    # --- restarts of dead workers ---------------------------------------------------------------
    def start_monitor(self) -> None:
        self._monitor = threading.Thread(target=self._watch_workers, name="endpoints-monitor", daemon=True)
        self._monitor.start()

    def _watch_workers(self) -> None:
        """Restart any worker process that died; the endpoint stays InService meanwhile."""
        while not self.closing.wait(MONITOR_INTERVAL_S):
            for name, fleet in list(self.routing.items()):
                for pool in fleet.pools.values():
                    for index, server in enumerate(list(pool.servers)):
                        if server.alive() or server.retired or server.pid in self._restarting:
                            continue
                        self._restarting.add(server.pid)
                        in_background(self._restart_worker, name, fleet, pool, index, server)

    def _restart_worker(self, name: str, fleet: Fleet, pool: VariantPool, index: int, dead: ModelServer) -> None:
        log.warning("endpoint %s: worker pid %d exited with %s; restarting it", name, dead.pid, dead.process.returncode)
        try:
            replacement = self._register(name, dead.respawn)
            try:
                replacement.wait_healthy(pool.spec.PingBudgetSeconds)
            except WorkerFailed as error:
                log.warning("endpoint %s: restart failed: %s", name, error.reason)
                self._stop_server(replacement)
                self.closing.wait(RESTART_BACKOFF_S)
                return
            with self.ctx.lock:
                current = self.routing.get(name) is fleet and pool.servers[index] is dead
                if current:
                    pool.servers[index] = replacement
            if not current:
                self._stop_server(replacement)
            self._stop_server(dead)
        except DeployFailed:
            pass  # shutting down
        finally:
            self._restarting.discard(dead.pid)

    # --- shutdown -------------------------------------------------------------------------------
    def stop_all(self, fleets: list[Fleet]) -> None:
        """Stop the given fleets (in-flight requests drain first), then any worker still running.
        `closing` must already be set, so that no new worker can start meanwhile."""
        for fleet in fleets:
            self.stop(fleet)
        with self.ctx.lock:
            stragglers = list(self._live.values())
        for server in stragglers:
            if server.alive():
                self._stop_server(server)
