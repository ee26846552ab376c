"""The manager's bookkeeping: a served instance, and the tracked state of a model and its versions.

:class:`ServedModel` is what :meth:`ovserve.server.manager.ModelManager.use` hands to a request
(it counts in-flight requests so a retiring instance closes only when idle);
:class:`VersionSlot` and :class:`ModelSlot` are the mutable state the manager keeps per version
and per model. Only the manager changes them, and only on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any

import numpy as np

from .backend.base import InferTiming, LoadedModel
from .config import ModelConfig
from .types import Signature, State, VersionStatus

__all__ = ["ModelSlot", "ServedModel", "VersionSlot"]


class ServedModel:
    """One loaded instance of a model version, handed out by :meth:`ModelManager.use`."""

    def __init__(self, name: str, version: int, model: LoadedModel, config: ModelConfig) -> None:
        self.name = name
        self.version = version
        self.model = model
        # What requests are checked against: the signature, except for a model with shape or
        # batch "auto" (backend.auto_shape), whose auto dimensions take any size.
        self.accepts: Signature = getattr(model, "accepts", None) or model.signature
        self.config = config
        self.local_copy: str | None = None  # cache folder of a remote version, removed on close
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def signature(self) -> Signature:
        """The model's inputs and outputs as they are now (what metadata reports)."""
        return self.model.signature

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def infer(
        self, inputs: Mapping[str, np.ndarray], timing: InferTiming | None = None
    ) -> Coroutine[Any, Any, dict[str, np.ndarray]]:
        # the model's own coroutine, not one wrapping it: one frame less on every request
        return self.model.infer(inputs, timing)

    def _enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def _wait_idle(self) -> None:
        await self._idle.wait()


class VersionSlot:
    """Mutable state of one tracked version (only touched on the event loop)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.state = State.START
        self.error_code = "OK"
        self.error_message = "OK"
        self.instance: ServedModel | None = None  # the instance serving requests
        self.retiring: set[ServedModel] = set()  # older instances still draining
        self.config: ModelConfig | None = None  # config of the instance or of the last attempt
        self.gen = 0  # bumped by every start and retire; stale completions check it
        self.failures = 0
        self.retry_at = 0.0
        self.fingerprint: tuple[object, ...] = ()  # the version's files at its last attempt

    @property
    def failed(self) -> bool:
        return self.state == State.LOADING and self.error_code == "UNKNOWN"

    @property
    def live(self) -> bool:
        return self.state in (State.START, State.LOADING, State.AVAILABLE)

    def status(self) -> VersionStatus:
        return VersionStatus(self.number, self.state, self.error_code, self.error_message)


class ModelSlot:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, VersionSlot] = {}
        self.error: str | None = None
        self.pending = True  # until its first scan was applied; requests wait meanwhile

    def plan_states(self) -> dict[int, State]:
        return {n: State.UNKNOWN if v.failed else v.state for n, v in self.versions.items()}
