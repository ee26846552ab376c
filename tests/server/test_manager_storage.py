"""The manager with remote base paths and entries that fail alone, on an in-memory Store.

The storage protocol (``list_children``/``list_files``/``download``) is served here from a dict,
so these tests are fast and exercise the manager's side: versions listed remotely, downloads
into the bounded cache, the cache copy removed when its instance closes, a storage failure that
keeps serving what serves, and the reload report of failing entries. The real providers against
their emulators are in ``test_storage_emulators.py`` (slow).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from ovserve.server.config import ModelConfig
from ovserve.server.errors import ModelLoadError, ModelUnavailable
from ovserve.server.manager import ModelManager
from ovserve.server.storage import RemoteFile, StorageError, Store
from ovserve.server.storage.cache import ModelCache, RemoteStorage
from ovserve.server.types import Signature, State


class Model:
    def __init__(self, folder: str, factor: float) -> None:
        self.signature = Signature(inputs=(), outputs=())
        self.nireq = 1
        self.streams = 1
        self.folder = folder
        self.factor = factor
        self.closed = False
        self.active_requests = 0

    async def infer(self, inputs: Any, timing: Any = None) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.closed = True


class Backend:
    """Loads ``model.txt`` (a number) from the folder it is given; records that folder."""

    def __init__(self) -> None:
        self.loaded: list[Model] = []

    def load(self, version_dir: str, config: ModelConfig) -> Model:
        try:
            text = Path(version_dir, "model.txt").read_text()
        except OSError:
            raise ModelLoadError(f"No model file in {version_dir}") from None
        if text.startswith("broken"):
            raise ModelLoadError(text)
        model = Model(version_dir, float(text))
        self.loaded.append(model)
        return model


class MemoryStore:
    """``objects`` maps keys below the base path (``1/model.txt``) to bytes."""

    def __init__(self, url: str, objects: dict[str, bytes]) -> None:
        self.url = url
        self.objects = objects
        self.failure: str | None = None  # raise StorageError(failure) from every call
        self.gate: threading.Event | None = None  # hold listings until set

    def _check(self) -> None:
        if self.gate is not None:
            assert self.gate.wait(20)
        if self.failure is not None:
            raise StorageError(self.failure)

    def list_children(self) -> list[str]:
        self._check()
        if not self.objects:
            raise StorageError(f"Cannot list {self.url}: no object under it", missing=True)
        return sorted({k.split("/")[0] for k in self.objects if "/" in k})

    def list_files(self, folder: str) -> list[RemoteFile]:
        self._check()
        return [RemoteFile(k[len(folder) + 1:], len(v), str(hash(v)))
                for k, v in sorted(self.objects.items()) if k.startswith(folder + "/")]

    def download(self, folder: str, path: str, out: BinaryIO) -> None:
        self._check()
        out.write(self.objects[f"{folder}/{path}"])


URL = "s3://models/m"


@pytest.fixture
def stores() -> dict[str, MemoryStore]:
    return {}


@pytest.fixture
def storage(tmp_path: Path, stores: dict[str, MemoryStore]) -> RemoteStorage:
    def factory(url: str, timeout: float) -> Store:
        if url not in stores:
            raise StorageError(f"{url}: remote storage is not supported")
        return stores[url]

    return RemoteStorage(ModelCache(str(tmp_path / "cache"), max_bytes=1000), timeout=0.2,
                         store_factory=factory)


@pytest.fixture
async def make(storage: RemoteStorage) -> AsyncIterator[Callable[..., ModelManager]]:
    created: list[ModelManager] = []

    def factory(**kwargs: Any) -> ModelManager:
        kwargs.setdefault("poll_wait_seconds", 0)
        manager = ModelManager(kwargs.pop("backend", Backend()), storage=storage, **kwargs)
        created.append(manager)
        return manager

    yield factory
    for manager in created:
        await manager.stop()


def write_config(path: Path, *entries: dict[str, Any]) -> None:
    path.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}))


def states(manager: ModelManager, name: str) -> dict[int, State]:
    return {s.version: s.state for s in manager.statuses(name)}


def cached(storage: RemoteStorage) -> list[str]:
    root = storage.cache.root()
    return sorted(os.listdir(root))


async def test_remote_versions_load_from_a_cache_copy_removed_on_retire(
    make: Callable[..., ModelManager], stores: dict[str, MemoryStore], storage: RemoteStorage
) -> None:
    stores[URL] = store = MemoryStore(URL, {"1/model.txt": b"2", "2/model.txt": b"3",
                                            "2/sub/extra.bin": b"xx", "tmp/model.txt": b"9"})
    backend = Backend()
    manager = make(single_model=ModelConfig("m", URL), backend=backend)
    await manager.start()
    assert states(manager, "m") == {2: State.AVAILABLE}
    (model,) = backend.loaded
    assert model.factor == 3.0
    assert model.folder.startswith(storage.cache.root())
    assert Path(model.folder, "sub", "extra.bin").read_bytes() == b"xx"
    assert storage.cache.used_bytes == 3

    store.objects["3/model.txt"] = b"4"
    assert (await manager.reload()).changed
    assert states(manager, "m") == {3: State.AVAILABLE, 2: State.END}
    assert model.closed and not os.path.exists(model.folder)
    assert len(cached(storage)) == 1 and storage.cache.used_bytes == 1

    del store.objects["3/model.txt"]  # removed remotely: version 2 comes back, 3 retires
    await manager.reload()
    assert states(manager, "m") == {3: State.END, 2: State.AVAILABLE}
    assert [os.path.basename(backend.loaded[-1].folder)] == cached(storage)


async def test_storage_failure_keeps_serving_and_the_status_says_why(
    make: Callable[..., ModelManager], stores: dict[str, MemoryStore], tmp_path: Path
) -> None:
    stores[URL] = store = MemoryStore(URL, {"1/model.txt": b"2"})
    manager = make(single_model=ModelConfig("m", URL))
    await manager.start()
    store.failure = "Cannot list s3://models/m: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist"
    await manager.reload()
    assert states(manager, "m") == {1: State.AVAILABLE}  # nothing that serves stops
    assert "InvalidAccessKeyId" in (manager.model_error("m") or "")
    async with manager.use("m") as served:
        assert served.version == 1
    store.failure = None
    await manager.reload()
    assert manager.model_error("m") is None


async def test_unreadable_storage_fails_its_entry_alone_with_the_reason(
    make: Callable[..., ModelManager], stores: dict[str, MemoryStore], tmp_path: Path
) -> None:
    (tmp_path / "local" / "1").mkdir(parents=True)
    (tmp_path / "local" / "1" / "model.txt").write_text("5")
    stores[URL] = store = MemoryStore(URL, {"1/model.txt": b"2"})
    store.failure = "Cannot list s3://models/m: the storage did not answer within 1 s"
    config = tmp_path / "config.json"
    write_config(config, {"name": "local", "base_path": "local"}, {"name": "m", "base_path": URL},
                 {"name": "odd", "base_path": "hdfs://cluster/m"})
    manager = make(config_path=str(config))
    await manager.start()  # the server starts; the entries that cannot be read fail alone
    assert states(manager, "local") == {1: State.AVAILABLE}
    with pytest.raises(ModelUnavailable, match="did not answer"):
        manager.statuses("m")
    with pytest.raises(ModelUnavailable, match="did not answer"):
        async with manager.use("m"):
            pass
    with pytest.raises(ModelUnavailable, match=r"remote storage is not supported"):
        manager.metadata("odd")
    assert manager.all_statuses()["m"] == []


async def test_a_slow_storage_does_not_hold_the_event_loop(
    make: Callable[..., ModelManager], stores: dict[str, MemoryStore], tmp_path: Path
) -> None:
    stores[URL] = store = MemoryStore(URL, {"1/model.txt": b"2"})
    store.gate = threading.Event()
    manager = make(single_model=ModelConfig("m", URL))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(ModelUnavailable, match=r"did not answer within 1 s"):
            await manager.start()
            manager.statuses("m")
        assert ticks >= 30  # the loop kept running while the listing hung for 1 s (5 x 0.2 s)
    finally:
        ticker.cancel()
        store.gate.set()


async def test_cache_bound_fails_the_version_with_a_clear_message(
    make: Callable[..., ModelManager], stores: dict[str, MemoryStore], storage: RemoteStorage
) -> None:
    stores[URL] = MemoryStore(URL, {"1/model.txt": b"2", "1/weights.bin": b"w" * 2000})
    manager = make(single_model=ModelConfig("m", URL))
    await manager.start()
    (status,) = manager.statuses("m")
    assert (status.state, status.error_code) == (State.LOADING, "UNKNOWN")
    assert "needs 2001 bytes and the model cache has 1000 bytes free of 1000 bytes" in status.error_message
    assert cached(storage) == [] and storage.cache.used_bytes == 0


async def test_failed_load_removes_its_copy(
    make: Callable[..., ModelManager], stores: dict[str, MemoryStore], storage: RemoteStorage
) -> None:
    stores[URL] = MemoryStore(URL, {"1/model.txt": b"broken: cannot compile"})
    manager = make(single_model=ModelConfig("m", URL))
    await manager.start()
    (status,) = manager.statuses("m")
    assert status.error_message == "broken: cannot compile"
    assert cached(storage) == []


async def test_reload_reports_a_new_entry_that_fails_and_applies_the_rest(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    (tmp_path / "a" / "1").mkdir(parents=True)
    (tmp_path / "a" / "1" / "model.txt").write_text("2")
    config = tmp_path / "config.json"
    write_config(config, {"name": "a", "base_path": "a"})
    manager = make(config_path=str(config))
    await manager.start()
    (tmp_path / "b" / "1").mkdir(parents=True)
    (tmp_path / "b" / "1" / "model.txt").write_text("3")
    write_config(config, {"name": "a", "base_path": "a"}, {"name": "b", "base_path": "b"},
                 {"name": "gone", "base_path": "nowhere"})
    report = await manager.reload()
    assert report.failures == (
        f"model gone: The model base path does not exist or is not a directory: {tmp_path / 'nowhere'}",
    )
    assert states(manager, "a") == {1: State.AVAILABLE}
    assert states(manager, "b") == {1: State.AVAILABLE}
    assert (await manager.reload()).failures == ()  # the same config again: nothing new applied


def test_cache_fetch_streams_and_refuses_unsafe_names(tmp_path: Path) -> None:
    cache = ModelCache(str(tmp_path / "c"), max_bytes=10_000)
    store = MemoryStore(URL, {"1/../evil": b"x"})
    with pytest.raises(StorageError, match="unsafe object name"):
        cache.fetch(store, "m", 1)
    store = MemoryStore(URL, {"1/a/b.bin": b"12345"})
    folder = cache.fetch(store, "m/../x", 1)
    assert Path(folder, "a", "b.bin").read_bytes() == b"12345"
    assert os.path.dirname(folder) == str(tmp_path / "c")
    assert cache.used_bytes == 5
    cache.close()
    assert os.listdir(tmp_path / "c") == []  # a given root is emptied, not removed


def test_cache_short_download_is_an_error(tmp_path: Path) -> None:
    class Short(MemoryStore):
        def download(self, folder: str, path: str, out: BinaryIO) -> None:
            out.write(b"12")

    cache = ModelCache(str(tmp_path / "c"), max_bytes=10_000)
    with pytest.raises(StorageError, match="has 2 bytes, the listing said 5"):
        cache.fetch(Short(URL, {"1/m.bin": b"12345"}), "m", 1)
    assert cache.used_bytes == 0 and os.listdir(tmp_path / "c") == []
