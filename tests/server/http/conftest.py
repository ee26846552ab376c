"""A module-scoped real server over a repository of test models built with OpenVINO."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import ovtest_models as models
import pytest
import requests
from ovtest_server import ServerProcess, start_server, write_config


def build_repository(root: Path) -> list[dict[str, object]]:
    models.add_model(root / "add")
    models.multi_output_model(root / "multi")
    models.scale_model(root / "int32", dtype=np.int32, factor=3)
    models.scale_model(root / "fp16", dtype=np.float16, factor=2)
    models.identity_model(root / "fixed", shape=(1, 3), name="x", out_name="y")
    models.image_model(root / "image", height=4, width=6)
    models.add_model(root / "versioned", version=1, offset=100.0)
    models.add_model(root / "versioned", version=2, offset=200.0)
    models.string_model(root / "strings")
    return [
        {"name": "add", "base_path": "add"},
        {"name": "multi", "base_path": "multi"},
        {"name": "int32", "base_path": "int32"},
        {"name": "fp16", "base_path": "fp16"},
        {"name": "fixed", "base_path": "fixed"},
        {"name": "image", "base_path": "image", "layout": "NHWC"},
        {"name": "versioned", "base_path": "versioned", "model_version_policy": {"all": {}}},
        {"name": "strings", "base_path": "strings"},  # STRING identity: text -> echo
    ]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("repo")
    entries = build_repository(root)
    config = write_config(root / "config.json", entries)
    return root, config


@pytest.fixture(scope="module")
def server(repo: tuple[Path, Path]) -> Iterator[ServerProcess]:
    root, config = repo
    proc = start_server(
        ["--config_path", str(config), "--file_system_poll_wait_seconds", "0", "--metrics_enable"],
        workdir=root,
    )
    yield proc
    code = proc.stop()
    assert code == 0, proc.log()


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with ``--max_request_mb 1`` serving only ``add`` (the body-limit tests)."""
    root: Path = tmp_path_factory.mktemp("limitrepo")
    models.add_model(root / "add")
    config = write_config(root / "config.json", [{"name": "add", "base_path": "add"}])
    proc = start_server(["--config_path", str(config), "--file_system_poll_wait_seconds", "0",
                         "--max_request_mb", "1"], workdir=root)
    yield proc
    assert proc.stop() == 0, proc.log()
