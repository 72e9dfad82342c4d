"""Process entry point of the local SageMaker: builds the backend, recovers state, serves HTTP.

    python -m localcloud.sagemaker.server --port 4567 --home .localcloud/sagemaker \
        --ministack-url http://127.0.0.1:4566 --pytorch-python .venv-pytorch/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn

from localcloud.config import BIND_HOST
from localcloud.sagemaker.models.backend import SageMakerBackend
from localcloud.sagemaker.models.base import Context
from localcloud.sagemaker.routes import create_app
from localcloud.sagemaker.store import Store


def build_backend(home: Path, ministack_url: str, pytorch_python: Path) -> SageMakerBackend:
    ctx = Context(store=Store(home / "state.db"), home=home, ministack_url=ministack_url, pytorch_python=pytorch_python)
    return SageMakerBackend(ctx)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--ministack-url", required=True)
    parser.add_argument("--pytorch-python", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    backend = build_backend(args.home.resolve(), args.ministack_url, args.pytorch_python)
    app = create_app(backend)

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        backend.recover()
        try:
            yield
        finally:
            backend.shutdown()  # flushes data capture and stops workers before the process exits

    app.router.lifespan_context = lifespan
    uvicorn.run(app, host=BIND_HOST, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
