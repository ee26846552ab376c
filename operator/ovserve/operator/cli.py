"""``ovserve-operator``: parse the command line and start the kopf operator.

The console script (``pyproject.toml``: ``ovserve.operator.cli:main``) and the operator image
land here. Examples::

    ovserve-operator --namespace ml                      # watch one namespace
    ovserve-operator --namespace ml --namespace staging  # several
    ovserve-operator --all-namespaces --liveness-port 8080 --log-level DEBUG
    ovserve-operator -n ml --log-format json --metrics-port 8081   # JSON logs, /metrics
    WATCH_NAMESPACE=ml,staging ovserve-operator          # the Helm chart's way

The operator runs standalone (no kopf peering): run one replica. Credentials come from the
in-cluster service account, else from ``$KUBECONFIG``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .reconcile import Settings

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings()
    p = argparse.ArgumentParser(
        prog="ovserve-operator",
        description="Kubernetes operator for ovserve InferenceServer and InferenceModel resources.",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="namespace to watch (repeatable; default: $WATCH_NAMESPACE, "
                            "comma-separated)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace (needs a ClusterRole)")
    p.add_argument("--liveness-port", type=int, default=8080,
                   help="serve GET /healthz on this port for the liveness probe (0 = off; "
                        "default 8080)")
    p.add_argument("--liveness-host", default="0.0.0.0", help="bind address of /healthz")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO").upper(),
                   choices=LOG_LEVELS, help="default INFO (or $LOG_LEVEL)")
    p.add_argument("--log-format", default=os.environ.get("LOG_FORMAT", "text").lower(),
                   choices=LOG_FORMATS, help="text, or json: one JSON object per line (kopf's "
                   "JSON logs; default text, or $LOG_FORMAT)")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve the operator's Prometheus metrics on GET /metrics at this port "
                        "(0 = off; default 0)")
    p.add_argument("--metrics-host", default="0.0.0.0", help="bind address of /metrics")
    p.add_argument("--reload-timeout", type=float, default=defaults.reload_timeout,
                   metavar="S", help="give up waiting for pods to load a new config after S "
                   f"seconds and say so in status (default {defaults.reload_timeout:.0f})")
    p.add_argument("--retry-delay", type=float, default=defaults.retry_delay, metavar="S",
                   help=f"first retry delay, doubling per retry (default {defaults.retry_delay})")
    p.add_argument("--max-retry-delay", type=float, default=defaults.max_retry_delay,
                   metavar="S", help=f"longest retry delay (default {defaults.max_retry_delay})")
    p.add_argument("--http-timeout", type=float, default=defaults.http_timeout, metavar="S",
                   help="timeout of one call to a server pod; a reload waits for model loads "
                        f"(default {defaults.http_timeout:.0f})")
    p.add_argument("--connect-timeout", type=float, default=defaults.connect_timeout,
                   metavar="S", help="limit on opening a connection to a server pod; a pod "
                   "that does not answer in time (e.g. a NetworkPolicy drops the operator's "
                   f"traffic) is reported in status (default {defaults.connect_timeout:.0f})")
    p.add_argument("--status-interval", type=float, default=defaults.status_interval,
                   metavar="S", help="how often every InferenceServer is re-checked "
                   f"(default {defaults.status_interval:.0f})")
    p.add_argument("--server-image", default=os.environ.get("OVSERVE_SERVER_IMAGE")
                   or defaults.server_image, metavar="IMAGE",
                   help="ovserve-server image of InferenceServers that set no spec.image "
                        f"(default $OVSERVE_SERVER_IMAGE or {defaults.server_image})")
    p.add_argument("--no-events", action="store_true",
                   help="do not post Kubernetes Events (for API stand-ins in tests)")
    return p


def parse_options(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Parse flags; returns them and the namespaces to watch (empty with --all-namespaces)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    namespaces = [n for item in args.namespace for n in item.split(",") if n.strip()]
    if not namespaces and not args.all_namespaces:
        namespaces = [n.strip() for n in os.environ.get("WATCH_NAMESPACE", "").split(",")
                      if n.strip()]
    if not namespaces and not args.all_namespaces:
        parser.error("give --namespace NS (or $WATCH_NAMESPACE) or --all-namespaces")
    for name, value in (("--reload-timeout", args.reload_timeout),
                        ("--retry-delay", args.retry_delay),
                        ("--max-retry-delay", args.max_retry_delay),
                        ("--http-timeout", args.http_timeout),
                        ("--connect-timeout", args.connect_timeout),
                        ("--status-interval", args.status_interval)):
        if value <= 0:
            parser.error(f"{name} must be positive")
    if args.log_level not in LOG_LEVELS:  # argparse does not check a default: $LOG_LEVEL
        parser.error(f"$LOG_LEVEL: {args.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if not 0 <= args.liveness_port <= 65535:
        parser.error("--liveness-port must be 0..65535")
    if not 0 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be 0..65535")
    if args.log_format not in LOG_FORMATS:  # $LOG_FORMAT is not checked by argparse
        parser.error(f"$LOG_FORMAT: {args.log_format!r} is not one of "
                     f"{', '.join(LOG_FORMATS)}")
    return args, [n.strip() for n in namespaces]


def main(argv: Sequence[str] | None = None) -> int:
    args, namespaces = parse_options(argv)
    from .handlers import RunOptions, run

    options = RunOptions(
        namespaces=tuple(namespaces),
        all_namespaces=args.all_namespaces,
        liveness_endpoint=(f"http://{args.liveness_host}:{args.liveness_port}/healthz"
                           if args.liveness_port else None),
        events=not args.no_events,
        log_level=args.log_level,
        log_format=args.log_format,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        settings=Settings(
            reload_timeout=args.reload_timeout,
            retry_delay=args.retry_delay,
            max_retry_delay=args.max_retry_delay,
            http_timeout=args.http_timeout,
            connect_timeout=args.connect_timeout,
            status_interval=args.status_interval,
            server_image=args.server_image,
        ),
    )
    run(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
