"""``make bench``: ovserve against its limit (in-process OpenVINO) and its floor (bare Tornado).

Run as ``.venv/bin/python bench/run.py [--quick]`` (``make bench BENCH_ARGS=--quick``). One run,
all on 127.0.0.1: builds the models (:mod:`workload`), times the large body's decode
(:mod:`decode`), measures the in-process limit (:mod:`limit`), starts ovserve and the floor as
child processes (:mod:`procs`, :mod:`floor`), drives both with the same load generator and the
same bodies (:mod:`loadgen`), prints the table and ratios (:mod:`report`) and writes
``bench/results/latest.json``. About 2.5 minutes by default, about 1 minute with ``--quick``.
Methodology and results: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import decode
import limit
import loadgen
import procs
import workload
from report import Report, Row, render

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="ovserve benchmark: limit, floor and ovserve")
    p.add_argument("--quick", action="store_true", help="3 s per case, 1 s warm-up (~1 min)")
    p.add_argument("--duration", type=float, default=None, help="seconds per case (default 8)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 2)")
    p.add_argument("--connections", type=int, default=8, help="concurrent connections/callers")
    p.add_argument("--rounds", type=int, default=3,
                   help="floor/ovserve alternations per case; the median round is reported")
    p.add_argument("--nireq", type=int, default=4, help="infer requests per model (all targets)")
    p.add_argument("--cases", default="", help="comma-separated subset of case names")
    p.add_argument("--no-server", action="store_true", help="limit and floor only")
    p.add_argument("--floor-chunk-size", type=int, default=65536,
                   help="the floor's Tornado chunk_size (default Tornado's own, 64 KiB; ovserve "
                        "reads bodies in 1 MiB pieces: pass 1048576 for a floor with that setting)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra ovserve-server flag (repeatable): --server-arg=--log_level=ERROR")
    p.add_argument("--server-bin", type=Path, default=procs.SERVER_BIN,
                   help="server executable taking OVMS's flags (default .venv/bin/ovserve-server)")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    return args


def median_round(results: list[loadgen.LoadResult]) -> loadgen.LoadResult:
    """The round with the median throughput (its latencies come with it)."""
    ranked = sorted(results, key=lambda r: r.rps)
    return ranked[len(ranked) // 2]


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "load_before": _load()}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def check_response(case: workload.Case, body: bytes) -> str | None:
    """Compare ovserve's answer with the locally computed one; a mismatch is a printed note."""
    expected = workload.expected_response(case)
    if case.name == "v2_binary":
        ok = len(body) >= 4096 and np.allclose(
            np.frombuffer(body[-4096:], "<f4"), np.frombuffer(expected[-4096:], "<f4"), atol=1e-5)
    else:
        def numbers(doc: object) -> list[float]:
            if isinstance(doc, dict):
                key = next((k for k in ("outputs", "predictions") if k in doc), None)
                if key is None:
                    return []
                doc = doc[key]
                if isinstance(doc, list) and doc and isinstance(doc[0], dict):
                    doc = [d.get("data") for d in doc]
            return np.asarray(doc, dtype=np.float64).ravel().tolist()
        try:
            ok = np.allclose(numbers(json.loads(body)), numbers(json.loads(expected)), atol=1e-5)
        except (ValueError, TypeError):
            ok = False
    return None if ok else f"{case.name}: ovserve's response differs from the expected values"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta: dict[str, object] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), **machine(),
        "generator": loadgen.generator_name(), "connections": args.connections,
        "duration_s": args.duration, "warmup_s": args.warmup, "nireq": args.nireq,
        "floor_chunk_size": args.floor_chunk_size,
        "rounds": args.rounds,
    }
    report = Report(meta)
    all_cases = workload.make_cases()
    cases = all_cases
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c.name in wanted]
    if meta["generator"] != "wrk":
        report.notes.append("wrk not found: the Python fallback generator ran (apt-get install "
                            "wrk for lower-overhead figures)")

    def log(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="ovserve-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config = workload.build_models(tmp / "models", args.nireq)
        large = next(c for c in all_cases if c.name == "large_row")
        log("decode baselines (large row body)")
        report.decode = decode.measure(large.body, 1.0 if args.quick else 2.0)

        inputs = {c.model: c.inputs for c in all_cases}
        for label, model, title in (("small", "add", "limit: OpenVINO in-process, add"),
                                    ("large", "pool", "limit: OpenVINO in-process, pool")):
            log(f"limit {label}")
            res = limit.measure(tmp / "models" / model / "1" / "model.xml", inputs[model],
                                args.nireq, args.connections, args.duration, args.warmup)
            report.rows.append(Row(label, title, "limit", res, 0, 0))

        server: procs.Target | None = None
        answers: dict[str, bytes] = {}
        if args.no_server:
            report.notes.append("--no-server: ovserve not measured")
        elif not procs.server_available(args.server_bin):
            report.notes.append(f"{args.server_bin} not found: ovserve not measured")
        else:
            log("starting ovserve")
            try:
                server = procs.start_ovserve(config, tmp, args.server_arg, args.server_bin)
            except (RuntimeError, TimeoutError) as exc:
                last = str(exc).strip().splitlines()[-1]
                report.notes.append(f"ovserve did not start, not measured: {last}")
        responses = tmp / "responses"
        responses.mkdir()
        try:
            for case in cases:
                body = workload.expected_response(case)
                if server is not None:
                    status, got = procs.request(server.port, "POST", case.path, case.body,
                                                case.headers)
                    if status == 200:
                        answers[case.name] = body = got
                        if (note := check_response(case, got)) is not None:
                            report.notes.append(note)
                    elif status == 404 and case.v2:
                        report.notes.append(f"{case.name}: {case.path} answers 404 (no KServe "
                                            "v2 route yet): skipped")
                        continue
                    else:
                        report.notes.append(f"{case.name}: ovserve answered {status}: "
                                            f"{got[:300]!r}; floor uses the expected response")
                (responses / f"{case.name}.bin").write_bytes(body)
            floor = procs.start_floor(responses, tmp, args.floor_chunk_size)
            bare = procs.start_floor(responses, tmp, args.floor_chunk_size, bare=True)
            try:
                for case in cases:
                    if not (responses / f"{case.name}.bin").exists():
                        continue
                    targets = [("floor", floor, case.floor_path), ("bare", bare, case.bare_path)]
                    if server is not None and case.name in answers:
                        targets.append(("ovserve", server, case.path))
                    # Floor and ovserve alternate in short rounds, so a slow spell of a noisy
                    # machine hits both; each target reports its median round.
                    rounds: dict[str, list[loadgen.LoadResult]] = {t: [] for t, _, _ in targets}
                    for i in range(max(1, args.rounds)):
                        for target, proc, path in targets:
                            log(f"{case.name} {target} round {i + 1}")
                            rounds[target].append(loadgen.measure(
                                proc.base_url + path, case.body, case.headers, args.connections,
                                args.duration / max(1, args.rounds), args.warmup if i == 0 else 0))
                    size = (responses / f"{case.name}.bin").stat().st_size
                    for target, results in rounds.items():
                        res = median_round(results)
                        report.rows.append(Row(case.name, case.title, target, res,
                                               len(case.body), size))
                        errors = sum(r.errors for r in results)
                        if errors:
                            report.notes.append(f"{case.name} {target}: {errors} errors")
            finally:
                floor.stop()
                bare.stop()
        finally:
            if server is not None:
                server.stop()
                for line in server.log_tail(1_000_000).splitlines():
                    if "using the infer request pool" in line:  # the inline path ended
                        report.notes.append("ovserve: " + line.split("] ", 1)[-1])

    meta["load_after"] = _load()
    report.write_json(args.output)
    print(render(report) + f"\n\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
