"""The offline CIFAR mirror that `make demo` and `make airflow` fall back to when SCONES_CIFAR_URL is unset."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tools.cifar_mirror import ARCHIVE_NAME, configured_or_fixture_source


def test_without_a_configured_url_the_fixture_is_built_and_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCONES_CIFAR_URL", raising=False)
    with configured_or_fixture_source(tmp_path) as data_env:
        assert set(data_env) == {"SCONES_CIFAR_URL", "SCONES_CIFAR_MD5"}
        assert data_env["SCONES_CIFAR_URL"].startswith("http://127.0.0.1:")
        body = httpx.get(data_env["SCONES_CIFAR_URL"], timeout=10).content
    assert hashlib.md5(body).hexdigest() == data_env["SCONES_CIFAR_MD5"]
    assert (tmp_path / ARCHIVE_NAME).read_bytes() == body
    with pytest.raises(httpx.TransportError):  # the mirror lives only as long as the context
        httpx.get(data_env["SCONES_CIFAR_URL"], timeout=2)


def test_a_configured_url_is_left_to_the_dags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCONES_CIFAR_URL", "https://mirror.example/cifar-100-python.tar.gz")
    with configured_or_fixture_source(tmp_path) as data_env:
        assert data_env == {}
    assert not (tmp_path / ARCHIVE_NAME).exists()
