"""Decode baselines for the large row body, timed in-process on one thread.

Called by :mod:`run`. Each baseline turns the ``{"instances": [<[3,224,224] list>]}`` bytes into
a float32 numpy array of shape ``[1,3,224,224]``:

* ``stdlib`` — ``json.loads(body)`` + ``numpy.asarray(doc["instances"], dtype=float32)``: what a
  plain Python server does. Issue 2's target: ovserve serves large requests (HTTP, decode,
  inference, encode) at >= 3x this decode-only rate.
* ``orjson`` — ``orjson.loads`` + ``numpy.asarray``, for reference.
* ``ovserve`` — the server's own decoder, ``ovserve.server.codecs.tfs.decode_predict``, when it
  exists (``None`` otherwise), so a miss can be split into "decoder" and "everything else".
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

SHAPE = (1, 3, 224, 224)


@dataclass(frozen=True)
class DecodeRate:
    name: str
    per_s: float
    median_ms: float
    note: str = ""


def time_it(name: str, fn: Callable[[], object], seconds: float, note: str = "") -> DecodeRate:
    """Call ``fn`` repeatedly for ~``seconds`` (at least 3 times, after one warm-up call)."""
    fn()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return DecodeRate(name, len(times) / sum(times), median * 1000, note)


def stdlib_decode(body: bytes) -> np.ndarray:
    return np.asarray(json.loads(body)["instances"], dtype=np.float32)


def orjson_decode(body: bytes) -> np.ndarray:
    return np.asarray(orjson.loads(body)["instances"], dtype=np.float32)


def pool_signature() -> object:
    """The ``pool`` model's signature in ovserve's types (x f32 [-1,3,224,224] -> y [-1,1024])."""
    types: Any = importlib.import_module("ovserve.server.types")
    dim = types.Dim
    x = types.TensorSpec("x", "FP32", (dim.dynamic(), *(dim.static(n) for n in SHAPE[1:])))
    y = types.TensorSpec("y", "FP32", (dim.dynamic(), dim.static(1024)))
    return types.Signature((x,), (y,))


def server_decoder(body: bytes) -> tuple[Callable[[], object] | None, str]:
    """``(call, note)``: a zero-argument call of ovserve's TFS decoder on ``body``, if importable.

    ``decode_predict(body, signature)`` as the server calls it (the ``pool`` model's signature,
    so numbers decode straight to float32); the result must be the stdlib's array.
    """
    try:
        tfs = importlib.import_module("ovserve.server.codecs.tfs")
        signature = pool_signature()
    except (ImportError, AttributeError, TypeError) as exc:
        return None, f"ovserve's TFS codec not usable here ({exc})"
    fn: Any = getattr(tfs, "decode_predict", None)
    if fn is None:
        return None, "ovserve.server.codecs.tfs.decode_predict does not exist"

    def call() -> object:
        return fn(body, signature)

    try:
        decoded = call()
        array = next(iter(decoded.inputs.values()))  # type: ignore[attr-defined]
    except Exception as exc:  # reported, never fatal: the harness measures, it does not test
        return None, f"decode_predict(body, signature) raised {type(exc).__name__}: {exc}"
    if array.dtype != np.float32 or not np.array_equal(array, stdlib_decode(body)):
        return None, f"decode_predict gave {array.dtype} {array.shape}, not the stdlib's array"
    return call, "decode_predict(body, signature)"


def measure(body: bytes, seconds: float) -> list[DecodeRate]:
    """The stdlib baseline first (the reference), then orjson, then ovserve's decoder."""
    check = stdlib_decode(body)
    if check.shape != SHAPE:
        raise ValueError(f"large body decodes to {check.shape}, expected {SHAPE}")
    rates = [
        time_it("stdlib json+numpy", lambda: stdlib_decode(body), seconds),
        time_it("orjson+numpy", lambda: orjson_decode(body), seconds),
    ]
    call, note = server_decoder(body)
    if call is not None:
        rates.append(time_it("ovserve decode_predict", call, seconds, note))
    else:
        rates.append(DecodeRate("ovserve decode_predict", 0.0, 0.0, note))
    return rates
