"""The Argo CD health script documented in docs/operator.md, run in a real Lua interpreter
(lupa) against statuses the operator writes.

Argo CD runs a resource-customization health script with the object as the global ``obj`` (a
Lua table decoded from JSON) and reads ``status`` and ``message`` from the table it returns.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lupa
from operator_fakes import model_body, server_body

from ovserve.operator import status
from ovserve.operator.reload import HandshakeResult, PodReport, VersionReport
from ovserve.operator.resources import ModelSpec, ServerSpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "operator.md"
NOW = "2026-05-01T10:00:00Z"
HASH = "a" * 64
MODEL = ModelSpec.from_body(model_body("add"))
SERVER = ServerSpec.from_body(server_body(replicas=1))


def script() -> str:
    (found,) = re.findall(r"```lua\n(.*?)```", DOC.read_text(), flags=re.S)
    return str(found)


def to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lupa.LuaRuntime()
    check = runtime.eval(f"function(obj)\n{script()}\nend")
    result = check(to_lua(runtime, obj))
    return str(result["status"]), str(result["message"])


def model(versions: tuple[VersionReport, ...], generation: int = 1,
          previous: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = ModelSpec.from_body({**model_body("add"), "metadata": {
        **model_body("add")["metadata"], "generation": generation}})
    st = status.model_status(spec, SERVER, HandshakeResult(HASH, (
        PodReport("p1", HASH, True, {"add": versions}),)), status.Pool(1, 1, 1), NOW, previous)
    return {"metadata": {"generation": generation}, "status": st}


def test_health_of_models() -> None:
    available = model((VersionReport(1, "AVAILABLE"),))
    assert health(available) == ("Healthy", "version 1 available on 1 pod(s)")
    assert health(model((VersionReport(1, "LOADING"),)))[0] == "Progressing"
    failed = model((VersionReport(1, "LOADING", "UNKNOWN", "Cannot load model"),))
    assert health(failed) == ("Degraded",
                              "version 1 failed to load on pod p1: Cannot load model")
    # An edit (generation 2) still loading: Progressing, whatever generation 1 was.
    edited = model((VersionReport(2, "LOADING"),), generation=2, previous=available["status"])
    assert edited["status"]["observedGeneration"] == 1
    assert health(edited) == ("Progressing",
                              "Waiting for the operator to observe generation 2")
    assert health({"metadata": {"generation": 1}})[0] == "Progressing"  # no status yet


def test_health_of_servers() -> None:
    ok = status.server_status(SERVER, "s", status.Pool(1, 1, 1), 1, HandshakeResult(
        HASH, (PodReport("p", HASH, True),)), NOW)
    assert health({"metadata": {"generation": 1}, "status": ok})[0] == "Healthy"
    missing = status.server_status(SERVER, "s", status.Pool(1, 0, 0), 1, None, NOW)
    assert health({"metadata": {"generation": 1}, "status": missing}) == (
        "Progressing", "0 of 1 pod(s) exist, 0 ready")
    invalid = status.server_invalid_status(1, "spec.replicas: must be >= 0", NOW)
    assert health({"metadata": {"generation": 1}, "status": invalid}) == (
        "Degraded", "invalid spec: spec.replicas: must be >= 0")
