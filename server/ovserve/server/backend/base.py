"""The backend protocol the manager loads models through.

A :class:`Backend` turns one version folder plus its :class:`~ovserve.server.config.ModelConfig`
into a :class:`LoadedModel`. Loading is blocking work; the manager runs it in an executor.
``LoadedModel.infer`` is a coroutine that never blocks the event loop: it waits for a free
infer request (``nireq`` of them) and runs inference on the runtime's own threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..config import ModelConfig
from ..types import Signature


@dataclass
class InferTiming:
    """Microseconds spent waiting for a free infer request and running inference."""

    wait_us: float = 0.0
    infer_us: float = 0.0


class LoadedModel(Protocol):
    @property
    def signature(self) -> Signature:
        """The inputs and outputs as they are now (a model with shape/batch "auto" changes
        them as it reshapes; see :mod:`.auto_shape`)."""
        ...

    @property
    def nireq(self) -> int: ...

    @property
    def streams(self) -> int: ...

    @property
    def active_requests(self) -> int:
        """Infer requests currently running (for ``ovms_infer_req_active``)."""
        ...

    async def infer(
        self, inputs: Mapping[str, np.ndarray], timing: InferTiming | None = None
    ) -> dict[str, np.ndarray]:
        """Run one inference; outputs in the model's output order. Raises InferenceFailed."""
        ...

    def close(self) -> None:
        """Release the compiled model; called once no request uses it any more."""
        ...


class Backend(Protocol):
    def load(self, version_dir: str, config: ModelConfig) -> LoadedModel:
        """Read and compile the model in ``version_dir``; blocking. Raises ModelLoadError."""
        ...
