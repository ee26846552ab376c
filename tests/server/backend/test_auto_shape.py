"""AutoShapeModel: reshapes serialized per model, the swap while calls are in flight, failures,
and the real backend's shape/batch "auto" (models built with OpenVINO's Python API).

The swap tests use small stand-in compiled models whose inference waits on an event the test
controls, so the order "a call runs on the old model, the reshape installs a new one, the call
ends" is forced rather than hoped for; everything else runs real OpenVINO.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import ovtest_models
import pytest

from ovserve.server.backend.auto_shape import AutoShapeModel, relaxed_signature
from ovserve.server.backend.openvino import OpenVINOBackend
from ovserve.server.backend.openvino_model import OpenVINOModel
from ovserve.server.config import ModelConfig
from ovserve.server.errors import InvalidInput, ModelLoadError
from ovserve.server.types import Dim, Signature, TensorSpec

pytestmark = pytest.mark.timeout(60)

F32 = np.float32


def spec(name: str, *dims: int) -> TensorSpec:
    return TensorSpec(name, "FP32", tuple(Dim.static(d) if d >= 0 else Dim.dynamic() for d in dims))


class Held:
    """A stand-in compiled model: echoes ``x``; a call waits for ``release`` when ``hold``."""

    def __init__(self, batch: int, hold: bool = False) -> None:
        self.signature = Signature((spec("x", batch, 2),), (spec("y", batch, 2),))
        self.nireq = 1
        self.streams = 1
        self.active_requests = 0
        self.closed = False
        self.hold = hold
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def infer(self, inputs: Mapping[str, np.ndarray], timing: object = None
                    ) -> dict[str, np.ndarray]:
        assert not self.closed, "inference on a closed model"
        self.active_requests += 1
        self.started.set()
        if self.hold:
            await self.release.wait()
        self.active_requests -= 1
        return {"y": np.asarray(inputs["x"])}

    def close(self) -> None:
        self.closed = True


def auto_of(first: Held, build: Any) -> AutoShapeModel:
    return AutoShapeModel(cast(OpenVINOModel, first), build, {0: False}, label="m")


def test_relaxed_signature() -> None:
    sig = Signature((spec("a", 1, 3), spec("b", 2, 2), spec("c", 4)), (spec("y", 1),))
    relaxed = relaxed_signature(sig, {0: False, 1: True})
    assert [s.shape for s in relaxed.inputs] == [
        (Dim.dynamic(), Dim.static(3)), (Dim.dynamic(), Dim.dynamic()), (Dim.static(4),)]
    assert relaxed.outputs == sig.outputs


async def test_a_call_in_flight_finishes_on_the_old_model_which_then_closes() -> None:
    old = Held(1, hold=True)
    new = Held(4)
    built: list[Mapping[int, Sequence[int]]] = []

    def build(shapes: Mapping[int, Sequence[int]]) -> Held:
        built.append(dict(shapes))
        return new

    model = auto_of(old, build)
    slow = asyncio.create_task(model.infer({"x": np.ones((1, 2), F32)}))
    await old.started.wait()
    out = await model.infer({"x": np.ones((4, 2), F32)})  # reshapes while `slow` runs
    assert out["y"].shape == (4, 2)
    assert built == [{0: (4, 2)}]
    assert model.signature is new.signature and model.reshapes == 1
    assert not old.closed  # still answering `slow`
    old.release.set()
    assert (await slow)["y"].shape == (1, 2)
    assert old.closed and not new.closed
    model.close()
    assert new.closed


async def test_requests_needing_one_new_shape_reshape_once() -> None:
    calls = 0
    gate = threading.Event()

    def build(shapes: Mapping[int, Sequence[int]]) -> Held:
        nonlocal calls
        calls += 1
        gate.wait(10)
        return Held(shapes[0][0])

    model = auto_of(Held(1), build)
    tasks = [asyncio.create_task(model.infer({"x": np.full((3, 2), i, F32)})) for i in range(6)]
    await asyncio.sleep(0.05)
    gate.set()
    outs = await asyncio.gather(*tasks)
    assert calls == 1 and model.reshapes == 1
    assert [float(o["y"][0, 0]) for o in outs] == [0, 1, 2, 3, 4, 5]


async def test_a_failed_reshape_is_the_clients_error_and_keeps_the_model() -> None:
    first = Held(1)

    def build(shapes: Mapping[int, Sequence[int]]) -> Held:
        raise ModelLoadError("Dimensions of matmul do not match")

    model = auto_of(first, build)
    with pytest.raises(InvalidInput) as caught:
        await model.infer({"x": np.ones((5, 2), F32)})
    assert caught.value.message == (
        "Model could not be reshaped with requested shape - Dimensions of matmul do not match")
    assert model.signature is first.signature and not first.closed
    assert (await model.infer({"x": np.ones((1, 2), F32)}))["y"].shape == (1, 2)


async def test_a_cancelled_reshape_closes_what_it_built() -> None:
    gate = threading.Event()
    made: list[Held] = []

    def build(shapes: Mapping[int, Sequence[int]]) -> Held:
        gate.wait(10)
        made.append(Held(shapes[0][0]))
        return made[-1]

    first = Held(1)
    model = auto_of(first, build)
    task = asyncio.create_task(model.infer({"x": np.ones((2, 2), F32)}))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    for _ in range(200):
        if made and made[0].closed:
            break
        await asyncio.sleep(0.01)
    assert made and made[0].closed
    assert model.signature is first.signature and model.reshapes == 0


# ----------------------------------------------------------------- the real backend


def load(path: Path, **kw: Any) -> Any:
    return OpenVINOBackend().load(str(path), ModelConfig(name="m", base_path=str(path.parent), **kw))


async def test_backend_batch_auto(tmp_path: Path) -> None:
    model = load(ovtest_models.add_model(tmp_path / "add", shape=(1, 2, 2)), batch_size="auto")
    assert isinstance(model, AutoShapeModel)
    assert model.signature.inputs[0].shape_text() == "(1,2,2)"
    assert model.accepts.inputs[0].shape_text() == "(-1,2,2)"
    a = np.arange(12, dtype=F32).reshape(3, 2, 2)
    out = await model.infer({"a": a, "b": a})
    np.testing.assert_array_equal(out["sum"], a * 2)
    assert model.signature.inputs[1].shape_text() == "(3,2,2)"
    assert model.signature.outputs[0].shape_text() == "(3,2,2)"
    await model.infer({"a": a, "b": a})
    assert model.reshapes == 1
    model.close()


async def test_backend_shape_auto_for_one_input_keeps_the_other_fixed(tmp_path: Path) -> None:
    model = load(ovtest_models.add_model(tmp_path / "add", shape=(1, 2, 2)),
                 shape={"a": "auto", "b": "(1,2,2)"})
    assert model.accepts.inputs[0].shape_text() == "(-1,-1,-1)"
    assert model.accepts.inputs[1].shape_text() == "(1,2,2)"
    out = await model.infer({"a": np.ones((1, 1, 1), F32), "b": np.ones((1, 2, 2), F32)})
    np.testing.assert_array_equal(out["sum"], np.full((1, 2, 2), 2, F32))  # broadcast
    assert model.signature.inputs[0].shape_text() == "(1,1,1)"
    model.close()


def test_backend_without_auto_gives_a_plain_model(tmp_path: Path) -> None:
    model = load(ovtest_models.add_model(tmp_path / "add", shape=(1, 2, 2)), batch_size=2)
    assert isinstance(model, OpenVINOModel)
    assert model.signature.inputs[0].shape_text() == "(2,2,2)"
    model.close()
