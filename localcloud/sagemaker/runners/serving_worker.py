"""The serving container of the SageMaker PyTorch framework, for one model directory.

    <framework python> serving_worker.py --model-dir DIR --port PORT

Runs under the framework's interpreter (.venv-pytorch), so it uses the standard library only and
never imports `localcloud`. It implements the inference contract of the SageMaker PyTorch
serving toolkit:
- `<model_dir>/code` goes on sys.path and the entry point (SAGEMAKER_PROGRAM, default
  `inference.py`) is imported; without one the framework's default handlers serve a TorchScript
  `model.pt`;
- `model_fn(model_dir)` runs once at start; GET /ping answers 200 (empty) only after it returned;
- POST /invocations runs `input_fn -> predict_fn -> output_fn` or a single `transform_fn`; defining
  both styles is an error at start;
- bodies of exactly application/json or text/csv reach the handlers as str, others as bytes;
  a missing Accept or */* means application/json; a handler returns the body or (body, type);
- an exception in a handler is a 500 carrying its message; the worker keeps serving.
Requests run one at a time, as in one model-server worker, so handlers need not be thread-safe.
The worker exits by itself when the local SageMaker that started it is gone."""

from __future__ import annotations

import argparse
import http.client
import importlib
import io
import json
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
UTF8_TYPES = (JSON, CSV)
DEFAULT_MODEL_FILENAME = "model.pt"
PARENT_CHECK_INTERVAL_S = 1.0
IDLE_CONNECTION_TIMEOUT_S = 120  # the control plane's pool drops idle connections after 5 s
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})  # how the local SageMaker addresses a model server


class HandlerError(Exception):
    """A client-side problem found by the default handlers, with the status the toolkit uses."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- the framework's default handlers (used only where inference.py defines none) -------------
def default_model_fn(model_dir: str) -> Any:
    import torch  # the framework's, imported only when a model relies on the defaults

    path = Path(model_dir) / DEFAULT_MODEL_FILENAME
    if not path.exists():
        raise ValueError(f"Failed to load model with default model_fn: missing file {DEFAULT_MODEL_FILENAME}.")
    model = torch.jit.load(str(path), map_location="cpu")
    model.eval()
    return model


def default_input_fn(input_data: Any, content_type: str) -> Any:
    import numpy as np
    import torch

    if content_type == JSON:
        array = np.array(json.loads(input_data))
    elif content_type == CSV:
        array = np.genfromtxt(io.StringIO(input_data), delimiter=",", ndmin=2)
    elif content_type == NPY:
        array = np.load(io.BytesIO(input_data), allow_pickle=False)
    else:
        raise HandlerError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Content type {content_type} is not supported by this framework."
        )
    return torch.from_numpy(array)


def default_predict_fn(data: Any, model: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(data)


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes | str, str]:
    import numpy as np

    array = prediction.detach().cpu().numpy() if hasattr(prediction, "detach") else np.asarray(prediction)
    if accept == JSON:
        return json.dumps(array.tolist()), JSON
    if accept == CSV:
        buffer = io.StringIO()
        np.savetxt(buffer, np.atleast_2d(array), delimiter=",", fmt="%s")
        return buffer.getvalue(), CSV
    if accept == NPY:
        buffer_bytes = io.BytesIO()
        np.save(buffer_bytes, array)
        return buffer_bytes.getvalue(), NPY
    raise HandlerError(HTTPStatus.NOT_ACCEPTABLE, f"Accept type {accept} is not supported by this framework.")


# --- the user's handlers --------------------------------------------------------------------
class InferenceHandlers:
    """The model plus the handler chain chosen from the user's module."""

    def __init__(self, module: ModuleType | SimpleNamespace, model_dir: Path) -> None:
        transform_fn = getattr(module, "transform_fn", None)
        chain = {name: getattr(module, name, None) for name in ("input_fn", "predict_fn", "output_fn")}
        if transform_fn is not None and any(chain.values()):
            # The toolkit's own message for this mistake.
            raise ValueError(
                "Cannot use transform_fn implementation in conjunction with input_fn, predict_fn, "
                "and/or output_fn implementation"
            )
        self.transform_fn: Callable[..., Any] | None = transform_fn
        self.input_fn: Callable[..., Any] = chain["input_fn"] or default_input_fn
        self.predict_fn: Callable[..., Any] = chain["predict_fn"] or default_predict_fn
        self.output_fn: Callable[..., Any] = chain["output_fn"] or default_output_fn
        model_fn = getattr(module, "model_fn", None) or default_model_fn
        self.model = model_fn(str(model_dir))

    def handle(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        data: bytes | str = body.decode("utf-8") if content_type in UTF8_TYPES else body
        if self.transform_fn is not None:
            result = self.transform_fn(self.model, data, content_type, accept)
        else:
            prediction = self.predict_fn(self.input_fn(data, content_type), self.model)
            result = self.output_fn(prediction, accept)
        if isinstance(result, tuple) and len(result) == 2:
            payload, result_type = result
        else:
            payload, result_type = result, accept
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        elif not isinstance(payload, (bytes, bytearray, memoryview)):
            payload = json.dumps(payload).encode("utf-8")  # e.g. a dict from a lenient output_fn
        return bytes(payload), str(result_type)


def load_user_module(code_dir: Path) -> ModuleType | SimpleNamespace:
    program = os.environ.get("SAGEMAKER_PROGRAM") or "inference.py"
    module_name = program[:-3] if program.endswith(".py") else program
    if not (code_dir / f"{module_name}.py").exists() and not (code_dir / module_name).is_dir():
        print(f"no {program} in {code_dir}: using the framework's default handlers", flush=True)
        return SimpleNamespace()
    sys.path.insert(0, str(code_dir))
    return importlib.import_module(module_name)


# --- HTTP -------------------------------------------------------------------------------------
_SIMPLE_REQUEST_LINE = re.compile(r"[A-Z]+ \S+ HTTP/1\.[01]")
MAX_HEADER_LINE = 65536  # http.client's limits
MAX_HEADERS = 100


class WorkerServer(ThreadingHTTPServer):
    daemon_threads = True
    handlers: InferenceHandlers | None = None
    inference_lock = threading.Lock()


class InvocationRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the control plane pools its connections
    disable_nagle_algorithm = True  # a large body goes out in several writes; don't wait 40 ms for an ACK
    # Buffered: headers and body leave in one write when handle_one_request flushes, so the control plane
    # reads a whole reply in one wakeup (unbuffered, the headers and the body were two sends).
    wbufsize = 64 * 1024
    timeout = IDLE_CONNECTION_TIMEOUT_S
    server: WorkerServer
    raw_requestline: bytes  # set by handle_one_request before parse_request (not in the stubs)

    def parse_request(self) -> bool:
        """http.server's request parsing for the well-formed HTTP/1.x requests the control plane sends, without
        running the headers through the email parser, the worker's largest own cost per invocation: this cut its
        CPU per request by a quarter (benchmarks/profiles/). Anything unusual goes to the stdlib's parser."""
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        if not _SIMPLE_REQUEST_LINE.fullmatch(requestline):
            return super().parse_request()
        self.requestline = requestline
        self.command, path, self.request_version = requestline.split(" ")
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path  # as the stdlib does (gh-87389)
        fields: list[list[str]] = []
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and fields:  # obsolete line folding: continues the previous field
                fields[-1][1] += " " + text.strip()
                continue
            name, colon, value = text.partition(":")
            if not colon or not name.strip():
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad header line {text[:80]!r}")
                return False
            fields.append([name.strip(), value.strip()])
            if len(fields) > MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
                return False
        headers = http.client.HTTPMessage()
        for name, value in fields:
            headers[name] = value
        self.headers = headers
        connection = headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if headers.get("Expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def refused(self) -> bool:
        """Only the local SageMaker calls a model server: by a loopback address, and never from a browser page.
        A page whose name was rebound to 127.0.0.1 sends that name as `Host`, and a cross-origin one adds
        `Origin`; both get 403 before any model code runs (the same rule as localcloud/request_guard.py)."""
        host = (self.headers.get("Host") or "").strip().lower()
        name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        if name in LOOPBACK_HOSTS and self.headers.get("Origin") is None:
            return False
        self.close_connection = True  # the body, if any, is left unread
        self._send(HTTPStatus.FORBIDDEN, b"A model server answers only the local SageMaker.", "text/plain")
        return True

    def do_GET(self) -> None:
        if self.refused():
            return
        if self.path != "/ping":
            self._send(HTTPStatus.NOT_FOUND, b"Not found", "text/plain")
        elif self.server.handlers is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"", "text/plain")  # model_fn still running
        else:
            self._send(HTTPStatus.OK, b"", "text/plain")

    def do_POST(self) -> None:
        if self.refused():
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/invocations":
            self._send(HTTPStatus.NOT_FOUND, b"Not found", "text/plain")
            return
        handlers = self.server.handlers
        if handlers is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"The model is still loading.", "text/plain")
            return
        content_type = self.headers.get("Content-Type") or JSON
        accept = self.headers.get("Accept") or JSON
        if accept == "*/*":
            accept = JSON
        try:
            with self.server.inference_lock:
                payload, result_type = handlers.handle(body, content_type, accept)
        except HandlerError as error:
            self._send(error.status, str(error).encode("utf-8"), "text/plain")
            return
        except Exception as error:
            traceback.print_exc()
            message = str(error) or type(error).__name__
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, message.encode("utf-8"), "text/plain")
            return
        self._send(HTTPStatus.OK, payload, result_type)

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # no access log: the model's own output is what the user looks for


def exit_when_orphaned(parent_pid: int) -> None:
    """A crashed control plane must not leave servers behind: our parent changing means it is gone."""
    while True:
        time.sleep(PARENT_CHECK_INTERVAL_S)
        if os.getppid() != parent_pid:
            # No goodbye line: stdout is a pipe to the dead parent, and a write would raise EPIPE here.
            os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    model_dir = args.model_dir.resolve()

    threading.Thread(target=exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    # Bind before loading the model: /ping answers 503 while model_fn runs instead of hanging.
    server = WorkerServer(("127.0.0.1", args.port), InvocationRequestHandler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    try:
        server.handlers = InferenceHandlers(load_user_module(model_dir / "code"), model_dir)
    except Exception:
        traceback.print_exc()
        print("the model could not be loaded; the container exits", flush=True)
        return 1
    print(f"model loaded from {model_dir}; serving on 127.0.0.1:{args.port}", flush=True)
    threading.Event().wait()  # SIGTERM ends the process
    return 0


if __name__ == "__main__":
    sys.exit(main())
