"""Turn measurements into the printed table, the target ratios and the JSON results file.

Called by :mod:`run`. Targets (issues 2 and 3)::

    v1 small  ovserve / floor           >= 0.70
    v1 large  ovserve / stdlib decode   >= 3.0   (req/s vs json.loads+numpy.asarray per s)
    v2 binary ovserve / floor           >= 0.80
    absolute  ovserve / peers           >= 2.0   (KServe/MLServer ~1.1k small, 60-65 large)

Ratios without a target (ovserve / limit, decoder speed-ups) are printed as ``info``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from decode import DecodeRate
from loadgen import LoadResult

PEER_SMALL_RPS = 1100.0
PEER_LARGE_RPS = 65.0  # the upper end of the peers' 60-65 req/s: the stricter comparison


@dataclass(frozen=True)
class Row:
    case: str
    title: str
    target: str  # limit | floor | bare | ovserve
    result: LoadResult
    body_bytes: int
    response_bytes: int

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["result"] = self.result.as_dict()
        return d


@dataclass(frozen=True)
class Ratio:
    name: str
    value: float | None
    target: float | None
    note: str = ""

    @property
    def status(self) -> str:
        if self.value is None:
            return "SKIP"
        if self.target is None:
            return "info"
        return "PASS" if self.value >= self.target else "MISS"


@dataclass
class Report:
    meta: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    decode: list[DecodeRate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def rps(self, case: str, target: str) -> float | None:
        for r in self.rows:
            if r.case == case and r.target == target and r.result.errors == 0:
                return r.result.rps
        return None

    def decode_rate(self, name: str) -> float | None:
        for d in self.decode:
            if d.name == name and d.per_s > 0:
                return d.per_s
        return None

    def ratios(self) -> list[Ratio]:
        def div(a: float | None, b: float | None) -> float | None:
            return a / b if a is not None and b else None

        ov = self.rps
        stdlib = self.decode_rate("stdlib json+numpy")
        return [
            Ratio("v1 small col: ovserve / floor", div(ov("small_col", "ovserve"),
                                                       ov("small_col", "floor")), 0.70),
            Ratio("v1 small row: ovserve / floor", div(ov("small_row", "ovserve"),
                                                       ov("small_row", "floor")), 0.70),
            Ratio("v1 large row: ovserve / stdlib decode", div(ov("large_row", "ovserve"),
                                                               stdlib), 3.0),
            Ratio("v1 large row: ovserve / floor", div(ov("large_row", "ovserve"),
                                                       ov("large_row", "floor")), None),
            Ratio("v2 JSON small: ovserve / floor", div(ov("v2_json", "ovserve"),
                                                        ov("v2_json", "floor")), 0.70,
                  "issue 2's small-request target, applied to v2"),
            Ratio("v2 binary large: ovserve / floor", div(ov("v2_binary", "ovserve"),
                                                          ov("v2_binary", "floor")), 0.80),
            *(Ratio(f"{case.replace('_', ' ')}: ovserve / bare delegate",
                    div(ov(case, "ovserve"), ov(case, "bare")), None,
                    "no RequestHandler in either" if case == "small_col" else "")
              for case in ("small_col", "small_row", "v2_json", "v2_binary", "large_row")),
            Ratio("small: ovserve col / limit", div(ov("small_col", "ovserve"),
                                                    ov("small", "limit")), None),
            Ratio("large: ovserve row / limit", div(ov("large_row", "ovserve"),
                                                    ov("large", "limit")), None),
            Ratio("large: ovserve v2 binary / limit", div(ov("v2_binary", "ovserve"),
                                                          ov("large", "limit")), None),
            Ratio("decode: ovserve decode_predict / stdlib",
                  div(self.decode_rate("ovserve decode_predict"), stdlib), None),
            Ratio("absolute small col vs peers (1.1k req/s)",
                  div(ov("small_col", "ovserve"), PEER_SMALL_RPS), 2.0, "machine-dependent"),
            Ratio("absolute large row vs peers (65 req/s)",
                  div(ov("large_row", "ovserve"), PEER_LARGE_RPS), 2.0, "machine-dependent"),
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "rows": [r.as_dict() for r in self.rows],
            "decode": [asdict(d) for d in self.decode],
            "ratios": [{**asdict(r), "status": r.status} for r in self.ratios()],
            "notes": self.notes,
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(report: Report) -> str:
    m = report.meta
    out = [
        f"ovserve bench  {m.get('started', '')}  cpus={m.get('cpus')}  "
        f"load(before)={m.get('load_before')}  load(after)={m.get('load_after')}",
        f"cpu: {m.get('cpu_model')}",
        f"generator: {m.get('generator')}, {m.get('connections')} connections, "
        f"{m.get('duration_s')} s per case and target in {m.get('rounds', 1)} alternating "
        f"rounds (median shown) after {m.get('warmup_s')} s warm-up, nireq={m.get('nireq')}, "
        f"floor chunk_size={m.get('floor_chunk_size', 65536)}",
        "",
        f"{'case':<34}{'target':<9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'body B':>10}{'resp B':>9}",
    ]
    last = ""
    for r in report.rows:
        title = r.title if r.title != last else ""
        last = r.title
        out.append(f"{title:<34}{r.target:<9}{r.result.rps:>10.1f}{r.result.p50_ms:>9.2f}"
                   f"{r.result.p99_ms:>9.2f}{r.result.errors:>8}{r.body_bytes:>10}"
                   f"{r.response_bytes:>9}")
    out += ["", f"{'decode of the large row body (1 thread)':<44}{'per s':>9}{'median ms':>11}"]
    for d in report.decode:
        per_s, median = (d.per_s, d.median_ms) if d.per_s > 0 else (None, None)
        line = f"  {d.name:<42}{_fmt(per_s, 1):>9}{_fmt(median):>11}"
        out.append(line + (f"   {d.note}" if d.note else ""))
    out += ["", f"{'ratio':<46}{'value':>8}{'target':>9}  status"]
    for q in report.ratios():
        target = f">= {q.target:g}" if q.target is not None else ""
        note = f"  ({q.note})" if q.note else ""
        out.append(f"  {q.name:<44}{_fmt(q.value):>8}{target:>9}  {q.status}{note}")
    out += ["", "Absolute req/s depend on the machine; the ratios are measured in this one run."]
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out)
