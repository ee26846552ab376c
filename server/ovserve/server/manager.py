"""ModelManager: which model versions are served, their state machine, reloads and polling.

Created by :mod:`ovserve.server.cli` with a :class:`~ovserve.server.backend.base.Backend`; the
HTTP handlers call :meth:`ModelManager.use`, :meth:`~ModelManager.metadata`,
:meth:`~ModelManager.statuses` and :meth:`~ModelManager.reload`; metrics read
:meth:`~ModelManager.loaded` and :meth:`~ModelManager.in_flight` at scrape time. No HTTP here.

Each (model, version) moves through OVMS's states, and every change is logged as OVMS logs it
(one line; wrapped here)::

    START -> LOADING -> AVAILABLE -> UNLOADING -> END
    STATUS CHANGE: Version 1 of model m status change.
        New status: ( "state": "AVAILABLE", "error_code": "OK" )

A failed load is ``LOADING`` + ``UNKNOWN`` with the real error text in ``error_message``; it is
retried on the next :meth:`~ModelManager.reload`, and by polling once its folder changes or
after a back-off (poll interval doubling up to 60 s). While a version is broken, the policy is
also applied to the remaining versions, so ``latest 1`` keeps serving the newest that works.

Reload and poll rounds (serialized by one lock) do the same: re-read the config file if the
SHA-256 of its bytes changed, then rescan every model's version folders, and apply
:func:`ovserve.server.versions.plan`. Decisions documented here:

* a model removed from the config is dropped at once (``statuses`` raises ``ModelNotFound``);
  its versions go UNLOADING -> END (logged) and close after their in-flight requests; a retired
  version of a model still configured stays listed as ``END``;
* a change of ``ModelConfig.load_key()`` reloads every version with zero downtime: the new
  instance compiles while the old one keeps serving (the status stays ``AVAILABLE``), then they
  swap; if the new load fails, the version becomes ``LOADING``/``UNKNOWN`` and the old instance
  retires after its in-flight requests;
* a model whose base path is missing or has no numeric version folder stays listed with the
  versions it had (retired, since their folders are gone), :meth:`~ModelManager.model_error`
  gives the reason and it is logged once; requests get ``VersionNotFound``;
* statuses list versions newest first; a reload waits (up to 30 s) for retired instances to
  drain, then leaves the rest draining in the background;
* each entry loads or fails on its own (OVMS): a missing base path, an unreadable storage or a
  version that fails to compile never stops the others; a model with no version to show and a
  reason (:meth:`~ModelManager.model_error`) answers status, metadata and inference with
  :class:`~ovserve.server.errors.ModelUnavailable` carrying that reason. A reload that applied a
  new config reports the entries that failed (:attr:`ReloadReport.failures`);
* a remote base path (``s3://``, ``gs://``, ``az://``; :mod:`ovserve.server.storage`) is listed
  and polled like a folder; each version is downloaded into the bounded local cache before it
  loads and its copy is removed when that instance closes. A listing that fails because the
  storage is unreachable or refuses the credentials changes nothing that serves (the reason is
  the model's error until a listing succeeds); a base path that holds nothing retires its
  versions, as a missing folder does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from . import repository, versions
from .backend.base import Backend, LoadedModel
from .config import (
    ConfigError,
    ModelConfig,
    ServerConfig,
    VersionPolicy,
    config_hash,
    parse_config,
    render_config,
)
from .errors import ModelNotFound, ModelNotLoadedYet, ModelRetired, ModelUnavailable, VersionNotFound
from .served import ModelSlot, ServedModel, VersionSlot
from .storage import StorageError, is_remote
from .storage.cache import RemoteStorage
from .types import Signature, State, VersionStatus

__all__ = [
    "CONFIG_FILE_ERROR",
    "ConfigFileError",
    "ModelManager",
    "ReloadReport",
    "ServedModel",
    "config_entry",
]

log = logging.getLogger("ovserve.server.manager")

CONFIG_FILE_ERROR = "Config file not found or cannot open."
DRAIN_TIMEOUT = 30.0  # seconds a reload or stop() waits for in-flight requests of retiring versions
MAX_RETRY_BACKOFF = 60.0


class ConfigFileError(Exception):
    """The config file is missing or unreadable; nothing changed."""

    def __init__(self, message: str = CONFIG_FILE_ERROR) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class ReloadReport:
    changed: bool  # True when any version was loaded, reloaded or retired, or a new config applied
    config_hash: str | None  # sha256 hex of the config bytes now applied
    # When this round applied a new config: "model m: why" for each entry whose base path is
    # missing or unreadable. The rest of the config is applied.
    failures: tuple[str, ...] = ()


def config_entry(model: ModelConfig) -> dict[str, Any]:
    """The config.json ``config`` entry equivalent to a ModelConfig (single-model mode hash)."""
    entry: dict[str, Any] = {"name": model.name, "base_path": model.base_path}
    optional: dict[str, Any] = {
        "batch_size": model.batch_size,
        "shape": model.shape,
        "layout": model.layout,
        "nireq": model.nireq or None,
        "target_device": None if model.target_device == "CPU" else model.target_device,
        "plugin_config": dict(model.plugin_config) or None,
        "model_version_policy": None
        if model.model_version_policy == VersionPolicy()
        else model.model_version_policy.to_json(),
        "allow_cache": None if model.allow_cache else False,
    }
    entry.update({k: v for k, v in optional.items() if v is not None})
    return entry


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _inspect_all(paths: list[str]) -> list[repository.ScanResult]:
    return [repository.inspect(p) for p in paths]


def _close_orphan(fut: asyncio.Future[LoadedModel]) -> None:
    """A load finished after its waiter was cancelled: release what it built."""
    if not fut.cancelled() and fut.exception() is None:
        fut.result().close()


class _Lease(AbstractAsyncContextManager[ServedModel]):
    """What :meth:`ModelManager.use` returns: resolves the version on entry (waiting for a load
    when needed) and counts the request in flight until exit.

    A plain class rather than ``@contextlib.asynccontextmanager``: it is entered for every
    inference request, and the generator-based version costs several microseconds more a call.
    """

    def __init__(self, manager: ModelManager, name: str, version: int | None) -> None:
        self._manager = manager
        self._name = name
        self._version = version
        self._served: ServedModel | None = None

    async def __aenter__(self) -> ServedModel:
        served = self._manager._resolve(self._name, self._version)
        if served is None:
            served = await self._manager._wait_for(self._name, self._version)
        served._enter()
        self._served = served
        return served

    async def __aexit__(self, *exc_info: object) -> None:
        if self._served is not None:
            self._served._leave()
            self._served = None


class ModelManager:
    """Serves the models of a config file (or one model given on the command line)."""

    def __init__(
        self,
        backend: Backend,
        *,
        config_path: str | None = None,
        single_model: ModelConfig | None = None,
        poll_wait_seconds: float = 1.0,
        load_wait_timeout: float = 10.0,
        executor: concurrent.futures.Executor | None = None,
        storage: RemoteStorage | None = None,
    ) -> None:
        if (config_path is None) == (single_model is None):
            raise ValueError("give exactly one of config_path and single_model")
        self._backend = backend
        self._config_path = config_path
        self._single = single_model
        self._poll_wait = poll_wait_seconds
        self._load_wait = load_wait_timeout
        self._executor = executor
        self._storage = storage  # created on the first remote base path when not given
        self._models: dict[str, ModelSlot] = {}
        self._config = ServerConfig()
        self._hash: str | None = None
        self._ready = False
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()  # replaced after every state change; waiters hold the old
        self._poll_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # drains and poll rounds
        self._logged_problem: str | None = None  # config problem last logged (once per hash)

    # ------------------------------------------------------------------ lifecycle

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def config_hash(self) -> str | None:
        return self._hash

    @property
    def config(self) -> ServerConfig:
        return self._config

    async def start(self) -> None:
        """First load; raises ConfigError/ConfigFileError. Starts polling if enabled."""
        async with self._lock:
            if self._single is not None:
                cfg = ServerConfig(models=(self._single,))
                digest = config_hash(render_config([config_entry(self._single)]))
            else:
                data = await self._read_config()
                digest = config_hash(data)
                cfg = parse_config(data, base_dir=os.path.dirname(self._config_path or ""))
            self._config, self._hash = cfg, digest
            await self._sync(cfg, poll=False)
            self._ready = True
        if self._poll_wait > 0:
            self._poll_task = asyncio.create_task(self._poll_loop(), name="ovserve-fs-poll")

    async def stop(self) -> None:
        """Stop polling, retire every version, wait (bounded) for in-flight requests, close."""
        task, self._poll_task = self._poll_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        acquired = False
        try:
            await asyncio.wait_for(self._lock.acquire(), DRAIN_TIMEOUT)
            acquired = True
        except TimeoutError:
            log.warning("A reload was still running after %.0f s; stopping anyway", DRAIN_TIMEOUT)
        try:
            self._ready = False
            for model in self._models.values():
                for slot in model.versions.values():
                    if slot.live:
                        self._retire(model, slot)
            pending = set(self._tasks)
            if pending:
                _, still = await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)
                if still:
                    log.warning("Requests still in flight after %.0f s; closing models anyway",
                                DRAIN_TIMEOUT)
                    for t in still:
                        t.cancel()
                    await asyncio.gather(*still, return_exceptions=True)
        finally:
            if acquired:
                self._lock.release()
            if self._storage is not None:
                await asyncio.to_thread(self._storage.close)  # removes the cache copies

    async def reload(self) -> ReloadReport:
        """Re-read the config file if its hash changed, then rescan every model's versions.

        Raises ConfigFileError or ConfigError (then nothing changed).
        """
        async with self._lock:
            return await self._round(poll=False)

    # ------------------------------------------------------------------ queries

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def model_error(self, name: str) -> str | None:
        """Why a model has no version folder to serve (missing base path...), else None."""
        return self._model(name).error

    def statuses(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """One version, or (None/0) every tracked version incl. END, newest first."""
        model = self._model(name)
        if version:
            slot = model.versions.get(version)
            if slot is None:
                if model.error and not model.versions:
                    raise ModelUnavailable(model.error)
                raise VersionNotFound()
            return [slot.status()]
        if model.error and not model.versions:
            raise ModelUnavailable(model.error)
        return self._statuses(model)

    @staticmethod
    def _statuses(model: ModelSlot) -> list[VersionStatus]:
        return [model.versions[n].status() for n in sorted(model.versions, reverse=True)]

    def all_statuses(self) -> dict[str, list[VersionStatus]]:
        """Every model's versions (``GET /v1/config``); a model with none lists none."""
        return {name: self._statuses(self._models[name]) for name in sorted(self._models)}

    def metadata(self, name: str, version: int | None = None) -> tuple[int, Signature]:
        """(version, signature) without waiting: a loading version is ModelNotLoadedYet."""
        served = self._resolve(name, version)
        if served is None:
            raise ModelNotLoadedYet()
        return served.version, served.signature

    def use(
        self, name: str, version: int | None = None
    ) -> AbstractAsyncContextManager[ServedModel]:
        """Borrow a version for one request (None/0: the highest AVAILABLE one).

        Waits up to ``load_wait_timeout`` for a version in START/LOADING (never for a failed
        one), then raises ModelNotLoadedYet. The request counts as in flight until the block ends.
        """
        return _Lease(self, name, version)

    def loaded(self) -> list[ServedModel]:
        out: list[ServedModel] = []
        for name in sorted(self._models):
            model = self._models[name]
            for n in sorted(model.versions):
                slot = model.versions[n]
                if slot.state == State.AVAILABLE and slot.instance is not None:
                    out.append(slot.instance)
        return out

    def in_flight(self, name: str, version: int) -> int:
        model = self._models.get(name)
        slot = model.versions.get(version) if model is not None else None
        if slot is None:
            return 0
        instances = [*slot.retiring, *([slot.instance] if slot.instance else [])]
        return sum(i.in_flight for i in instances)

    def _model(self, name: str) -> ModelSlot:
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound()
        return model

    def _resolve(self, name: str, version: int | None) -> ServedModel | None:
        """The instance to serve, None to wait for a load, or a domain error."""
        model = self._model(name)
        slots = model.versions
        if version:
            slot = slots.get(version)
            if slot is None:
                if model.pending:
                    return None
                if model.error and not slots:
                    raise ModelUnavailable(model.error)
                raise VersionNotFound()
            if slot.state == State.AVAILABLE and slot.instance is not None:
                return slot.instance
            if slot.failed:
                raise ModelNotLoadedYet()
            if slot.state in (State.START, State.LOADING):
                return None
            raise ModelRetired()
        newest: VersionSlot | None = None  # the highest AVAILABLE version
        for s in slots.values():
            if s.state == State.AVAILABLE and s.instance and (newest is None or s.number > newest.number):
                newest = s
        if newest is not None:
            return newest.instance
        if model.pending or any(s.live and not s.failed for s in slots.values()):
            return None
        if any(s.failed for s in slots.values()):
            raise ModelNotLoadedYet()
        if slots:
            raise ModelRetired()
        if model.error:
            raise ModelUnavailable(model.error)
        raise VersionNotFound()

    async def _wait_for(self, name: str, version: int | None) -> ServedModel:
        """The instance to serve once a loading version is ready (``use`` found none yet)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._load_wait
        while True:
            changed = self._changed
            served = self._resolve(name, version)
            if served is not None:
                return served
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ModelNotLoadedYet()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                raise ModelNotLoadedYet() from None

    # ------------------------------------------------------------------ rounds

    async def _read_config(self) -> bytes:
        try:
            return await asyncio.to_thread(_read_bytes, self._config_path or "")
        except OSError:
            raise ConfigFileError() from None

    def _log_problem(self, key: str, message: str, *args: object) -> None:
        if self._logged_problem != key:
            self._logged_problem = key
            log.error(message, *args)

    async def _round(self, *, poll: bool) -> ReloadReport:
        new: ServerConfig | None = None
        digest: str | None = None
        if self._config_path is not None:
            try:
                data = await self._read_config()
            except ConfigFileError:
                self._log_problem("missing", "%s (%s)", CONFIG_FILE_ERROR, self._config_path)
                if not poll:
                    raise
            else:
                digest = config_hash(data)
                if digest != self._hash:
                    try:
                        new = parse_config(data, base_dir=os.path.dirname(self._config_path))
                    except ConfigError as exc:
                        self._log_problem(digest, "Reloading config file failed: %s", exc)
                        if not poll:
                            raise
                else:
                    self._logged_problem = None
        changed = False
        if new is not None:
            log.info("Applying config %s (sha256 %s)", self._config_path, digest)
            self._config, self._hash, self._logged_problem = new, digest, None
            changed = True
        changed = await self._sync(self._config, poll=poll) or changed
        failures = self._failures() if new is not None else ()
        return ReloadReport(changed=changed, config_hash=self._hash, failures=failures)

    def _failures(self) -> tuple[str, ...]:
        """``model m: why`` for each configured model whose base path cannot be read.

        A version that fails to load is not one (OVMS answers such a reload 201 and shows the
        error in that version's status).
        """
        out: list[str] = []
        for name in sorted(self._models):
            model = self._models[name]
            if model.error:
                out.append(f"model {name}: {model.error}")
        return tuple(out)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_wait)
            # Shielded: stop() cancels this loop, never a round halfway through its loads.
            await asyncio.shield(self._spawn(self._poll_once()))

    async def _poll_once(self) -> None:
        try:
            async with self._lock:
                if self._ready:
                    await self._round(poll=True)
        except (ConfigFileError, ConfigError):
            pass  # logged once per distinct problem by _round
        except Exception:
            log.exception("File system poll failed; trying again next time")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sync(self, cfg: ServerConfig, *, poll: bool) -> bool:
        """Apply ``cfg`` and the version folders on disk; True when anything changed."""
        changed = False
        drains: list[asyncio.Task[None]] = []
        wanted = {m.name for m in cfg.models}
        for name in [n for n in self._models if n not in wanted]:
            removed = self._models.pop(name)
            log.info("Model %s was removed from the config; unloading it", name)
            if self._storage is not None and is_remote(removed.config.base_path):
                self._storage.forget(removed.config.base_path)
            drains += [self._retire(removed, s) for s in removed.versions.values() if s.live]
            changed = True
            self._notify()
        for mc in cfg.models:
            model = self._models.get(mc.name)
            if model is None:
                self._models[mc.name] = model = ModelSlot(mc)
                changed = True
            model.config = mc
        models = list(self._models.values())
        scans = await self._scan_all([m.config.base_path for m in models])
        results = await asyncio.gather(
            *(self._sync_model(m, s, poll) for m, s in zip(models, scans, strict=True)),
            return_exceptions=True,
        )
        failures: list[BaseException] = []
        for result in results:
            if isinstance(result, BaseException):
                failures.append(result)
            else:
                changed = result[0] or changed
                drains += result[1]
        if drains:
            _, still = await asyncio.wait(drains, timeout=DRAIN_TIMEOUT)
            if still:
                log.warning("%d retired instance(s) still have requests in flight; they close "
                            "when those finish", len(still))
        if failures:
            raise failures[0]
        return changed

    async def _sync_model(
        self, model: ModelSlot, scan: repository.ScanResult, poll: bool
    ) -> tuple[bool, list[asyncio.Task[None]]]:
        if scan.error != model.error:
            model.error = scan.error
            if scan.error:
                log.error("Model %s cannot be served: %s", model.config.name, scan.error)
        if scan.transient:
            # The storage did not answer (or refused us): keep whatever serves as it is.
            model.pending = False
            self._notify()
            return False, []
        cfg = model.config
        key = cfg.load_key()
        policy = cfg.model_version_policy
        available = scan.versions
        attempted: set[int] = set()
        drains: list[asyncio.Task[None]] = []
        changed = False
        plan = versions.plan(available, model.plan_states(), policy)
        for _ in range(len(available) + 1):  # each pass tries at least one version not yet tried
            starts: list[int] = []
            for v in plan.start:
                if v in attempted:
                    continue
                attempted.add(v)
                slot = model.versions.get(v)
                if poll and slot is not None and slot.failed and not await self._retry_due(
                    slot, cfg
                ):
                    continue
                starts.append(v)
            reloads: list[int] = []
            for v in plan.serve:
                slot = model.versions.get(v)
                if (v not in attempted and slot is not None and slot.state == State.AVAILABLE
                        and slot.instance is not None and slot.instance.config.load_key() != key):
                    attempted.add(v)
                    reloads.append(v)
            if not starts and not reloads:
                break
            changed = True
            outcomes = await asyncio.gather(
                *(self._start(model, v) for v in starts), *(self._reload(model, v) for v in reloads)
            )
            drains += [t for t in outcomes if t is not None]
            plan = versions.plan(available, model.plan_states(), policy)
        for v in plan.retire:
            drains.append(self._retire(model, model.versions[v]))
            changed = True
        model.pending = False
        self._notify()
        return changed, drains

    async def _retry_due(self, slot: VersionSlot, cfg: ModelConfig) -> bool:
        """Polling retries a failed version when its config or files changed, or after back-off."""
        if slot.config is None or slot.config.load_key() != cfg.load_key():
            return True
        if asyncio.get_running_loop().time() >= slot.retry_at:
            return True
        return await self._fingerprint(cfg, slot.number) != slot.fingerprint

    # ------------------------------------------------------------------ local or remote storage

    def _remote(self) -> RemoteStorage:
        if self._storage is None:
            self._storage = RemoteStorage()
        return self._storage

    async def _scan_all(self, paths: list[str]) -> list[repository.ScanResult]:
        """Scan every base path: local ones in one worker thread, remote ones concurrently."""
        local = [p for p in paths if not is_remote(p)]
        remote = [p for p in paths if is_remote(p)]
        local_scans, remote_scans = await asyncio.gather(
            asyncio.to_thread(_inspect_all, local),
            asyncio.gather(*(self._scan_remote(p) for p in remote)),
        )
        found = dict(zip(local, local_scans, strict=True)) | dict(zip(remote, remote_scans,
                                                                       strict=True))
        return [found[p] for p in paths]

    async def _scan_remote(self, url: str) -> repository.ScanResult:
        try:
            names = await self._remote().list_children(url)
        except StorageError as exc:
            if exc.missing:
                return repository.ScanResult((), f"{repository.NO_BASE_PATH}: {url}")
            return repository.ScanResult((), str(exc), transient=True)
        return repository.from_names(names, url)

    async def _fingerprint(self, cfg: ModelConfig, version: int) -> tuple[object, ...]:
        """What the files of a version look like now, to notice a changed failed version."""
        if not is_remote(cfg.base_path):
            folder = repository.version_dir(cfg.base_path, version)
            return await asyncio.to_thread(repository.fingerprint, folder)
        try:
            files = await self._remote().list_files(cfg.base_path, version)
        except StorageError:
            return ()
        return tuple(sorted((f.path, f.size, f.tag) for f in files))

    # ------------------------------------------------------------------ per-version transitions

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _set(self, model: ModelSlot, slot: VersionSlot, state: State, code: str = "OK",
             message: str = "OK") -> None:
        slot.state, slot.error_code, slot.error_message = state, code, message
        log.info('STATUS CHANGE: Version %d of model %s status change. New status: '
                 '( "state": "%s", "error_code": "%s" )', slot.number, model.config.name,
                 state.name, code)
        self._notify()

    async def _load(self, cfg: ModelConfig, version: int) -> tuple[LoadedModel, str | None]:
        """Load a version; for a remote base path, from a fresh local copy (returned too)."""
        loop = asyncio.get_running_loop()
        copy: str | None = None
        if is_remote(cfg.base_path):
            copy = folder = await self._remote().fetch(cfg.base_path, cfg.name, version)
        else:
            folder = repository.version_dir(cfg.base_path, version)
        fut = loop.run_in_executor(self._executor, self._backend.load, folder, cfg)
        try:
            return await asyncio.shield(fut), copy
        except asyncio.CancelledError:
            fut.add_done_callback(_close_orphan)
            raise
        except BaseException:
            if copy is not None:
                await self._remote().remove(copy)
            raise

    async def _attempt(self, model: ModelSlot, slot: VersionSlot, cfg: ModelConfig) -> ServedModel | None:
        """Load a new instance; on failure mark the version failed. None when failed or stale."""
        gen = slot.gen
        slot.config = cfg
        fingerprint = await self._fingerprint(cfg, slot.number)
        try:
            loaded, copy = await self._load(cfg, slot.number)
        except Exception as exc:
            if slot.gen == gen:
                text = str(exc) or type(exc).__name__
                log.error("Error occurred while loading model: %s version: %d; error: %s",
                          cfg.name, slot.number, text)
                slot.failures += 1
                delay = min(max(self._poll_wait, 0.01) * 2 ** (slot.failures - 1),
                            MAX_RETRY_BACKOFF)
                slot.retry_at = asyncio.get_running_loop().time() + delay
                slot.fingerprint = fingerprint
                slot.instance = None
                self._set(model, slot, State.LOADING, "UNKNOWN", text)
            return None
        served = ServedModel(cfg.name, slot.number, loaded, cfg)
        served.local_copy = copy
        if slot.gen != gen or self._models.get(cfg.name) is not model:
            await self._close(served)  # retired or removed while it loaded
            return None
        slot.failures = 0
        return served

    async def _start(self, model: ModelSlot, number: int) -> asyncio.Task[None] | None:
        slot = model.versions.get(number)
        if slot is None:
            slot = model.versions[number] = VersionSlot(number)
            self._set(model, slot, State.START)
        elif not slot.failed:
            self._set(model, slot, State.START)
        slot.gen += 1
        self._set(model, slot, State.LOADING)
        served = await self._attempt(model, slot, model.config)
        if served is not None:
            slot.instance = served
            self._set(model, slot, State.AVAILABLE)
        return None

    async def _reload(self, model: ModelSlot, number: int) -> asyncio.Task[None] | None:
        """Zero-downtime reload: the old instance serves until the new one is ready."""
        slot = model.versions[number]
        old, gen = slot.instance, slot.gen
        log.info("Reloading version %d of model %s: its config changed", number, model.config.name)
        served = await self._attempt(model, slot, model.config)
        if slot.gen != gen or old is None:
            return None  # retired meanwhile: that retirement drains the old instance
        if served is not None:
            slot.instance = served
            log.info("Version %d of model %s reloaded; the previous instance closes after its "
                     "in-flight requests", number, model.config.name)
            self._notify()
        return self._drain(slot, old)  # on failure _attempt already detached it

    def _retire(self, model: ModelSlot, slot: VersionSlot) -> asyncio.Task[None]:
        slot.gen += 1
        gen = slot.gen
        old, slot.instance = slot.instance, None
        self._set(model, slot, State.UNLOADING)

        async def finish() -> None:
            if old is not None:
                await self._close_when_idle(slot, old)
            if slot.gen == gen:
                self._set(model, slot, State.END)

        if old is not None:
            slot.retiring.add(old)
        return self._spawn(finish())

    def _drain(self, slot: VersionSlot, old: ServedModel) -> asyncio.Task[None]:
        slot.retiring.add(old)
        return self._spawn(self._close_when_idle(slot, old))

    async def _close_when_idle(self, slot: VersionSlot, old: ServedModel) -> None:
        try:
            await old._wait_idle()
        except asyncio.CancelledError:  # stop() gave up waiting: close anyway
            slot.retiring.discard(old)
            old.model.close()  # its cache copy goes when stop() closes the storage
            raise
        slot.retiring.discard(old)
        await self._close(old)

    async def _close(self, served: ServedModel) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, served.model.close)
        except Exception:
            log.exception("Closing version %d of model %s failed", served.version, served.name)
        if served.local_copy is not None:
            await self._remote().remove(served.local_copy)  # the cache copy goes with it
