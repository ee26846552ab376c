"""The scheduler: one pass per server at a time, kicks coalesced, retries on a timer.

Passes run in the scheduler's real thread pool; a pass here is a function that records when it
ran and for how long (a short sleep stands for the API and pod calls).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from ovserve.operator.reconcile import Outcome
from ovserve.operator.reload import Converged, GaveUp, Retry, Step
from ovserve.operator.scheduler import Scheduler, result_of


class Passes:
    """A fake ``reconcile_server``: records every pass and the most that overlapped."""

    def __init__(self, seconds: float = 0.05,
                 steps: Callable[[int], Step | None] | None = None) -> None:
        self.seconds = seconds
        self.steps = steps or (lambda n: Converged())
        self.runs: list[tuple[str, str]] = []
        self.running: dict[tuple[str, str], int] = {}
        self.most: dict[tuple[str, str], int] = {}
        self.most_overall = 0
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, namespace: str, name: str) -> Outcome:
        key = (namespace, name)
        with self._lock:
            self.runs.append(key)
            number = len([k for k in self.runs if k == key])
            self.running[key] = self.running.get(key, 0) + 1
            self.most[key] = max(self.most.get(key, 0), self.running[key])
            self.most_overall = max(self.most_overall, sum(self.running.values()))
        try:
            time.sleep(self.seconds)
            if self.fail is not None:
                raise self.fail
            return Outcome(name, self.steps(number))
        finally:
            with self._lock:
                self.running[key] -= 1


class Recorder:
    def __init__(self) -> None:
        self.results: list[str] = []

    def observe_pass(self, result: str, seconds: float, outcome: Outcome | None) -> None:
        self.results.append(result)


async def test_kicks_during_a_pass_coalesce_into_one_more_pass() -> None:
    passes = Passes(seconds=0.2)
    scheduler = Scheduler(passes)
    key = ("ml", "default")
    scheduler.kick(key, "model created")
    await asyncio.sleep(0.05)  # the first pass is running now
    for why in ("model resumed", "server resumed", "pod ready", "timer"):
        scheduler.kick(key, why)
    await asyncio.sleep(0.7)
    assert passes.runs == [key, key]  # not five, and not three racing ones
    assert passes.most[key] == 1
    assert not scheduler.pending(key)
    scheduler.close()


async def test_different_servers_run_in_parallel_up_to_the_bound() -> None:
    passes = Passes(seconds=0.2)
    scheduler = Scheduler(passes, max_parallel=2)
    for name in ("a", "b", "c"):
        scheduler.kick(("ml", name))
    await asyncio.sleep(0.7)
    assert sorted(passes.runs) == [("ml", "a"), ("ml", "b"), ("ml", "c")]
    assert passes.most_overall == 2
    scheduler.close()


async def test_a_retry_arms_a_timer_and_a_kick_replaces_it() -> None:
    recorder = Recorder()
    passes = Passes(seconds=0.0, steps=lambda n: Retry(0.3, "stale") if n == 1 else Converged())
    scheduler = Scheduler(passes, metrics=recorder)
    key = ("ml", "default")
    scheduler.kick(key)
    await asyncio.sleep(0.1)
    assert passes.runs == [key] and scheduler.pending(key)  # armed, not running
    scheduler.kick(key, "an edit")  # runs now instead of after the back-off
    await asyncio.sleep(0.1)
    assert passes.runs == [key, key]
    await asyncio.sleep(0.4)  # the replaced timer never fires
    assert passes.runs == [key, key] and not scheduler.pending(key)
    assert recorder.results == ["retry", "converged"]
    scheduler.close()


async def test_retries_follow_the_outcomes_delay() -> None:
    passes = Passes(seconds=0.0, steps=lambda n: Retry(0.1, "stale") if n < 4 else Converged())
    scheduler = Scheduler(passes)
    started = time.monotonic()
    outcome = await scheduler.wait(("ml", "default"))
    while outcome.retry is not None:
        outcome = await scheduler.wait_next(("ml", "default"))
    took = time.monotonic() - started
    assert len(passes.runs) == 4 and outcome.step == Converged()
    assert 0.3 <= took < 1.5
    scheduler.close()


async def test_wait_returns_a_pass_that_started_after_the_call() -> None:
    passes = Passes(seconds=0.2)
    scheduler = Scheduler(passes)
    key = ("ml", "default")
    scheduler.kick(key)
    await asyncio.sleep(0.05)
    outcome = await scheduler.wait(key)  # the running pass read older objects: not that one
    assert outcome.step == Converged() and passes.runs == [key, key]
    scheduler.close()


async def test_a_failing_pass_fails_its_waiters_and_is_retried() -> None:
    recorder = Recorder()
    passes = Passes(seconds=0.0)
    passes.fail = RuntimeError("HTTP 503: the API server is restarting")
    scheduler = Scheduler(passes, error_delay=0.2, metrics=recorder)
    key = ("ml", "default")
    with pytest.raises(RuntimeError, match="restarting"):
        await scheduler.wait(key)
    passes.fail = None
    await asyncio.sleep(0.35)
    assert passes.runs == [key, key] and recorder.results == ["error", "converged"]
    scheduler.close()


def test_result_labels() -> None:
    assert result_of(Outcome("s", Converged())) == "converged"
    assert result_of(Outcome("s", Retry(1, "x"))) == "retry"
    assert result_of(Outcome("s", GaveUp("x"))) == "gave_up"
    assert result_of(Outcome("s", None)) == "waiting"
    assert result_of(Outcome("s", None, server_error="bad")) == "invalid"
