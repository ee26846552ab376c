"""Composition root: OVMS-named flags -> settings -> manager, metrics, app -> listen.

``ovserve-server`` and ``python -m ovserve.server`` both land in :func:`main`. Flags follow
OVMS's names and rules (``docs/reference/flags.md``); flags OVMS has but ovserve does not need
(gRPC, worker counts) are accepted and logged so existing command lines keep working.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import __version__
from .config import (
    DEFAULT_METRICS,
    OPTIONAL_METRICS,
    ConfigError,
    ModelConfig,
    parse_config,
)

log = logging.getLogger("ovserve.server")

EX_USAGE = 2
# Bound of --drain_seconds; in-flight requests then get up to INFLIGHT_TIMEOUT more.
MAX_DRAIN_SECONDS = 600
INFLIGHT_TIMEOUT = 30.0
DEMO_MODEL_NAME = "demo"


class UsageError(Exception):
    """A command line OVMS would refuse; the message is OVMS's where OVMS has one."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ovserve-server",
        description="OpenVINO model server with OVMS-compatible REST APIs "
        "(TF-Serving v1, KServe v2, MindSpore-style).",
    )
    add = p.add_argument
    add("--version", action="version", version=f"ovserve-server {__version__}")
    g = p.add_argument_group("server")
    g.add_argument("--rest_port", type=int, default=0, help="REST port (0 = off)")
    g.add_argument("--rest_bind_address", default="0.0.0.0", help="REST bind address")
    g.add_argument("--port", type=int, default=0, help="gRPC port: accepted for OVMS compatibility; "
                   "ovserve has no gRPC API and ignores it")
    g.add_argument("--grpc_bind_address", default="0.0.0.0", help=argparse.SUPPRESS)
    g.add_argument("--grpc_workers", type=int, default=1, help=argparse.SUPPRESS)
    g.add_argument("--rest_workers", type=int, default=None,
                   help="accepted for OVMS compatibility; ovserve serves REST on one event loop")
    g.add_argument("--log_level", default="INFO",
                   choices=["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"])
    g.add_argument("--log_path", default=None, help="log to this file instead of stderr")
    g.add_argument("--log_format", default="text", choices=["text", "json"],
                   help="text (OVMS-like lines) or json (one JSON object per line, for log "
                        "collectors)")
    g.add_argument("--drain_seconds", type=float, default=0.0,
                   help="on SIGTERM, answer /v2/health/ready with 503 at once but keep serving "
                        f"for this many seconds (0..{MAX_DRAIN_SECONDS}) so load balancers "
                        "route away, then finish in-flight requests and exit (default 0)")
    g.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                   help="config and version folder watch period; 0 disables watching")
    g.add_argument("--cache_dir", default=None, help="OpenVINO model compile cache folder")
    g.add_argument("--metrics_enable", action="store_true", help="serve /metrics")
    g.add_argument("--metrics_list", default=None,
                   help="comma-separated metric names to expose (default: OVMS's default list)")
    g.add_argument("--max_request_mb", type=int, default=100,
                   help="largest request body accepted, in MiB (default 100)")
    g.add_argument("--allowed_origins", default="*", help="CORS Access-Control-Allow-Origin")
    g.add_argument("--allowed_methods", default="*", help="CORS Access-Control-Allow-Methods")
    g.add_argument("--allowed_headers", default="*", help="CORS Access-Control-Allow-Headers")
    g.add_argument("--allow_credentials", action="store_true",
                   help="CORS Access-Control-Allow-Credentials: true")
    g.add_argument("--ssl_certificate", default=None, help="PEM certificate: serve REST over TLS")
    g.add_argument("--ssl_private_key", default=None, help="PEM private key for --ssl_certificate")
    g.add_argument("--ssl_ca_certificate", default=None,
                   help="PEM CA bundle: require and verify client certificates (mutual TLS)")
    g.add_argument("--storage_cache_dir", default=None,
                   help="where versions of s3://, gs://, az://, azfs:// models are downloaded before they "
                   "load (default: a temporary folder removed at exit)")
    g.add_argument("--storage_cache_max_mb", type=int, default=20480,
                   help="bound on the downloaded versions held at once, in MiB (default 20480)")
    g.add_argument("--storage_timeout_seconds", type=float, default=30.0,
                   help="connect/read timeout of each cloud storage call (default 30)")
    g.add_argument("--demo", action="store_true",
                   help=f"serve a built-in demo model named {DEMO_MODEL_NAME!r} (built on first start)")
    g.add_argument("--demo_path", default=os.path.join(".demo-models", DEMO_MODEL_NAME),
                   help="where --demo builds its model")
    m = p.add_argument_group("model (single-model mode; exclusive with --config_path)")
    m.add_argument("--config_path", default=None, help="OVMS config.json")
    m.add_argument("--model_name", default=None)
    m.add_argument("--model_path", default=None)
    m.add_argument("--batch_size", default=None)
    m.add_argument("--shape", default=None)
    m.add_argument("--layout", default=None)
    m.add_argument("--model_version_policy", default=None, help='e.g. {"latest": {"num_versions": 2}}')
    m.add_argument("--nireq", type=int, default=None)
    m.add_argument("--target_device", default=None)
    m.add_argument("--plugin_config", default=None, help='e.g. {"PERFORMANCE_HINT": "LATENCY"}')
    return p


@dataclass
class Settings:
    args: argparse.Namespace
    single_model: ModelConfig | None
    metrics_names: tuple[str, ...] | None
    tls: ssl.SSLContext | None = None


_MODEL_FLAGS = ("batch_size", "shape", "layout", "model_version_policy", "nireq",
                "target_device", "plugin_config")


def _json_flag(name: str, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--{name}: not valid JSON: {exc.msg}") from None


def single_model_entry(args: argparse.Namespace) -> dict[str, object]:
    """The config.json entry equivalent to the single-model flags."""
    entry: dict[str, object] = {"name": args.model_name, "base_path": args.model_path}
    if args.batch_size is not None:
        entry["batch_size"] = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    if args.shape is not None:
        entry["shape"] = _json_flag("shape", args.shape) if args.shape.startswith("{") else args.shape
    if args.layout is not None:
        entry["layout"] = _json_flag("layout", args.layout) if args.layout.startswith("{") else args.layout
    if args.model_version_policy is not None:
        entry["model_version_policy"] = _json_flag("model_version_policy", args.model_version_policy)
    if args.nireq is not None:
        entry["nireq"] = args.nireq
    if args.target_device is not None:
        entry["target_device"] = args.target_device
    if args.plugin_config is not None:
        entry["plugin_config"] = _json_flag("plugin_config", args.plugin_config)
    return entry


def validate(args: argparse.Namespace) -> Settings:
    """Apply OVMS's command-line rules; raise UsageError with OVMS's messages."""
    if args.demo:
        if args.config_path or args.model_path or args.model_name:
            raise UsageError("--demo is exclusive with --config_path, --model_name and --model_path")
        args.model_name = DEMO_MODEL_NAME
        args.model_path = os.path.abspath(args.demo_path)
    if not args.rest_port and not args.port:
        raise UsageError("port and rest_port cannot both be unset")
    if args.rest_port and args.rest_port == args.port:
        raise UsageError("port and rest_port cannot have the same values")
    if not args.rest_port:
        raise UsageError("rest_port is required: ovserve serves only REST (gRPC port given alone)")
    if not 0 < args.rest_port < 65536:
        raise UsageError(f"rest_port must be in 1..65535, got {args.rest_port}")
    if args.rest_workers is not None and not 2 <= args.rest_workers <= 10000:
        raise UsageError("rest_workers count should be from 2 to 10000")
    if args.file_system_poll_wait_seconds < 0:
        raise UsageError("file_system_poll_wait_seconds must be >= 0")
    if not 0 <= args.drain_seconds <= MAX_DRAIN_SECONDS:
        raise UsageError(f"drain_seconds must be from 0 to {MAX_DRAIN_SECONDS}")
    if not 1 <= args.max_request_mb <= 4096:
        raise UsageError("max_request_mb must be from 1 to 4096")
    if args.storage_cache_max_mb < 1:
        raise UsageError("storage_cache_max_mb must be >= 1")
    if not 0 < args.storage_timeout_seconds <= 3600:
        raise UsageError("storage_timeout_seconds must be > 0 and <= 3600")
    model_flags = [f for f in _MODEL_FLAGS if getattr(args, f) is not None]
    single: ModelConfig | None = None
    if args.config_path:
        if args.model_name or args.model_path or model_flags:
            raise UsageError("Model parameters in CLI are exclusive with the config file")
    elif args.model_name or args.model_path:
        if not (args.model_name and args.model_path):
            raise UsageError("Use either config_path or model_path with model_name")
        doc = json.dumps({"model_config_list": [{"config": single_model_entry(args)}]})
        try:
            (single,) = parse_config(doc.encode(), base_dir=os.getcwd()).models
        except ConfigError as exc:
            raise UsageError(str(exc).replace("model_config_list[0].config.", "--")) from None
    else:
        raise UsageError("Use either config_path or model_path with model_name")
    if args.metrics_list and not args.metrics_enable:
        raise UsageError("metrics_list requires metrics_enable")
    names: tuple[str, ...] | None = None
    if args.metrics_list:
        names = tuple(n.strip() for n in args.metrics_list.split(","))
        if not all(names):
            raise UsageError(f"metrics_list: empty metric name in {args.metrics_list!r}")
        known = set(DEFAULT_METRICS) | set(OPTIONAL_METRICS)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"metrics_list: unknown metric(s) {', '.join(unknown)}")
    if bool(args.ssl_certificate) != bool(args.ssl_private_key):
        raise UsageError("--ssl_certificate and --ssl_private_key must be given together")
    if args.ssl_ca_certificate and not args.ssl_certificate:
        raise UsageError("--ssl_ca_certificate requires --ssl_certificate and --ssl_private_key")
    try:
        tls = ssl_context(args)
    except (OSError, ssl.SSLError) as exc:  # missing file, bad PEM, key not matching the cert
        raise UsageError(f"cannot use the TLS files: {exc}") from None
    return Settings(args=args, single_model=single, metrics_names=names, tls=tls)


class JsonFormatter(logging.Formatter):
    """``--log_format json``: one JSON object per line (time in RFC 3339 UTC, level, logger,
    pid, message, and the traceback as ``exception`` when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


def setup_logging(level: str, path: str | None, fmt: str = "text") -> None:
    numeric = logging.DEBUG if level in ("TRACE", "DEBUG") else getattr(logging, level)
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else
        logging.Formatter("[%(asctime)s][%(process)d][%(name)s][%(levelname)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("tornado.access").setLevel(max(numeric, logging.WARNING))


def ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.ssl_certificate:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.ssl_certificate, args.ssl_private_key)
    if args.ssl_ca_certificate:
        ctx.load_verify_locations(args.ssl_ca_certificate)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def serve(settings: Settings) -> int:
    """Start everything, serve until SIGTERM/SIGINT, then drain and stop. Returns the exit code."""
    # Imported here so `--help` and usage errors stay fast and need no OpenVINO.
    from prometheus_client import CollectorRegistry

    from .backend.openvino import OpenVINOBackend
    from .http.app import make_app
    from .http.base import Cors, Deps
    from .http.server import HTTPServer
    from .manager import ConfigFileError, ModelManager
    from .metrics import ServerMetrics
    from .storage.cache import ModelCache, RemoteStorage

    args = settings.args
    if args.demo:
        from .backend.demo import ensure_demo_model

        await asyncio.get_running_loop().run_in_executor(None, ensure_demo_model, args.model_path)
    manager = ModelManager(
        OpenVINOBackend(cache_dir=args.cache_dir),
        config_path=os.path.abspath(args.config_path) if args.config_path else None,
        single_model=settings.single_model,
        poll_wait_seconds=args.file_system_poll_wait_seconds,
        storage=RemoteStorage(ModelCache(args.storage_cache_dir,
                                         args.storage_cache_max_mb * 1024 * 1024),
                              timeout=args.storage_timeout_seconds),
    )
    registry = CollectorRegistry() if args.metrics_enable else None
    metrics = ServerMetrics(registry, settings.metrics_names) if registry is not None else None
    cors = Cors(args.allowed_origins, args.allowed_methods, args.allowed_headers,
                args.allow_credentials)
    codec_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="codec")
    deps = Deps(
        manager=manager,
        metrics=metrics,
        registry=registry,
        max_body_bytes=args.max_request_mb * 1024 * 1024,
        cors=cors,
        codec_executor=codec_pool,
        server_version=__version__,
    )
    server = HTTPServer(make_app(deps), ssl_context=settings.tls,
                        max_body_size=deps.max_body_bytes, idle_timeout=3600)
    try:
        await server.listen(args.rest_port, args.rest_bind_address)
    except OSError as exc:
        log.error("Cannot listen on %s:%d: %s", args.rest_bind_address, args.rest_port, exc)
        codec_pool.shutdown(wait=False)
        return 1
    scheme = "https" if args.ssl_certificate else "http"
    log.info("REST server listening on %s://%s:%d", scheme, args.rest_bind_address, args.rest_port)
    if args.port:
        log.warning("--port %d (gRPC) ignored: ovserve serves REST only", args.port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await manager.start()
    except (ConfigError, ConfigFileError) as exc:
        # Only a document that is not valid JSON or fails the schema (or no file) stops the
        # start; an entry that fails (missing path, storage, load) fails alone, in its status.
        log.error("Cannot start: %s", exc)
        await manager.stop()
        server.stop()
        codec_pool.shutdown(wait=False)
        return 1
    section = manager.config.metrics
    if metrics is None and section is not None and section.enable:
        # The config file's monitoring section enables metrics as --metrics_enable does.
        registry = CollectorRegistry()
        metrics = ServerMetrics(registry, section.metrics_list)
        deps.metrics, deps.registry = metrics, registry
    if metrics is not None:
        metrics.bind(manager)
    if args.demo:
        host = "127.0.0.1" if args.rest_bind_address in ("0.0.0.0", "::") else args.rest_bind_address
        print(demo_banner(scheme, host, args.rest_port), flush=True)
    await stop.wait()
    if args.drain_seconds > 0:
        # Not ready at once, still serving: endpoints and kube-proxy route away meanwhile.
        # A second SIGTERM/SIGINT ends the wait early.
        deps.draining = True
        stop.clear()
        log.info("Draining: /v2/health/ready answers 503; still serving for %g s",
                 args.drain_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=args.drain_seconds)
    log.info("Shutting down: no new connections; finishing in-flight requests")
    server.stop()
    if not await deps.inflight.drain(timeout=INFLIGHT_TIMEOUT):
        log.warning("Requests still in flight after %g s; stopping anyway", INFLIGHT_TIMEOUT)
    await manager.stop()
    await server.close_all_connections()
    codec_pool.shutdown(wait=True)
    log.info("Shutdown complete")
    return 0


def demo_banner(scheme: str, host: str, port: int) -> str:
    base = f"{scheme}://{host}:{port}"
    return (
        f"\novserve is serving the demo model {DEMO_MODEL_NAME!r} on {base}\n"
        f"  curl {base}/v1/models/{DEMO_MODEL_NAME}\n"
        f"  curl -X POST {base}/v1/models/{DEMO_MODEL_NAME}:predict "
        "-d '{\"inputs\": {\"a\": [[1, 2, 3, 4]], \"b\": [[10, 20, 30, 40]]}}'\n"
        f"  curl -X POST {base}/v2/models/{DEMO_MODEL_NAME}/infer -d "
        "'{\"inputs\": [{\"name\": \"a\", \"shape\": [1, 4], \"datatype\": \"FP32\", "
        "\"data\": [1, 2, 3, 4]}, {\"name\": \"b\", \"shape\": [1, 4], \"datatype\": \"FP32\", "
        "\"data\": [10, 20, 30, 40]}]}'\n"
        f"  curl -X POST {base}/model/{DEMO_MODEL_NAME}:predict -d "
        "'{\"instances\": [{\"a\": [1.0, 2.0, 3.0, 4.0], \"b\": [10.0, 20.0, 30.0, 40.0]}]}'\n"
        "Stop with Ctrl+C.\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_path, args.log_format)
    try:
        settings = validate(args)
    except UsageError as exc:
        print(f"ovserve-server: error: {exc}", file=sys.stderr)
        return EX_USAGE
    return asyncio.run(serve(settings))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
