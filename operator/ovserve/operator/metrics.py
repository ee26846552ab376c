"""The operator's own Prometheus metrics (``--metrics-port``), on an injected registry.

Series (all prefixed ``ovserve_operator_``):

* ``reconciles_total{result}``: passes by result — ``converged`` (every ready pod applied the
  config, nothing loading), ``retry`` (pods still loading or stale; retried on a timer),
  ``waiting`` (nothing to call yet, e.g. no ready pod), ``gave_up`` (``--reload-timeout``
  passed), ``invalid`` (the InferenceServer spec is refused), ``error`` (the pass raised, e.g.
  the API server was unreachable);
* ``reconcile_duration_seconds``: a histogram of pass durations (a pass includes the reload
  calls, which wait for model loads);
* ``handshake_timeouts_total``: passes that gave up waiting for pods (the ``gave_up`` result);
* ``pods_unreachable_total``: ready pods that gave no HTTP answer to the handshake (a
  NetworkPolicy that blocks the operator shows here and in the status message).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from .reconcile import Outcome

RESULTS = ("converged", "retry", "waiting", "gave_up", "invalid", "error")
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class OperatorMetrics:
    """The series above; :meth:`observe_pass` is called by the scheduler after every pass."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter("ovserve_operator_reconciles", "Reconcile passes by result",
                                  ["result"], registry=self.registry)
        for result in RESULTS:
            self.reconciles.labels(result)
        self.duration = Histogram("ovserve_operator_reconcile_duration_seconds",
                                  "Duration of one reconcile pass of an InferenceServer",
                                  buckets=BUCKETS, registry=self.registry)
        self.timeouts = Counter("ovserve_operator_handshake_timeouts",
                                "Passes that gave up waiting for pods to load a config "
                                "(--reload-timeout)", registry=self.registry)
        self.unreachable = Counter("ovserve_operator_pods_unreachable",
                                   "Ready server pods that gave no HTTP answer to the handshake",
                                   registry=self.registry)

    def observe_pass(self, result: str, seconds: float, outcome: Outcome | None) -> None:
        self.reconciles.labels(result).inc()
        self.duration.observe(seconds)
        if result == "gave_up":
            self.timeouts.inc()
        if outcome is not None and outcome.unreachable:
            self.unreachable.inc(outcome.unreachable)

    def serve(self, port: int, host: str) -> None:
        """Serve ``GET /metrics`` on ``host:port`` from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
