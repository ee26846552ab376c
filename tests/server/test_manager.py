"""ModelManager: state machine, waiting, draining, zero-downtime reloads, config changes, polling.

Most tests use :class:`FakeBackend`, a protocol-conforming backend whose "model" is a
``model.txt`` file holding a multiplication factor (or ``broken...`` to fail the load) and whose
loads can be held at a gate, so every interleaving is driven deterministically. Waits are bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import ovtest_models
import pytest

from ovserve.server.backend.base import InferTiming
from ovserve.server.config import (
    ConfigError,
    ModelConfig,
    ServerConfig,
    VersionPolicy,
    config_hash,
    render_config,
)
from ovserve.server.errors import (
    ModelLoadError,
    ModelNotFound,
    ModelNotLoadedYet,
    ModelRetired,
    ModelUnavailable,
    VersionNotFound,
)
from ovserve.server.manager import ConfigFileError, ModelManager, config_entry
from ovserve.server.types import Dim, Signature, State, TensorSpec, VersionStatus

pytestmark = pytest.mark.timeout(60)

LOGGER = "ovserve.server.manager"
X = np.array([1.0, 2.0], dtype=np.float32)
ALL = VersionPolicy("all")
SIGNATURE = Signature(
    inputs=(TensorSpec("x", "FP32", (Dim.dynamic(),)),),
    outputs=(TensorSpec("y", "FP32", (Dim.dynamic(),)),),
)


class FakeModel:
    def __init__(self, version_dir: str, config: ModelConfig, factor: float) -> None:
        self.signature = SIGNATURE
        self.nireq = config.nireq or 1
        self.streams = 1
        self.version_dir = version_dir
        self.config = config
        self.factor = factor
        self.closed = False
        self._active = 0

    @property
    def active_requests(self) -> int:
        return self._active

    async def infer(
        self, inputs: Mapping[str, np.ndarray], timing: InferTiming | None = None
    ) -> dict[str, np.ndarray]:
        assert not self.closed, "inference on a closed model"
        self._active += 1
        try:
            await asyncio.sleep(0)
            return {"y": inputs["x"] * np.float32(self.factor)}
        finally:
            self._active -= 1

    def close(self) -> None:
        assert not self.closed, "closed twice"
        self.closed = True


class FakeBackend:
    """Loads ``<version_dir>/model.txt``; loads of a folder can be held at a gate."""

    def __init__(self) -> None:
        self.models: list[FakeModel] = []
        self.gates: dict[str, threading.Event] = {}
        self.waiting: set[str] = set()
        self._lock = threading.Lock()

    def hold(self, version_dir: Path) -> threading.Event:
        gate = self.gates[str(version_dir)] = threading.Event()
        return gate

    def release_all(self) -> None:
        for gate in self.gates.values():
            gate.set()

    def load(self, version_dir: str, config: ModelConfig) -> FakeModel:
        gate = self.gates.get(version_dir)
        if gate is not None:
            with self._lock:
                self.waiting.add(version_dir)
            assert gate.wait(20), f"the test never released {version_dir}"
            with self._lock:
                self.waiting.discard(version_dir)
        if config.target_device.startswith("BROKEN"):
            raise ModelLoadError(f"Cannot compile model into target device {config.target_device}")
        try:
            text = Path(version_dir, "model.txt").read_text().strip()
        except OSError:
            raise ModelLoadError(f"No model file in {version_dir}") from None
        if text.startswith("broken"):
            raise ModelLoadError(text)
        model = FakeModel(version_dir, config, float(text))
        with self._lock:
            self.models.append(model)
        return model

    def loads_of(self, version_dir: Path) -> list[FakeModel]:
        return [m for m in self.models if m.version_dir == str(version_dir)]


def make_version(base: Path, version: int, content: str = "2") -> Path:
    folder = base / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.txt").write_text(content)
    return folder


def write_config(path: Path, *entries: dict[str, Any]) -> bytes:
    data = json.dumps({"model_config_list": [{"config": e} for e in entries]}).encode()
    path.write_bytes(data)
    return data


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def states(manager: ModelManager, name: str) -> dict[int, State]:
    return {s.version: s.state for s in manager.statuses(name)}


def status_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("STATUS CHANGE")]


def line(version: int, model: str, state: str, code: str = "OK") -> str:
    return (f"STATUS CHANGE: Version {version} of model {model} status change. "
            f'New status: ( "state": "{state}", "error_code": "{code}" )')


async def version_of(manager: ModelManager, name: str, version: int | None = None) -> int:
    async with manager.use(name, version) as served:
        return served.version


@pytest.fixture
def backend() -> Iterator[FakeBackend]:
    fake = FakeBackend()
    yield fake
    fake.release_all()


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-load")
    yield pool
    pool.shutdown(wait=True)


Factory = Callable[..., ModelManager]


@pytest.fixture
async def make(backend: FakeBackend, executor: ThreadPoolExecutor) -> AsyncIterator[Factory]:
    created: list[ModelManager] = []

    def factory(**kwargs: Any) -> ModelManager:
        kwargs.setdefault("poll_wait_seconds", 0)
        manager = ModelManager(backend, executor=executor, **kwargs)
        created.append(manager)
        return manager

    yield factory
    backend.release_all()
    for manager in created:
        await manager.stop()


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


# ---------------------------------------------------------------- start, lookups, state machine


async def test_single_model_start_serves_and_logs_every_state(
    make: Factory, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "m"
    make_version(base, 1, "2")
    single = ModelConfig(name="m", base_path=str(base), nireq=2)
    manager = make(single_model=single)
    assert not manager.ready
    await manager.start()
    assert manager.ready
    assert manager.statuses("m") == [VersionStatus(1, State.AVAILABLE)]
    assert status_lines(caplog_info) == [line(1, "m", "START"), line(1, "m", "LOADING"),
                                         line(1, "m", "AVAILABLE")]
    expected = render_config([{"name": "m", "base_path": str(base), "nireq": 2}])
    assert manager.config_hash == config_hash(expected)
    assert config_entry(single) == {"name": "m", "base_path": str(base), "nireq": 2}
    assert manager.config == ServerConfig(models=(single,))
    async with manager.use("m") as served:
        assert (served.name, served.version, served.signature) == ("m", 1, SIGNATURE)
        out = await served.infer({"x": X})
    assert out["y"].tolist() == [2.0, 4.0]
    assert manager.metadata("m") == (1, SIGNATURE)
    assert manager.metadata("m", 1) == (1, SIGNATURE)


async def test_config_file_start_default_is_highest_available(
    make: Factory, tmp_path: Path
) -> None:
    make_version(tmp_path / "a", 1, "1")
    make_version(tmp_path / "a", 2, "2")
    make_version(tmp_path / "b", 5, "3")
    data = write_config(
        tmp_path / "config.json",
        {"name": "b", "base_path": "b"},
        {"name": "a", "base_path": str(tmp_path / "a"), "model_version_policy": {"all": {}}},
    )
    manager = make(config_path=str(tmp_path / "config.json"))
    await manager.start()
    assert manager.config_hash == config_hash(data)
    assert [m.name for m in manager.config.models] == ["b", "a"]
    assert manager.config.model("b") is not None
    assert manager.config.model("b").base_path == str(tmp_path / "b")  # type: ignore[union-attr]
    assert manager.model_names() == ["a", "b"]
    assert manager.all_statuses() == {
        "a": [VersionStatus(2, State.AVAILABLE), VersionStatus(1, State.AVAILABLE)],
        "b": [VersionStatus(5, State.AVAILABLE)],
    }
    assert manager.statuses("a", 1) == [VersionStatus(1, State.AVAILABLE)]
    assert await version_of(manager, "a") == 2
    assert await version_of(manager, "a", 1) == 1
    assert await version_of(manager, "b", 0) == 5
    assert [(s.name, s.version) for s in manager.loaded()] == [("a", 1), ("a", 2), ("b", 5)]


async def test_lookup_errors(make: Factory, tmp_path: Path) -> None:
    make_version(tmp_path / "m", 1)
    manager = make(single_model=ModelConfig(name="m", base_path=str(tmp_path / "m")))
    await manager.start()
    for call in (lambda: manager.statuses("nope"), lambda: manager.metadata("nope"),
                 lambda: manager.model_error("nope")):
        with pytest.raises(ModelNotFound, match="Model with requested name is not found"):
            call()
    with pytest.raises(ModelNotFound):
        await version_of(manager, "nope")
    with pytest.raises(VersionNotFound, match="Model with requested version is not found"):
        manager.statuses("m", 9)
    with pytest.raises(VersionNotFound):
        manager.metadata("m", 9)
    with pytest.raises(VersionNotFound):
        await version_of(manager, "m", 9)
    assert manager.in_flight("nope", 1) == 0
    assert manager.in_flight("m", 9) == 0


def test_constructor_needs_exactly_one_source(backend: FakeBackend) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ModelManager(backend)
    with pytest.raises(ValueError, match="exactly one"):
        ModelManager(backend, config_path="c.json", single_model=ModelConfig("m", "/m"))


async def test_versions_load_concurrently(
    make: Factory, backend: FakeBackend, tmp_path: Path
) -> None:
    base = tmp_path / "m"
    gates = [backend.hold(make_version(base, v)) for v in (1, 2)]
    manager = make(single_model=ModelConfig("m", str(base), model_version_policy=ALL))
    start = asyncio.create_task(manager.start())
    # Both loads are inside backend.load at the same time (a serial loader would never get here).
    await until(lambda: backend.waiting == {str(base / "1"), str(base / "2")})
    assert not manager.ready
    assert states(manager, "m") == {1: State.LOADING, 2: State.LOADING}
    for gate in gates:
        gate.set()
    await start
    assert states(manager, "m") == {1: State.AVAILABLE, 2: State.AVAILABLE}


# ---------------------------------------------------------------- waiting for loads


async def test_use_waits_for_a_loading_version(
    make: Factory, backend: FakeBackend, tmp_path: Path
) -> None:
    base = tmp_path / "m"
    make_version(base, 1, "1")
    manager = make(single_model=ModelConfig("m", str(base), model_version_policy=ALL))
    await manager.start()
    gate = backend.hold(make_version(base, 2, "2"))
    reload = asyncio.create_task(manager.reload())
    await until(lambda: str(base / "2") in backend.waiting)
    assert states(manager, "m") == {1: State.AVAILABLE, 2: State.LOADING}
    waiter = asyncio.create_task(version_of(manager, "m", 2))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    with pytest.raises(ModelNotLoadedYet, match="Model with requested version is not loaded yet"):
        manager.metadata("m", 2)  # metadata never waits
    assert await version_of(manager, "m") == 1  # the default is the highest AVAILABLE version
    gate.set()
    assert await waiter == 2
    assert (await reload).changed
    assert await version_of(manager, "m") == 2


async def test_use_gives_up_after_load_wait_timeout(
    make: Factory, backend: FakeBackend, tmp_path: Path
) -> None:
    base = tmp_path / "m"
    gate = backend.hold(make_version(base, 1))
    manager = make(single_model=ModelConfig("m", str(base)), load_wait_timeout=0.05)
    start = asyncio.create_task(manager.start())
    await until(lambda: bool(backend.waiting))
    with pytest.raises(ModelNotLoadedYet):
        await version_of(manager, "m")
    with pytest.raises(ModelNotLoadedYet):
        await version_of(manager, "m", 1)
    gate.set()
    await start
    assert await version_of(manager, "m", 1) == 1


# ---------------------------------------------------------------- failed loads


async def test_failed_load_reports_the_error_and_is_retried_on_reload(
    make: Factory, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "m"
    folder = make_version(base, 1, "broken: cannot compile")
    manager = make(single_model=ModelConfig("m", str(base)), load_wait_timeout=60)
    await manager.start()
    assert manager.ready
    (status,) = manager.statuses("m")
    assert status == VersionStatus(1, State.LOADING, "UNKNOWN", "broken: cannot compile")
    assert status.failed
    errors = [r for r in caplog_info.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Error occurred while loading model: m version: 1; error: broken: cannot compile"
    ]
    assert status_lines(caplog_info)[-1] == line(1, "m", "LOADING", "UNKNOWN")
    # A failed version is never waited for, whatever load_wait_timeout says.
    with pytest.raises(ModelNotLoadedYet):
        await asyncio.wait_for(version_of(manager, "m"), 10)
    with pytest.raises(ModelNotLoadedYet):
        await asyncio.wait_for(version_of(manager, "m", 1), 10)
    with pytest.raises(ModelNotLoadedYet):
        manager.metadata("m")
    assert manager.loaded() == []

    (folder / "model.txt").write_text("3")
    assert (await manager.reload()).changed
    assert manager.statuses("m") == [VersionStatus(1, State.AVAILABLE)]
    assert status_lines(caplog_info)[-2:] == [line(1, "m", "LOADING"), line(1, "m", "AVAILABLE")]


async def test_latest_keeps_serving_the_newest_working_version(
    make: Factory, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "m"
    make_version(base, 1, "1")
    broken = make_version(base, 2, "broken: half copied")
    manager = make(single_model=ModelConfig("m", str(base)))
    await manager.start()
    assert manager.statuses("m") == [
        VersionStatus(2, State.LOADING, "UNKNOWN", "broken: half copied"),
        VersionStatus(1, State.AVAILABLE),
    ]
    assert await version_of(manager, "m") == 1
    with pytest.raises(ModelNotLoadedYet):
        await version_of(manager, "m", 2)
    assert any(r.levelno == logging.ERROR for r in caplog_info.records)

    (broken / "model.txt").write_text("2")
    assert (await manager.reload()).changed
    assert states(manager, "m") == {2: State.AVAILABLE, 1: State.END}
    assert await version_of(manager, "m") == 2
    with pytest.raises(ModelRetired, match="Model with requested version is retired"):
        await version_of(manager, "m", 1)
    with pytest.raises(ModelRetired):
        manager.metadata("m", 1)


# ---------------------------------------------------------------- retiring and draining


async def test_new_version_retires_the_old_one_after_its_requests(
    make: Factory, backend: FakeBackend, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "m"
    make_version(base, 1, "1")
    manager = make(single_model=ModelConfig("m", str(base)))
    await manager.start()
    (old,) = backend.models
    async with manager.use("m") as held:
        assert held.version == 1
        assert manager.in_flight("m", 1) == 1
        make_version(base, 2, "2")
        reload = asyncio.create_task(manager.reload())
        await until(lambda: states(manager, "m") == {2: State.AVAILABLE, 1: State.UNLOADING})
        assert await version_of(manager, "m") == 2  # new requests go to version 2 at once
        assert await held.infer({"x": X})  # the held request still runs on version 1
        assert not old.closed
        assert not reload.done()
        assert manager.in_flight("m", 1) == 1
    report = await reload
    assert report.changed
    assert old.closed
    assert manager.in_flight("m", 1) == 0
    assert states(manager, "m") == {2: State.AVAILABLE, 1: State.END}
    assert line(1, "m", "UNLOADING") in status_lines(caplog_info)
    assert status_lines(caplog_info)[-1] == line(1, "m", "END")


async def test_removed_version_folder_is_retired_and_can_come_back(
    make: Factory, backend: FakeBackend, tmp_path: Path
) -> None:
    base = tmp_path / "m"
    make_version(base, 1, "1")
    make_version(base, 2, "2")
    manager = make(single_model=ModelConfig("m", str(base), model_version_policy=ALL))
    await manager.start()
    shutil.rmtree(base / "2")
    assert (await manager.reload()).changed
    assert states(manager, "m") == {2: State.END, 1: State.AVAILABLE}
    assert backend.loads_of(base / "2")[0].closed
    make_version(base, 2, "5")
    assert (await manager.reload()).changed
    assert states(manager, "m") == {2: State.AVAILABLE, 1: State.AVAILABLE}
    async with manager.use("m", 2) as served:
        assert (await served.infer({"x": X}))["y"].tolist() == [5.0, 10.0]


async def test_stop_waits_for_in_flight_requests_then_closes(
    make: Factory, backend: FakeBackend, tmp_path: Path
) -> None:
    make_version(tmp_path / "m", 1)
    manager = make(single_model=ModelConfig("m", str(tmp_path / "m")))
    await manager.start()
    (model,) = backend.models
    async with manager.use("m"):
        stop = asyncio.create_task(manager.stop())
        await until(lambda: states(manager, "m") == {1: State.UNLOADING})
        assert not manager.ready
        assert not model.closed
        assert not stop.done()
    await stop
    assert model.closed
    assert states(manager, "m") == {1: State.END}
    await manager.stop()  # idempotent


# ---------------------------------------------------------------- config changes


async def test_config_change_reloads_with_zero_downtime(
    make: Factory, backend: FakeBackend, tmp_path: Path
) -> None:
    folder = make_version(tmp_path / "m", 1, "2")
    config = tmp_path / "config.json"
    write_config(config, {"name": "m", "base_path": "m", "nireq": 1})
    manager = make(config_path=str(config))
    await manager.start()
    (first,) = backend.models
    write_config(config, {"name": "m", "base_path": "m", "nireq": 4})
    gate = backend.hold(folder)
    reload = asyncio.create_task(manager.reload())
    await until(lambda: str(folder) in backend.waiting)
    # While the new instance compiles, the old one keeps serving and the version stays AVAILABLE.
    assert states(manager, "m") == {1: State.AVAILABLE}
    async with manager.use("m") as served:
        assert served.model is first
        assert (await served.infer({"x": X}))["y"].tolist() == [2.0, 4.0]
    gate.set()
    report = await reload
    assert report.changed
    assert report.config_hash == manager.config_hash == config_hash(config.read_bytes())
    async with manager.use("m") as served:
        assert served.model is not first
        assert served.model.nireq == 4
    assert first.closed
    assert states(manager, "m") == {1: State.AVAILABLE}


async def test_failed_config_reload_retires_the_old_instance_after_its_requests(
    make: Factory, backend: FakeBackend, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    make_version(tmp_path / "m", 1)
    config = tmp_path / "config.json"
    write_config(config, {"name": "m", "base_path": "m"})
    manager = make(config_path=str(config))
    await manager.start()
    (first,) = backend.models
    write_config(config, {"name": "m", "base_path": "m", "target_device": "BROKEN"})
    async with manager.use("m") as held:
        reload = asyncio.create_task(manager.reload())
        await until(lambda: manager.statuses("m")[0].failed)
        assert manager.statuses("m") == [VersionStatus(
            1, State.LOADING, "UNKNOWN", "Cannot compile model into target device BROKEN")]
        assert not first.closed
        assert await held.infer({"x": X})
        assert manager.in_flight("m", 1) == 1
    await reload
    assert first.closed
    with pytest.raises(ModelNotLoadedYet):
        await version_of(manager, "m")
    assert "Cannot compile model into target device BROKEN" in caplog_info.text


async def test_invalid_config_changes_nothing(
    make: Factory, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    make_version(tmp_path / "m", 1)
    config = tmp_path / "config.json"
    write_config(config, {"name": "m", "base_path": "m"})
    manager = make(config_path=str(config))
    await manager.start()
    good = manager.config_hash
    before = manager.all_statuses()
    for bad in (b'{"model_config_list": [', b'{"model_config_list": [{"config": {"name": "m"}}]}'):
        config.write_bytes(bad)
        with pytest.raises(ConfigError):
            await manager.reload()
        assert manager.config_hash == good
        assert manager.all_statuses() == before
        assert await version_of(manager, "m") == 1
    failures = [r for r in caplog_info.records if r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert all(r.getMessage().startswith("Reloading config file failed") for r in failures)


async def test_missing_config_file(
    make: Factory, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.json"
    with pytest.raises(ConfigFileError, match=r"^Config file not found or cannot open\.$"):
        await make(config_path=str(config)).start()
    make_version(tmp_path / "m", 1)
    write_config(config, {"name": "m", "base_path": "m"})
    manager = make(config_path=str(config))
    await manager.start()
    config.unlink()
    with pytest.raises(ConfigFileError) as err:
        await manager.reload()
    assert str(err.value) == "Config file not found or cannot open."
    assert await version_of(manager, "m") == 1
    assert "Config file not found or cannot open." in caplog_info.text


async def test_start_with_invalid_config_raises(make: Factory, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    write_config(config, {"name": "m", "base_path": "m", "nireq": "four"})
    manager = make(config_path=str(config))
    with pytest.raises(ConfigError, match="nireq"):
        await manager.start()
    assert not manager.ready
    assert manager.config_hash is None


async def test_added_and_removed_models(
    make: Factory, backend: FakeBackend, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    make_version(tmp_path / "a", 1)
    make_version(tmp_path / "b", 1, "3")
    config = tmp_path / "config.json"
    write_config(config, {"name": "a", "base_path": "a"})
    manager = make(config_path=str(config))
    await manager.start()
    first_hash = manager.config_hash

    write_config(config, {"name": "a", "base_path": "a"}, {"name": "b", "base_path": "b"})
    report = await manager.reload()
    assert report.changed
    assert report.config_hash != first_hash
    assert manager.model_names() == ["a", "b"]
    assert (await manager.reload()).changed is False  # nothing new on disk or in the file

    (b_model,) = backend.loads_of(tmp_path / "b" / "1")
    write_config(config, {"name": "a", "base_path": "a"})
    async with manager.use("b") as held:
        reload = asyncio.create_task(manager.reload())
        await until(lambda: manager.model_names() == ["a"])
        for call in (lambda: manager.statuses("b"), lambda: manager.metadata("b")):
            with pytest.raises(ModelNotFound):
                call()
        with pytest.raises(ModelNotFound):
            await version_of(manager, "b")
        assert (await held.infer({"x": X}))["y"].tolist() == [3.0, 6.0]
        assert not b_model.closed
    assert (await reload).changed
    assert b_model.closed
    assert line(1, "b", "UNLOADING") in status_lines(caplog_info)
    assert line(1, "b", "END") in status_lines(caplog_info)
    assert list(manager.all_statuses()) == ["a"]

    write_config(config, {"name": "a", "base_path": "a"}, {"name": "b", "base_path": "b"})
    await manager.reload()
    assert manager.statuses("b") == [VersionStatus(1, State.AVAILABLE)]


async def test_policy_change_alone_starts_and_retires_without_reloading(
    make: Factory, backend: FakeBackend, tmp_path: Path
) -> None:
    for v in (1, 2, 3):
        make_version(tmp_path / "m", v)
    config = tmp_path / "config.json"
    write_config(config, {"name": "m", "base_path": "m"})
    manager = make(config_path=str(config))
    await manager.start()
    (v3,) = backend.models
    write_config(config, {"name": "m", "base_path": "m", "model_version_policy": {"all": {}}})
    assert (await manager.reload()).changed
    assert states(manager, "m") == {3: State.AVAILABLE, 2: State.AVAILABLE, 1: State.AVAILABLE}
    assert len(backend.models) == 3
    write_config(config, {"name": "m", "base_path": "m",
                          "model_version_policy": {"specific": {"versions": [1, 7]}}})
    await manager.reload()
    assert states(manager, "m") == {3: State.END, 2: State.END, 1: State.AVAILABLE}
    assert v3.closed
    assert len(backend.models) == 3


async def test_missing_base_path_is_reported_once_and_picked_up_later(
    make: Factory, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.json"
    write_config(config, {"name": "m", "base_path": "models/m"})
    manager = make(config_path=str(config))
    await manager.start()
    assert manager.model_names() == ["m"]
    with pytest.raises(ModelUnavailable, match="The model base path does not exist"):
        manager.statuses("m")  # the status carries the reason (a VersionNotFound, 404)
    assert manager.all_statuses() == {"m": []}
    assert "does not exist" in (manager.model_error("m") or "")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        await version_of(manager, "m")
    assert (await manager.reload()).changed is False
    errors = [r.getMessage() for r in caplog_info.records if r.levelno == logging.ERROR]
    assert errors == [f"Model m cannot be served: The model base path does not exist or is not "
                      f"a directory: {tmp_path / 'models' / 'm'}"]

    (tmp_path / "models" / "m" / "latest").mkdir(parents=True)
    await manager.reload()
    assert (manager.model_error("m") or "").startswith(
        "Not a single model version directory has valid numeric name")

    make_version(tmp_path / "models" / "m", 1)
    assert (await manager.reload()).changed
    assert manager.model_error("m") is None
    assert manager.statuses("m") == [VersionStatus(1, State.AVAILABLE)]


async def test_single_model_reload_rescans_versions_only(make: Factory, tmp_path: Path) -> None:
    base = tmp_path / "m"
    make_version(base, 1)
    manager = make(single_model=ModelConfig("m", str(base)))
    await manager.start()
    digest = manager.config_hash
    report = await manager.reload()
    assert (report.changed, report.config_hash) == (False, digest)
    make_version(base, 2)
    report = await manager.reload()
    assert (report.changed, report.config_hash) == (True, digest)
    assert states(manager, "m") == {2: State.AVAILABLE, 1: State.END}


async def test_in_flight_counts_nested_requests(make: Factory, tmp_path: Path) -> None:
    make_version(tmp_path / "m", 1)
    manager = make(single_model=ModelConfig("m", str(tmp_path / "m")))
    await manager.start()
    async with manager.use("m"), manager.use("m", 1):
        assert manager.in_flight("m", 1) == 2
    assert manager.in_flight("m", 1) == 0
    with pytest.raises(RuntimeError, match="boom"):
        async with manager.use("m"):
            raise RuntimeError("boom")
    assert manager.in_flight("m", 1) == 0


# ---------------------------------------------------------------- polling


async def test_polling_picks_up_version_folders_and_config_edits(
    make: Factory, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    make_version(tmp_path / "a", 1, "1")
    make_version(tmp_path / "b", 1)
    config = tmp_path / "config.json"
    write_config(config, {"name": "a", "base_path": "a"})
    manager = make(config_path=str(config), poll_wait_seconds=0.05)
    await manager.start()

    make_version(tmp_path / "a", 2, "2")
    await until(lambda: states(manager, "a") == {2: State.AVAILABLE, 1: State.END})

    data = write_config(config, {"name": "a", "base_path": "a"}, {"name": "b", "base_path": "b"})
    await until(lambda: manager.config_hash == config_hash(data))
    await until(lambda: "b" in manager.model_names()
                and states(manager, "b") == {1: State.AVAILABLE})

    def failures() -> int:
        return sum(r.getMessage().startswith("Reloading config file failed")
                   for r in caplog_info.records)

    # A bad file is logged once per distinct content; polling goes on rescanning versions.
    config.write_text('{"model_config_list": "nope"}')
    await until(lambda: failures() == 1)
    make_version(tmp_path / "a", 3)
    await until(lambda: states(manager, "a").get(3) == State.AVAILABLE)
    assert failures() == 1
    config.write_text('{"model_config_list": "still nope"}')
    await until(lambda: failures() == 2)
    make_version(tmp_path / "a", 4)
    await until(lambda: states(manager, "a").get(4) == State.AVAILABLE)
    assert failures() == 2
    assert manager.config_hash == config_hash(data)
    assert manager.model_names() == ["a", "b"]


async def test_polling_retries_a_failed_version_once_its_files_change(
    make: Factory, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    folder = make_version(tmp_path / "m", 1, "broken: not copied yet")
    manager = make(single_model=ModelConfig("m", str(tmp_path / "m")), poll_wait_seconds=0.05)
    await manager.start()
    assert manager.statuses("m")[0].failed
    (folder / "model.txt").write_text("7")
    await until(lambda: states(manager, "m") == {1: State.AVAILABLE})
    assert await version_of(manager, "m") == 1
    assert "broken: not copied yet" in caplog_info.text


async def test_polling_survives_a_missing_config_file(
    make: Factory, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    make_version(tmp_path / "m", 1)
    config = tmp_path / "config.json"
    write_config(config, {"name": "m", "base_path": "m"})
    manager = make(config_path=str(config), poll_wait_seconds=0.05)
    await manager.start()
    config.unlink()
    await until(lambda: "Config file not found or cannot open." in caplog_info.text)
    make_version(tmp_path / "m", 2)
    await until(lambda: states(manager, "m").get(2) == State.AVAILABLE)
    assert caplog_info.text.count("Config file not found or cannot open.") == 1
    assert os.path.exists(tmp_path / "m" / "2")


# ---------------------------------------------------------------- with the real OpenVINO backend

A_B = {
    "a": np.array([[[1, 2], [3, 4]]], dtype=np.float32),
    "b": np.array([[[1, 1], [1, 1]]], dtype=np.float32),
}


@pytest.fixture
async def real(tmp_path: Path, executor: ThreadPoolExecutor) -> AsyncIterator[ModelManager]:
    from ovserve.server.backend.openvino import OpenVINOBackend

    ovtest_models.add_model(tmp_path / "add", version=1)
    write_config(tmp_path / "config.json", {"name": "add", "base_path": "add", "nireq": 1})
    manager = ModelManager(
        OpenVINOBackend(), config_path=str(tmp_path / "config.json"), poll_wait_seconds=0,
        executor=executor,
    )
    await manager.start()
    yield manager
    await manager.stop()


async def test_real_backend_reloads_without_failing_a_request(
    real: ModelManager, tmp_path: Path
) -> None:
    async with real.use("add") as served:
        assert served.signature.input("a") is not None
        assert (await served.infer(A_B))["sum"].tolist() == [[[2, 3], [4, 5]]]
    first = real.loaded()[0].model
    done = asyncio.Event()
    results: list[str] = []

    async def client() -> None:
        for _ in range(100_000):  # bounded; stops as soon as the reloads are done
            if done.is_set():
                return
            try:
                async with real.use("add") as served:
                    out = (await served.infer(A_B))["sum"]
                results.append(f"{served.version}:{out[0, 0, 0]:g}")
            except Exception as exc:  # any failure at all is what this test looks for
                results.append(f"failed: {exc!r}")
            # a small inference may complete inline, without suspending: yield as a network
            # client would, so the reloads get their turns
            await asyncio.sleep(0)

    clients = [asyncio.create_task(client()) for _ in range(3)]
    await until(lambda: len(results) > 10)
    write_config(tmp_path / "config.json", {"name": "add", "base_path": "add", "nireq": 2})
    assert (await real.reload()).changed
    assert real.loaded()[0].model is not first
    assert real.loaded()[0].model.nireq == 2
    ovtest_models.add_model(tmp_path / "add", version=2, offset=5.0)
    assert (await real.reload()).changed
    seen = len(results)
    await until(lambda: len(results) > seen + 10)
    done.set()
    await asyncio.gather(*clients)
    assert [r for r in results if r.startswith("failed")] == []
    assert {"1:2", "2:7"} <= set(results)
    assert states(real, "add") == {2: State.AVAILABLE, 1: State.END}
    assert real.in_flight("add", 1) == real.in_flight("add", 2) == 0


async def test_real_backend_failed_load_reports_the_runtime_error(
    real: ModelManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ovtest_models.add_model(tmp_path / "other", version=1)
    (tmp_path / "empty" / "1").mkdir(parents=True)
    write_config(
        tmp_path / "config.json",
        {"name": "add", "base_path": "add", "nireq": 1},
        {"name": "broken", "base_path": "other", "target_device": "NONEXISTENT"},
        {"name": "empty", "base_path": "empty"},
    )
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert (await real.reload()).changed
    (broken,) = real.statuses("broken")
    assert (broken.state, broken.error_code) == (State.LOADING, "UNKNOWN")
    assert "NONEXISTENT" in broken.error_message
    (empty,) = real.statuses("empty")
    assert empty.failed
    assert empty.error_message not in ("", "OK", "UNKNOWN")
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 2
    assert any("model: broken version: 1" in m and "NONEXISTENT" in m for m in logged)
    async with real.use("add") as served:
        assert (await served.infer(A_B))["sum"].tolist() == [[[2, 3], [4, 5]]]
