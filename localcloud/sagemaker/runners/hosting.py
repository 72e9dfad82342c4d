"""Model servers: `serving_worker.py` processes, each serving one extracted model directory on a free 127.0.0.1
port: SAGEMAKER_MODEL_SERVER_WORKERS of them per endpoint instance (one by default), one per transform job.

Owns the process life cycle (launch, /ping health, respawn, drain-then-stop) and the HTTP hop
from the local SageMaker to the worker. Knows nothing about endpoints, routing or the store:
`models/endpoints.py` and the batch-transform runner build on this API.

Every request to a worker (InvokeEndpoint, batch transform, /ping) goes through one HTTP client,
`worker_http.WorkerConnectionPool`: the event loop's requests on that loop, threads' requests on one
hosting loop that runs on a daemon thread.

A server that `stop()` has begun is *retired*: new requests on it raise `WorkerRetired` (pick
another server), requests already in flight finish before the process is terminated. That is
what makes a blue/green switch lossless."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from localcloud.config import LOOPBACK_HOST
from localcloud.sagemaker.runners import artifacts
from localcloud.sagemaker.runners.environment import clean_environment
from localcloud.sagemaker.runners.processes import signal_group
from localcloud.sagemaker.runners.worker_http import WorkerConnectError, WorkerConnectionPool, WorkerDisconnected

log = logging.getLogger(__name__)
T = TypeVar("T")

WORKER_SCRIPT = Path(__file__).with_name("serving_worker.py")
INVOCATION_TIMEOUT_S = 60.0  # SageMaker's limit for a container to answer /invocations
CONNECT_TIMEOUT_S = 2.0  # the contract says 250 ms; leave room for a loaded 2-core machine
PING_TIMEOUT_S = 2.0  # /ping must answer within 2 s
HEALTH_POLL_INTERVAL_S = 0.1
DRAIN_TIMEOUT_S = INVOCATION_TIMEOUT_S  # no in-flight request can legitimately outlive this
TERMINATE_GRACE_S = 5.0


class HostingError(Exception):
    """Base of everything this module raises; `reason` is fit for a FailureReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WorkerFailed(HostingError):
    """The worker could not be started or never passed /ping."""


class ModelDataUnavailable(WorkerFailed):
    """ModelDataUrl could not be downloaded or extracted."""


class WorkerUnavailable(HostingError):
    """The worker process is dead, refused the connection or dropped it mid-request."""


class WorkerRetired(WorkerUnavailable):
    """stop() has begun on this server: route the request to another one."""


class WorkerTimeout(HostingError):
    """A live worker did not answer within the invocation timeout."""


@dataclass(frozen=True)
class WorkerReply:
    status: int
    body: bytes
    content_type: str
    custom_attributes: str | None


def prepare_model_dir(s3: Any, model_data_url: str, dest: Path) -> Path:
    """Download `model.tar.gz` and extract it into dest (model files at the root, code/ beside them)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest.parent / f".{dest.name}.model.tar.gz"
    try:
        bucket, key = artifacts.parse_s3_uri(model_data_url)
    except ValueError as error:
        raise ModelDataUnavailable(f"ModelDataUrl {model_data_url!r} is not an S3 URI.") from error
    try:
        artifacts.download_object(s3, model_data_url, archive)
    except Exception as error:  # botocore raises ClientError for 404/403 and others for transport
        # AWS's wording, plus the URL so the user sees which object is missing.
        raise ModelDataUnavailable(
            f"Failed to download model data(bucket: {bucket}, key: {key}). Please ensure that there is an object "
            f"located at the URL {model_data_url} and that the role passed to CreateModel has permissions to "
            f"download the model. ({error})"
        ) from error
    try:
        artifacts.safe_extract_tar(archive, dest)
    except Exception as error:  # tarfile.ReadError, UnsafeArchive, ...
        raise ModelDataUnavailable(f"Failed to extract model data from {model_data_url}: {error}") from error
    finally:
        archive.unlink(missing_ok=True)
    return dest


# serving_worker.py always listens on 127.0.0.1, whatever LOCALCLOUD_BIND_HOST says (0.0.0.0 under compose), and
# refuses a Host header that is not loopback: the local SageMaker reaches it, and names it, by this address.
WORKER_HOST = LOOPBACK_HOST


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((WORKER_HOST, 0))
        return int(sock.getsockname()[1])


# A model server here shares the machine's cores with the control plane, MiniStack, the Lambdas and the
# callers; a SageMaker instance is the model's alone. With torch's default of one OpenMP thread per core, every
# forward pass needs all cores at once, and when they are busy its threads spin-wait for each other: on 2 cores
# under load a small CNN took 173 ms of CPU per call instead of 4 ms (benchmarks/profiles/). One thread per
# server is TorchServe's advice for CPU serving. The caller's environment or the model's Environment
# (OMP_NUM_THREADS) overrides it.
WORKER_ENV_DEFAULTS = {"OMP_NUM_THREADS": "1"}
# A model server's environment is clean (environment.py): these thread-count knobs are the only variables it takes
# from the local SageMaker's own, because the README lets the environment of `make up` set them for every server.
TUNING_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


# The serving toolkit's knob for model-server workers per instance (`sagemaker_inference.parameters`
# MODEL_SERVER_WORKERS_ENV, which the PyTorch container hands TorchServe as `default_workers_per_model`). Each
# worker is a process with its own copy of the model that answers one request at a time, and the model server
# gives each request to a free worker. TorchServe's default is one worker per vCPU; here every endpoint shares
# this machine's cores with everything else, so a model gets one unless its Environment asks for more.
MODEL_SERVER_WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
DEFAULT_MODEL_SERVER_WORKERS = 1


def model_server_workers(environment: Mapping[str, str]) -> int:
    """How many worker processes a model's `Environment` asks for per instance. WorkerFailed for a value that is
    not a positive whole number: the real model server does not start with one, so the instance never passes
    /ping (the caller reports it so)."""
    raw = (environment.get(MODEL_SERVER_WORKERS_ENV) or "").strip()
    if not raw:
        return DEFAULT_MODEL_SERVER_WORKERS
    if not raw.isdigit() or int(raw) < 1:
        raise WorkerFailed(f"{MODEL_SERVER_WORKERS_ENV} must be a positive whole number of workers, got {raw!r}")
    return int(raw)


def worker_environment(environment: Mapping[str, str], python: Path, endpoint_url: str) -> dict[str, str]:
    """The environment a model server process starts with: a container's basics, the serving defaults, the tuning
    knobs of `make up`, the model's `Environment`, then the local cloud's endpoint and dummy keys, as a training
    job gets them. Nothing else of ours: the launcher's shell may hold real AWS credentials."""
    tuning = {name: os.environ[name] for name in TUNING_VARIABLES if name in os.environ}
    no_bytecode = {"PYTHONDONTWRITEBYTECODE": "1"}  # the model directory goes away with the endpoint
    return clean_environment(python, endpoint_url, environment, defaults=WORKER_ENV_DEFAULTS | tuning | no_bytecode)


# Threads (batch transform, deployments waiting for /ping) use the same asyncio client as the InvokeEndpoint hop,
# on one event loop that runs for the life of the process on a daemon thread. A blocking HTTP client beside it
# would be a second implementation of the hop, with its own timeouts and errors to keep in line with this one.
_hosting_loop: asyncio.AbstractEventLoop | None = None
_hosting_loop_lock = threading.Lock()


def _run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the hosting loop and wait for its result, from any thread but that loop's own."""
    global _hosting_loop
    with _hosting_loop_lock:
        if _hosting_loop is None:
            _hosting_loop = asyncio.new_event_loop()
            threading.Thread(target=_hosting_loop.run_forever, name="hosting-http", daemon=True).start()
        loop = _hosting_loop
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


class ModelServer:
    """One worker process. Thread-safe; `invoke` is for the event loop, `invoke_sync` for threads."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        *,
        python: Path,
        model_dir: Path,
        environment: dict[str, str],
        endpoint_url: str,
        log_path: Path,
        log_sink: Callable[[str], None] | None,
    ) -> None:
        self.process = process
        self.port = port
        self.python = python
        self.model_dir = model_dir
        self.environment = dict(environment)
        self.endpoint_url = endpoint_url
        self.log_path = log_path
        self.log_sink = log_sink
        self._flight_lock = threading.Lock()
        self._in_flight = 0
        self._retired = False
        self._drained = threading.Event()
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WorkerConnectionPool] = (
            weakref.WeakKeyDictionary()
        )
        self._log_copier = threading.Thread(target=self._copy_output, name=f"worker-{process.pid}-log", daemon=True)
        self._log_copier.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def retired(self) -> bool:
        return self._retired

    @property
    def in_flight(self) -> int:
        """Requests sent to this worker and not yet answered (a routing hint: read without the lock)."""
        return self._in_flight

    @classmethod
    def launch(
        cls,
        *,
        python: Path,
        model_dir: Path,
        environment: dict[str, str],
        log_path: Path,
        endpoint_url: str,
        log_sink: Callable[[str], None] | None = None,
    ) -> ModelServer:
        """Start a worker; it binds at once and answers /ping with 200 once model_fn has returned.
        `log_sink` receives every output line too (e.g. a CloudWatch LogStream.write). The model's boto3 reaches
        `endpoint_url` (the MiniStack this local SageMaker uses: 127.0.0.1 or, under compose, `ministack`)."""
        port = free_port()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [str(python), str(WORKER_SCRIPT), "--model-dir", str(model_dir), "--port", str(port)]
        process = subprocess.Popen(
            command,
            cwd=model_dir,
            env=worker_environment(environment, python, endpoint_url),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches anything the model spawned
        )
        log.info("model server pid %d on port %d for %s", process.pid, port, model_dir)
        return cls(
            process,
            port,
            python=python,
            model_dir=model_dir,
            environment=environment,
            endpoint_url=endpoint_url,
            log_path=log_path,
            log_sink=log_sink,
        )

    def respawn(self) -> ModelServer:
        """A fresh process with the same model, environment and logs (after this one died)."""
        return ModelServer.launch(
            python=self.python,
            model_dir=self.model_dir,
            environment=self.environment,
            log_path=self.log_path,
            log_sink=self.log_sink,
            endpoint_url=self.endpoint_url,
        )

    # --- health ---------------------------------------------------------------------------------
    def alive(self) -> bool:
        """Whether the process is running (a retired server may still be draining)."""
        return self.process.poll() is None

    def ping(self) -> bool:
        """Whether GET /ping answers 200 within PING_TIMEOUT_S; blocks the calling thread (deployments, transform)."""
        return _run_blocking(self._ping())

    async def _ping(self) -> bool:
        try:
            reply = await self._pool().get("/ping", connect_timeout_s=PING_TIMEOUT_S, read_timeout_s=PING_TIMEOUT_S)
        except OSError:  # refused, dropped, timed out (WorkerConnectError, WorkerDisconnected, TimeoutError)
            return False
        return reply.status == 200

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            exit_code = self.process.poll()
            if exit_code is not None:
                raise WorkerFailed(
                    f"The model server exited with code {exit_code} before passing /ping; see {self.log_path}"
                )
            if self.ping():
                return
            if time.monotonic() >= deadline:
                raise WorkerFailed(f"The model server did not pass /ping within {timeout_s:.0f} s; see {self.log_path}")
            time.sleep(HEALTH_POLL_INTERVAL_S)

    # --- invocations ----------------------------------------------------------------------------
    async def invoke(
        self,
        body: bytes,
        content_type: str,
        accept: str,
        custom_attributes: str | None,
        timeout_s: float = INVOCATION_TIMEOUT_S,
    ) -> WorkerReply:
        """POST /invocations on the running loop's pool (the InvokeEndpoint hot path)."""
        with self._tracked_request():
            reply = await self._pool().post(
                "/invocations",
                body,
                self._headers(content_type, accept, custom_attributes),
                connect_timeout_s=CONNECT_TIMEOUT_S,
                read_timeout_s=timeout_s,
            )
        return WorkerReply(
            status=reply.status,
            body=reply.body,
            content_type=reply.headers.get("content-type", "application/octet-stream"),
            custom_attributes=reply.headers.get("x-amzn-sagemaker-custom-attributes"),
        )

    def _pool(self) -> WorkerConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = WorkerConnectionPool(WORKER_HOST, self.port)
        return pool

    def invoke_sync(
        self, body: bytes, content_type: str, accept: str, timeout_s: float = INVOCATION_TIMEOUT_S
    ) -> WorkerReply:
        """`invoke` for threads (batch transform): the same request, run on the hosting loop."""
        return _run_blocking(self.invoke(body, content_type, accept, None, timeout_s))

    @contextlib.contextmanager
    def _tracked_request(self) -> Iterator[None]:
        """Count the request for draining, and turn transport failures into hosting errors."""
        self._enter()
        try:
            yield
        except (TimeoutError, WorkerConnectError) as error:
            raise self._classify_timeout(error) from error
        except WorkerDisconnected as error:
            raise WorkerUnavailable(f"model server pid {self.pid} is unreachable: {error!r}") from error
        finally:
            self._leave()

    def _enter(self) -> None:
        with self._flight_lock:
            if self._retired:
                raise WorkerRetired(f"model server pid {self.pid} is stopping")
            if self.process.poll() is not None:
                raise WorkerUnavailable(f"model server pid {self.pid} exited with code {self.process.returncode}")
            self._in_flight += 1

    def _leave(self) -> None:
        with self._flight_lock:
            self._in_flight -= 1
            if self._retired and self._in_flight == 0:
                self._drained.set()

    @staticmethod
    def _headers(content_type: str, accept: str, custom_attributes: str | None) -> dict[str, str]:
        headers = {"Content-Type": content_type, "Accept": accept}
        if custom_attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
        return headers

    def _classify_timeout(self, error: Exception) -> HostingError:
        if isinstance(error, WorkerConnectError) or self.process.poll() is not None:
            return WorkerUnavailable(f"model server pid {self.pid} did not accept the connection: {error!r}")
        return WorkerTimeout(f"model server pid {self.pid} did not answer in time")

    # --- stopping -------------------------------------------------------------------------------
    def stop(self, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Refuse new requests, let in-flight ones finish, then terminate the process group."""
        with self._flight_lock:
            self._retired = True
            if self._in_flight == 0:
                self._drained.set()
        if not self._drained.wait(drain_timeout_s):
            log.warning("model server pid %d still busy after %.0f s; stopping it anyway", self.pid, drain_timeout_s)
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait()
        self._signal(signal.SIGKILL)  # whatever the model spawned goes with it
        self._log_copier.join(timeout=2.0)
        for loop, pool in list(self._pools.items()):  # idle keep-alive sockets; closed on the loop that owns them
            if not loop.is_closed():
                loop.call_soon_threadsafe(pool.close)

    def _signal(self, signum: int) -> None:
        signal_group(self.pid, signum)

    def _copy_output(self) -> None:
        stdout: IO[bytes] | None = self.process.stdout
        if stdout is None:
            return
        with self.log_path.open("ab") as local, stdout:
            for raw in stdout:
                local.write(raw)
                local.flush()
                if self.log_sink is not None:
                    try:
                        self.log_sink(raw.decode("utf-8", errors="replace"))
                    except Exception:  # logs are a convenience; serving must go on
                        log.debug("log sink failed", exc_info=True)


def log_tail(path: Path, max_chars: int = 2000) -> str:
    """The end of a worker log, for the server log when a worker fails."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_chars))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


__all__ = [
    "HostingError",
    "ModelDataUnavailable",
    "ModelServer",
    "WorkerFailed",
    "WorkerReply",
    "WorkerRetired",
    "WorkerTimeout",
    "WorkerUnavailable",
    "log_tail",
    "model_server_workers",
    "prepare_model_dir",
]
