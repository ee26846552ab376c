"""Profile ovserve under one benchmark case: ``py-spy record`` while ``wrk`` drives the server.

Run by hand when a target is missed (``make bench`` never calls it)::

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile.py --case small_col [--seconds 10] [--top 25]

Starts ovserve on the bench's models (:mod:`workload`, :mod:`procs`), warms it up, then samples
the server's Python stacks while the case's load runs (:mod:`loadgen`). Prints the functions
with the most samples, by self time and inclusive, and keeps the collapsed stacks in
``bench/results/profile-<case>.txt`` (feed them to any flame-graph tool).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import loadgen
import procs
import workload

RESULTS = Path(__file__).resolve().parent / "results"
_FRAME = re.compile(r"^(?P<name>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")


def frame_key(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: one entry per function."""
    m = _FRAME.match(frame)
    if m is None:
        return frame
    return f"{m['name']} ({m['path'].rsplit('/', 1)[-1]})"


def summarize(collapsed: str, top: int) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_key(f) for f in stack.split(";") if _FRAME.match(f)]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for key in set(frames):
            inclusive[key] += count
    if not total:
        return "no samples"
    out = [f"{total} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        out.append(f"\n{title:>9} %  function")
        out += [f"{100 * n / total:>11.1f}  {key}" for key, n in counter.most_common(top)]
    return "\n".join(out)


def main() -> int:
    cases = {c.name: c for c in workload.make_cases()}
    p = argparse.ArgumentParser(description="py-spy profile of ovserve under one bench case")
    p.add_argument("--case", choices=sorted(cases), default="small_col")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--nireq", type=int, default=4)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--server-bin", type=Path, default=procs.SERVER_BIN)
    p.add_argument("--native", action="store_true", help="include native (C) frames")
    p.add_argument("--plugin-config", type=json.loads, default=None, metavar="JSON",
                   help='plugin_config for both models, e.g. \'{"INFERENCE_NUM_THREADS": 1}\'')
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(procs.REPO / ".venv" / "bin" / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    case = cases[args.case]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{case.name}.txt"
    with tempfile.TemporaryDirectory(prefix="ovserve-profile-") as tmp_name:
        tmp = Path(tmp_name)
        config = workload.build_models(tmp / "models", args.nireq)
        if args.plugin_config is not None:
            doc = json.loads(config.read_text())
            for entry in doc["model_config_list"]:
                entry["config"]["plugin_config"] = args.plugin_config
            config.write_text(json.dumps(doc))
        server = procs.start_ovserve(config, tmp, server_bin=args.server_bin)
        try:
            url = server.base_url + case.path
            loadgen.measure(url, case.body, case.headers, args.connections, 2, 0)  # warm-up
            cmd = [spy, "record", "--pid", str(server.proc.pid), "--duration",
                   str(args.seconds), "--format", "raw", "--output", str(out),
                   ]
            # Sampling without pausing the server: pauses inflate the inline path's measured
            # costs, and the model may leave it (the log says so). py-spy can only unwind
            # native frames of a paused process, so --native pauses.
            cmd.append("--native" if args.native else "--nonblocking")
            result: list[loadgen.LoadResult] = []
            load = threading.Thread(target=lambda: result.append(loadgen.measure(
                url, case.body, case.headers, args.connections, args.seconds + 1, 0)))
            load.start()
            subprocess.run(cmd, check=True, capture_output=True)
            load.join()
        finally:
            server.stop()
    if result:
        print(f"{case.name}: {result[0].rps:.1f} req/s under py-spy (sampling slows the server)")
    print(summarize(out.read_text(), args.top))
    print(f"\ncollapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
