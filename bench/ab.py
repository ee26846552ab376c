"""A/B two ovserve builds under load: requests/s and the event-loop thread's CPU per request.

Run by hand when a change is too small for ``make bench`` to resolve (a few us a request)::

    git worktree add /tmp/before HEAD~1            # the build to compare against
    cp server/ovserve/server/codecs/_numjson*.so /tmp/before/server/ovserve/server/codecs/
    .venv/bin/python bench/ab.py --before /tmp/before --cases small_col,v2_json --rounds 8

The same build under two OpenVINO settings (no ``--before``)::

    .venv/bin/python bench/ab.py --after-plugin-config '{"ENABLE_CPU_PINNING": false}'

Starts the floor, ovserve from ``--before`` (its ``server`` and ``operator`` folders put first
on ``PYTHONPATH``) and ovserve from this checkout, checks that both answer every case with the
same bytes, then runs ``wrk`` against the three in turn, ``--rounds`` times, and prints the
median of the rounds. Besides requests/s it reads the server's main thread's CPU time from
``/proc`` before and after each run: the event loop is what saturates first, and its CPU per
request moves by a few percent for a change of a few us, where requests/s on a shared 2-core
machine moves by 10-15 % from run to run. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import loadgen
import procs
import workload

TICK = os.sysconf("SC_CLK_TCK")


def main_thread_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the process's main thread has used."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wrapper(tree: Path, folder: Path) -> Path:
    """An executable running ovserve-server from ``tree``'s sources."""
    script = folder / "ovserve-before"
    path = f"{tree / 'server'}:{tree / 'operator'}"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{path}" exec "{procs.SERVER_BIN}" "$@"\n')
    script.chmod(0o755)
    return script


def with_plugin_config(config: Path, folder: Path, plugin_config: object) -> Path:
    """``config`` itself, or a copy in ``folder`` whose models all get ``plugin_config``
    (base paths made absolute)."""
    if plugin_config is None:
        return config
    doc = json.loads(config.read_text())
    for entry in doc["model_config_list"]:
        entry["config"]["base_path"] = str(config.parent / entry["config"]["base_path"])
        entry["config"]["plugin_config"] = plugin_config
    path = folder / "config.json"
    path.write_text(json.dumps(doc))
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--before", type=Path, default=None,
                   help="a checkout of the other build (default: this one, to compare configs)")
    for side in ("before", "after"):
        p.add_argument(f"--{side}-plugin-config", type=json.loads, default=None, metavar="JSON",
                       help=f"plugin_config of every model for the {side} build, e.g. "
                            "'{\"ENABLE_CPU_PINNING\": false}'")
    p.add_argument("--cases", default="small_col,small_row,v2_json")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="per run")
    p.add_argument("--connections", type=int, default=8)
    args = p.parse_args()
    cases = {c.name: c for c in workload.make_cases()}
    names = args.cases.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="ovserve-ab-"))
    config = workload.build_models(tmp / "models", 4)
    for sub in ("before", "after", "floor", "responses"):
        (tmp / sub).mkdir()
    configs = {side: with_plugin_config(config, tmp / side, getattr(args, f"{side}_plugin_config"))
               for side in ("before", "after")}
    before_bin = procs.SERVER_BIN if args.before is None else wrapper(args.before, tmp)
    before = procs.start_ovserve(configs["before"], tmp / "before", server_bin=before_bin)
    after = procs.start_ovserve(configs["after"], tmp / "after")
    targets = [("before", before), ("after", after)]
    floor = None
    try:
        for name in names:
            case = cases[name]
            answers = {procs.request(t.port, "POST", case.path, case.body, case.headers)
                       for _, t in targets}
            if len(answers) != 1 or next(iter(answers))[0] != 200:
                print(f"{name}: the builds answer differently: {answers}", file=sys.stderr)
                return 1
            (tmp / "responses" / f"{name}.bin").write_bytes(next(iter(answers))[1])
        floor = procs.start_floor(tmp / "responses", tmp / "floor")
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for i in range(args.rounds):
            for name in names:
                case = cases[name]
                runs = [("floor", floor, case.floor_path)] + [(label, t, case.path)
                                                             for label, t in targets]
                for label, target, path in runs:
                    start = main_thread_cpu(target.proc.pid)
                    load = loadgen.measure(target.base_url + path, case.body, case.headers,
                                           args.connections, args.seconds, 0.5 if i == 0 else 0)
                    cpu_us = (main_thread_cpu(target.proc.pid) - start) / max(1, load.requests) * 1e6
                    results.setdefault((name, label), []).append((load.rps, cpu_us))
        print(f"{'case':<11}{'target':<8}{'req/s':>8}{'/ floor':>9}{'main CPU us/req':>17}")
        for name in names:
            floor_rps = statistics.median(r for r, _ in results[(name, "floor")])
            for label in ("floor", "before", "after"):
                runs = results[(name, label)]
                rps = statistics.median(r for r, _ in runs)
                cpu_us = statistics.median(c for _, c in runs)
                print(f"{name:<11}{label:<8}{rps:8.0f}{rps / floor_rps:9.2f}{cpu_us:17.0f}")
        for label, target in targets:
            for line in target.log_tail(1_000_000).splitlines():
                if "using the infer request pool" in line:  # the inline path ended
                    print(f"{label}: {line.split('] ', 1)[-1]}")
    finally:
        for t in (before, after, floor):
            if t is not None:
                t.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
