"""One reconcile per server at a time, requests coalesced, retries on a timer. No kopf here.

Every kopf handler (an InferenceModel or InferenceServer changed, a server pod changed, the
refresh timer) only *asks* for a pass of its server with :meth:`Scheduler.kick`; the scheduler
runs :meth:`~ovserve.operator.reconcile.Reconciler.reconcile_server` in a worker thread:

* at most one pass per server runs at a time; kicks that arrive while it runs coalesce into
  one more pass right after it (so an edit made during a pass is applied at once, and three
  handlers reacting to one change cause at most two passes, not three racing ones);
* an :class:`~ovserve.operator.reconcile.Outcome` that asks to retry arms one timer per server
  (a later kick replaces it: an edit never waits for a back-off that was meant for older work);
* a pass that raises (the API server unreachable…) is retried after ``error_delay``;
* at most ``max_parallel`` passes of different servers run at once (the thread pool's size).

:meth:`Scheduler.wait` lets a handler wait for the outcome of a pass that starts after it was
called (the InferenceModel finalizer waits until the pods dropped the model).

Bounds: one slot per server with pending work (dropped when idle), one timer per server, the
waiters of one pass, ``max_parallel`` threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from .reconcile import Outcome
from .reload import Converged, GaveUp, Retry

log = logging.getLogger("ovserve.operator")

Key = tuple[str, str]  # (namespace, InferenceServer name)


class PassMetrics(Protocol):
    """Where the scheduler reports each pass (``ovserve.operator.metrics``)."""

    def observe_pass(self, result: str, seconds: float, outcome: Outcome | None) -> None: ...


def result_of(outcome: Outcome) -> str:
    """The ``result`` label of a pass: converged, retry, gave_up, invalid or waiting."""
    if outcome.server_error:
        return "invalid"
    if isinstance(outcome.step, Converged):
        return "converged"
    if isinstance(outcome.step, Retry):
        return "retry"
    if isinstance(outcome.step, GaveUp):
        return "gave_up"
    return "waiting"


@dataclass
class _Slot:
    dirty: bool = False
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    waiters: list[asyncio.Future[Outcome]] = field(default_factory=list)


class Scheduler:
    """Runs ``run_pass(namespace, name)`` per server as described in the module docstring."""

    def __init__(self, run_pass: Callable[[str, str], Outcome], *, max_parallel: int = 4,
                 error_delay: float = 15.0, metrics: PassMetrics | None = None) -> None:
        self._run_pass = run_pass
        self._error_delay = error_delay
        self._metrics = metrics
        self._slots: dict[Key, _Slot] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_parallel,
                                        thread_name_prefix="ovserve-reconcile")
        self.passes = 0  # passes run so far (all servers), for tests and logs

    def kick(self, key: Key, why: str = "") -> None:
        """Ask for a pass of ``key`` now (call on the event loop's thread)."""
        slot = self._slots.setdefault(key, _Slot())
        slot.dirty = True
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        if slot.task is None:
            log.debug("Reconciling InferenceServer %s/%s (%s)", key[0], key[1], why)
            slot.task = asyncio.get_running_loop().create_task(self._work(key, slot))

    async def wait(self, key: Key) -> Outcome:
        """Kick ``key`` and return the outcome of the next pass that starts after this call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._slots.setdefault(key, _Slot()).waiters.append(future)
        self.kick(key, "waited for")
        return await future

    async def wait_next(self, key: Key) -> Outcome:
        """The outcome of the next pass of ``key``, without asking for one earlier.

        The pass comes from the retry timer or any kick; if none is armed, it kicks.
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        slot = self._slots.setdefault(key, _Slot())
        slot.waiters.append(future)
        if slot.timer is None and slot.task is None:
            self.kick(key, "waited for")
        elif slot.task is not None and slot.timer is None:
            slot.dirty = True  # running now: its outcome is older than this call
        return await future

    def pending(self, key: Key) -> bool:
        """A pass of ``key`` is running, queued or armed on a timer."""
        slot = self._slots.get(key)
        return slot is not None and (slot.task is not None or slot.timer is not None)

    async def _work(self, key: Key, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        try:
            while slot.dirty:
                slot.dirty = False
                waiters, slot.waiters = slot.waiters, []
                started = time.monotonic()
                try:
                    outcome = await loop.run_in_executor(self._pool, self._run_pass, *key)
                except Exception as exc:
                    self._record("error", time.monotonic() - started, None)
                    log.warning("InferenceServer %s/%s: pass failed (%s); retrying in %.0f s",
                                key[0], key[1], exc, self._error_delay)
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    self._arm(key, slot, self._error_delay)
                    continue
                self.passes += 1
                self._record(result_of(outcome), time.monotonic() - started, outcome)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(outcome)
                retry = outcome.retry
                if retry is not None and not slot.dirty:
                    self._arm(key, slot, retry.delay)
        finally:
            slot.task = None
            if slot.timer is None and not slot.waiters and self._slots.get(key) is slot:
                del self._slots[key]

    def _arm(self, key: Key, slot: _Slot, delay: float) -> None:
        if slot.timer is not None:
            slot.timer.cancel()
        slot.timer = asyncio.get_running_loop().call_later(delay, self._fire, key, slot)

    def _fire(self, key: Key, slot: _Slot) -> None:
        slot.timer = None
        if self._slots.get(key) is not slot:
            self._slots.setdefault(key, slot)
        self.kick(key, "retry")

    def _record(self, result: str, seconds: float, outcome: Outcome | None) -> None:
        if self._metrics is not None:
            self._metrics.observe_pass(result, seconds, outcome)

    def close(self) -> None:
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
            if slot.task is not None:
                slot.task.cancel()
        self._slots.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
