"""The LIMIT: in-process OpenVINO inference of the benchmark's inputs, no HTTP, no JSON.

Called by :mod:`run`. Compiles the same model file ovserve serves, on the same device with the
same ``nireq`` (an ``AsyncInferQueue`` of that many infer requests), and keeps ``callers``
requests in flight for ``duration_s`` — the same closed loop the HTTP load generator drives
(a caller submits, waits for its result, submits again). Latency is measured from the moment a
caller submits (including any wait for a free infer request) to the completion callback.

No server can beat this figure on this machine: ovserve / limit says how much of the machine
goes to serving rather than inferring.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from loadgen import LoadResult


def measure(model_xml: Path, inputs: dict[str, np.ndarray], nireq: int, callers: int,
            duration_s: float, warmup_s: float, device: str = "CPU") -> LoadResult:
    core = ov.Core()
    compiled = core.compile_model(str(model_xml), device)
    queue = ov.AsyncInferQueue(compiled, nireq)
    slots = threading.Semaphore(callers)
    latencies: list[float] = []

    def on_done(request: Any, started: float) -> None:
        latencies.append(time.perf_counter() - started)
        slots.release()

    queue.set_callback(on_done)

    def run_for(seconds: float) -> float:
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            slots.acquire()
            queue.start_async(inputs, time.perf_counter())
        queue.wait_all()
        return time.perf_counter() - start

    run_for(warmup_s)
    latencies.clear()
    elapsed = run_for(duration_s)
    done = sorted(latencies)
    if not done:
        return LoadResult(0, elapsed, 0.0, 0.0, 0)

    def pct(q: float) -> float:
        return done[min(len(done) - 1, int(q * len(done)))] * 1000

    return LoadResult(len(done), elapsed, pct(0.50), pct(0.99), 0)
