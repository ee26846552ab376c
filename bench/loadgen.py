"""Closed-loop HTTP load: C keep-alive connections POST one fixed body for D seconds.

Called by :mod:`run` through :func:`measure`. Uses ``wrk`` (``apt-get install wrk``) with a Lua
script that loads the body from a file and prints one parsable line from ``done()``::

    BENCH requests=41234 duration_us=8001234 p50_us=180 p99_us=620 errors=0

When ``wrk`` is not on ``PATH`` it falls back to this module's own generator, run as a separate
process (``python bench/loadgen.py URL BODY_FILE ...``: asyncio, raw sockets, HTTP/1.1
keep-alive) that prints the same line. The fallback costs more CPU than wrk, which matters on a
2-core machine: its figures are lower and the report says which generator ran.

A request counts as an error when the status is not 200 (or the socket fails); a case with
errors is reported, never silently averaged in.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

LUA = r"""
function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""

RESULT = re.compile(
    r"BENCH requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) errors=(\d+)"
)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "rps": round(self.rps, 1)}


def parse_result(text: str) -> LoadResult:
    m = RESULT.search(text)
    if m is None:
        raise RuntimeError(f"load generator printed no result line:\n{text[-2000:]}")
    req, dur, p50, p99, err = (int(g) for g in m.groups())
    return LoadResult(req, dur / 1e6, p50 / 1000, p99 / 1000, err)


def generator_name() -> str:
    return "wrk" if shutil.which("wrk") else "python-fallback"


def measure(url: str, body: bytes, headers: dict[str, str], connections: int,
            duration_s: float, warmup_s: float) -> LoadResult:
    """Warm up for ``warmup_s`` (discarded), then measure for ``duration_s``."""
    with tempfile.TemporaryDirectory(prefix="ovserve-bench-") as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)
        if warmup_s > 0:
            _run_once(url, body_file, script, headers, connections, warmup_s)
        return parse_result(_run_once(url, body_file, script, headers, connections, duration_s))


def _run_once(url: str, body_file: Path, script: Path, headers: dict[str, str],
              connections: int, duration_s: float) -> str:
    wrk = shutil.which("wrk")
    hdr = [a for k, v in headers.items() for a in ("-H", f"{k}: {v}")]
    if wrk:
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
               "--timeout", "10s", "--latency", "-s", str(script), *hdr, url, "--",
               str(body_file)]
    else:
        cmd = [sys.executable, __file__, url, str(body_file), "-c", str(connections),
               "-d", str(duration_s), *hdr]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


# --- Python fallback generator (runs in its own process) --------------------------------------


async def _connection(host: str, port: int, request: bytes, deadline: float,
                      latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = -1
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length < 0:
                raise RuntimeError("response without Content-Length")
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if status_line.split(b" ", 2)[1:2] != [b"200"]:
                errors.append(1)
    finally:
        writer.close()


async def _python_load(url: str, body: bytes, headers: list[str], connections: int,
                       duration_s: float) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}",
            f"Content-Length: {len(body)}", *headers]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    deadline = start + duration_s
    done = await asyncio.gather(
        *(_connection(host, port, request, deadline, latencies, errors)
          for _ in range(connections)), return_exceptions=True)
    elapsed = time.perf_counter() - start
    failed = sum(1 for d in done if isinstance(d, BaseException))
    latencies.sort()
    if not latencies:
        return LoadResult(0, elapsed, 0.0, 0.0, failed + len(errors))

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return LoadResult(len(latencies), elapsed, pct(0.50), pct(0.99), failed + len(errors))


def main() -> None:
    p = argparse.ArgumentParser(description="fallback load generator (when wrk is missing)")
    p.add_argument("url")
    p.add_argument("body_file", type=Path)
    p.add_argument("-c", "--connections", type=int, default=8)
    p.add_argument("-d", "--duration", type=float, default=8.0)
    p.add_argument("-H", "--header", action="append", default=[])
    args = p.parse_args()
    r = asyncio.run(_python_load(args.url, args.body_file.read_bytes(), args.header,
                                 args.connections, args.duration))
    print(f"BENCH requests={r.requests} duration_us={round(r.duration_s * 1e6)} "
          f"p50_us={round(r.p50_ms * 1000)} p99_us={round(r.p99_ms * 1000)} errors={r.errors}")


if __name__ == "__main__":
    main()
