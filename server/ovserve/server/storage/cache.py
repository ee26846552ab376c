"""Remote versions copied into a bounded local cache folder, and the async face of the stores.

:class:`RemoteStorage` is what the manager uses for every ``s3://`` / ``gs://`` / ``az://``
base path. It runs the blocking SDK calls on its own small thread pool (:data:`IO_THREADS`
threads, so a slow or unreachable store never takes the threads that local models and the
codecs use) and gives each listing a deadline, so an unreachable endpoint costs a model at most
that long and never stalls the event loop.

A version is loaded from a local copy: :meth:`RemoteStorage.fetch` lists the version's objects,
reserves their total size against the cache bound (``--storage_cache_max_mb``), and streams
each object into ``<cache>/<model>-<version>-<random>/`` in chunks of
:data:`~ovserve.server.storage.CHUNK_BYTES`; the manager removes that folder when the instance
it loaded retires (or at once when the load fails), which returns its bytes to the bound. A
reload of a version downloads into a new folder, so the instance still serving keeps its files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import DEFAULT_TIMEOUT, RemoteFile, StorageError, Store, open_store

__all__ = ["DEFAULT_CACHE_MAX_BYTES", "IO_THREADS", "ModelCache", "RemoteStorage"]

DEFAULT_CACHE_MAX_BYTES = 20 * 1024**3  # --storage_cache_max_mb default (20 GiB)
IO_THREADS = 4  # threads running storage calls: at most this many listings/downloads at once

T = TypeVar("T")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class ModelCache:
    """Folders holding downloaded versions, their total size kept under ``max_bytes``."""

    def __init__(self, root: str | None, max_bytes: int = DEFAULT_CACHE_MAX_BYTES) -> None:
        self._root = root
        self._own_root = root is None
        self.max_bytes = max_bytes
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def folders(self) -> list[str]:
        with self._lock:
            return sorted(self._sizes)

    def root(self) -> str:
        with self._lock:
            if self._root is None:
                self._root = tempfile.mkdtemp(prefix="ovserve-storage-")
            os.makedirs(self._root, exist_ok=True)
            return self._root

    def _reserve(self, folder: str, size: int, what: str) -> None:
        with self._lock:
            used = sum(self._sizes.values())
            if used + size > self.max_bytes:
                raise StorageError(
                    f"Cannot download {what}: it needs {_size(size)} and the model cache has "
                    f"{_size(self.max_bytes - used)} free of {_size(self.max_bytes)} "
                    "(--storage_cache_max_mb)")
            self._sizes[folder] = size

    def fetch(self, store: Store, name: str, version: int) -> str:
        """Download one version into a new folder; returns it. Blocking. Raises StorageError."""
        what = f"version {version} of {store.url}"
        files = store.list_files(str(version))
        if not files:
            raise StorageError(f"Cannot download {what}: the version folder holds no file")
        for f in files:
            parts = f.path.split("/")
            if f.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise StorageError(f"Cannot download {what}: unsafe object name {f.path!r}")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]
        folder = tempfile.mkdtemp(prefix=f"{safe}-{version}-", dir=self.root())
        try:
            self._reserve(folder, sum(f.size for f in files), what)
        except StorageError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        try:
            for f in files:
                target = os.path.join(folder, *f.path.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as out:
                    store.download(str(version), f.path, out)
                    written = out.tell()
                if written != f.size:
                    raise StorageError(f"Cannot download {what}: {f.path} has {written} bytes, "
                                       f"the listing said {f.size}")
        except BaseException:
            self.remove(folder)
            raise
        return folder

    def remove(self, folder: str) -> None:
        """Delete a downloaded version folder and return its bytes to the bound. Blocking."""
        shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._sizes.pop(folder, None)

    def close(self) -> None:
        """Remove every folder, and the cache root when this cache created it."""
        for folder in self.folders():
            self.remove(folder)
        with self._lock:
            root, own = self._root, self._own_root
        if own and root is not None:
            shutil.rmtree(root, ignore_errors=True)


class RemoteStorage:
    """Async access to remote base paths for the manager: listings, fingerprints, downloads."""

    def __init__(self, cache: ModelCache | None = None, timeout: float = DEFAULT_TIMEOUT,
                 store_factory: Callable[[str, float], Store] = open_store) -> None:
        self.cache = cache or ModelCache(None)
        self.timeout = timeout
        self._factory = store_factory
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(IO_THREADS,
                                                           thread_name_prefix="storage")

    def _store(self, url: str) -> Store:
        with self._lock:
            store = self._stores.get(url)
        if store is None:
            store = self._factory(url, self.timeout)
            with self._lock:
                self._stores[url] = store
        return store

    async def _run(self, fn: Callable[[], T], deadline: float | None) -> T:
        fut = asyncio.get_running_loop().run_in_executor(self._pool, fn)
        fut.add_done_callback(_consume)  # a call abandoned at its deadline may still fail later
        if deadline is None:
            return await fut
        try:
            return await asyncio.wait_for(asyncio.shield(fut), deadline)
        except TimeoutError:
            raise StorageError(f"the storage did not answer within {deadline:.0f} s") from None

    def _deadline(self) -> float:
        # two attempts of connect + read, plus the thread possibly waiting for a free worker
        return self.timeout * 5

    async def list_children(self, url: str) -> list[str]:
        try:
            return await self._run(lambda: self._store(url).list_children(), self._deadline())
        except StorageError as exc:
            if str(exc).startswith("the storage did not answer"):
                raise StorageError(f"Cannot list {url}: {exc}") from None
            raise

    async def list_files(self, url: str, version: int) -> list[RemoteFile]:
        return await self._run(lambda: self._store(url).list_files(str(version)),
                               self._deadline())

    async def fetch(self, url: str, name: str, version: int) -> str:
        """Download a version (no overall deadline: each storage call has its own timeout)."""
        return await self._run(lambda: self.cache.fetch(self._store(url), name, version), None)

    async def remove(self, folder: str) -> None:
        await self._run(lambda: self.cache.remove(folder), None)

    def forget(self, url: str) -> None:
        """Drop the client of a base path no longer configured."""
        with self._lock:
            self._stores.pop(url, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.cache.close()
