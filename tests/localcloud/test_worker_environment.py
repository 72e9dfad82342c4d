"""What a model server process starts with: one OpenMP thread unless someone says otherwise, the model's
Environment last, and none of the control plane's own interpreter variables."""

from __future__ import annotations

import pytest

from localcloud.sagemaker.runners.hosting import worker_environment


def test_one_openmp_thread_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert worker_environment({})["OMP_NUM_THREADS"] == "1"


def test_the_callers_environment_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert worker_environment({})["OMP_NUM_THREADS"] == "2"


def test_the_models_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    env = worker_environment({"OMP_NUM_THREADS": "4", "GREETING": "hi"})
    assert (env["OMP_NUM_THREADS"], env["GREETING"]) == ("4", "hi")


def test_the_control_planes_interpreter_variables_stay_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("VIRTUAL_ENV", "/work/.venv")
    env = worker_environment({})
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert env["PYTHONUNBUFFERED"] == "1"
