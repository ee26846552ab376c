"""The reload handshake: make every ready pod load the expected config, and prove it by hash.

:mod:`ovserve.operator.reconcile` calls :func:`handshake` after it wrote the ConfigMap, and
:func:`next_step` to decide between done, retry later and give up. The HTTP calls go through
the small :class:`PodClient` protocol (:class:`HttpPodClient` in production, a fake in unit
tests). Nothing here sleeps: "not yet" is a :class:`Retry` that the kopf handler turns into
``kopf.TemporaryError(delay=…)``.

Per ready pod (a mounted ConfigMap reaches a pod only after the kubelet's sync, often 60-90 s):

1. ``GET /v1/config``: if the ``X-Ovserve-Config-Hash`` header already equals the hash of the
   rendered config (the server polled the file, or the pod started with it), read the statuses
   from the body and stop;
2. otherwise ``POST /v1/config/reload`` (200 or 201, or 4xx/5xx with ``{"error": …}`` when the
   file on disk is invalid) and compare the header again;
3. still the old hash: the pod is *stale*; the caller nudges it (an annotation on the pod makes
   the kubelet resync its volumes sooner) and retries, and gives up after a bounded time.

The body both calls return (OVMS's)::

    {"resnet": {"model_version_status": [
        {"version": "1", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": "OK"}}]}}

A failed load is ``"state": "LOADING"`` with ``"error_code": "UNKNOWN"`` and the real error in
``error_message``. A model listed with no version at all (its base path is missing, or its
``storageUri`` cannot be read: wrong credentials, unreachable storage) has its reason only in
``GET /v1/models/<name>`` (404 ``{"error": …}``): the handshake asks for it, for at most
:data:`MAX_ERROR_LOOKUPS` such models per pod, and reports it in ``PodReport.model_errors``.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

HASH_HEADER = "X-Ovserve-Config-Hash"
MAX_ERROR_LOOKUPS = 16  # models without versions whose reason one handshake asks a pod for
TRANSITIONAL_STATES = frozenset({"START", "LOADING", "UNLOADING"})


@dataclass(frozen=True)
class PodTarget:
    """A ready pod to talk to: its name (for status and nudges) and REST base URL."""

    name: str
    url: str  # e.g. "http://10.1.2.3:8081"
    nudged_hash: str | None = None  # the config hash the pod was last nudged for
    nudged_at: float | None = None  # when (epoch seconds) it was first nudged for that hash


@dataclass(frozen=True)
class VersionReport:
    version: int
    state: str
    error_code: str = "OK"
    error_message: str = "OK"

    @property
    def failed(self) -> bool:
        return self.error_code not in ("OK", "") and self.state != "AVAILABLE"

    @property
    def settling(self) -> bool:
        return self.state in TRANSITIONAL_STATES and not self.failed


@dataclass(frozen=True)
class PodReply:
    """One HTTP exchange with a pod. ``status`` 0 means no HTTP answer (``error`` says why)."""

    status: int
    config_hash: str | None = None
    body: Any = None
    error: str | None = None


@dataclass(frozen=True)
class PodReport:
    """What the handshake learned about one pod."""

    name: str
    config_hash: str | None  # what the pod reports it has applied
    applied: bool  # config_hash == the expected hash
    models: dict[str, tuple[VersionReport, ...]] = field(default_factory=dict)
    error: str | None = None  # unreachable, or the reload's error text
    reloaded: bool = False  # a POST /v1/config/reload was sent
    url: str = ""  # the pod's REST base URL, for messages about a pod it could not reach
    # model name -> why the pod serves no version of it (GET /v1/models/<name>'s error)
    model_errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HandshakeResult:
    expected: str
    pods: tuple[PodReport, ...]

    @property
    def stale(self) -> tuple[PodReport, ...]:
        return tuple(p for p in self.pods if not p.applied)

    @property
    def applied(self) -> tuple[PodReport, ...]:
        return tuple(p for p in self.pods if p.applied)

    @property
    def settling(self) -> bool:
        """Some applied pod still has a version starting, loading or unloading (not failed)."""
        return any(v.settling for p in self.applied for vs in p.models.values() for v in vs)


class PodClient(Protocol):
    """The two calls the handshake makes; each returns a reply, never raises."""

    def get_config(self, url: str) -> PodReply: ...

    def reload(self, url: str) -> PodReply: ...

    def model_status(self, url: str, name: str) -> PodReply: ...


def parse_statuses(body: Any) -> dict[str, tuple[VersionReport, ...]]:
    """Parse OVMS's ``/v1/config`` body; unknown shapes give an empty mapping."""
    out: dict[str, tuple[VersionReport, ...]] = {}
    if not isinstance(body, Mapping):
        return out
    for name, entry in body.items():
        if not isinstance(entry, Mapping):
            continue
        versions: list[VersionReport] = []
        for item in entry.get("model_version_status") or []:
            if not isinstance(item, Mapping):
                continue
            raw = item.get("status")
            status: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
            try:
                number = int(item.get("version", 0))
            except (TypeError, ValueError):
                continue
            versions.append(VersionReport(
                version=number,
                state=str(item.get("state", "UNKNOWN")),
                error_code=str(status.get("error_code", "OK")),
                error_message=str(status.get("error_message", "")),
            ))
        out[str(name)] = tuple(sorted(versions, key=lambda v: v.version))
    return out


def _error_text(reply: PodReply) -> str:
    if reply.error:
        return reply.error
    if isinstance(reply.body, Mapping) and "error" in reply.body:
        return f"HTTP {reply.status}: {reply.body['error']}"
    return f"HTTP {reply.status}"


def model_errors(pod: PodTarget, models: Mapping[str, Sequence[VersionReport]],
                 client: PodClient) -> dict[str, str]:
    """Why the pod serves no version of the models it lists without any (bounded lookups)."""
    out: dict[str, str] = {}
    for name in sorted(n for n, versions in models.items() if not versions)[:MAX_ERROR_LOOKUPS]:
        reply = client.model_status(pod.url, name)
        if reply.status == 404 and isinstance(reply.body, Mapping) and reply.body.get("error"):
            out[name] = str(reply.body["error"])
    return out


def check_pod(pod: PodTarget, expected: str, client: PodClient) -> PodReport:
    """GET the pod's config; POST a reload only when it does not report ``expected`` yet.

    A pod that gives no HTTP answer to the GET is not sent a reload (it would only wait for the
    same timeout again): its report carries the error and its URL.
    """
    reply = client.get_config(pod.url)
    if reply.status == 200 and reply.config_hash == expected:
        models = parse_statuses(reply.body)
        return PodReport(pod.name, reply.config_hash, True, models,
                         model_errors=model_errors(pod, models, client), url=pod.url)
    if reply.status == 0:
        return PodReport(pod.name, None, False, {}, _error_text(reply), url=pod.url)
    reply = client.reload(pod.url)
    if reply.status == 400 and reply.config_hash == expected:
        # A config applied with some entries failing (OVMS answers 400): read the statuses.
        reply = client.get_config(pod.url)
    applied = reply.status in (200, 201) and reply.config_hash == expected
    models = parse_statuses(reply.body) if reply.status in (200, 201) else {}
    error = None if reply.status in (200, 201) else _error_text(reply)
    errors = model_errors(pod, models, client) if applied else {}
    return PodReport(pod.name, reply.config_hash, applied, models, error, reloaded=True,
                     model_errors=errors, url=pod.url)


def read_pod(pod: PodTarget, client: PodClient) -> PodReport:
    """Only ``GET /v1/config`` (no reload): what a pod serves now, whatever its hash."""
    reply = client.get_config(pod.url)
    if reply.status == 200:
        return PodReport(pod.name, reply.config_hash, True, parse_statuses(reply.body),
                         url=pod.url)
    return PodReport(pod.name, reply.config_hash, False, {}, _error_text(reply), url=pod.url)


def handshake(pods: Sequence[PodTarget], expected: str, client: PodClient,
              max_workers: int = 8) -> HandshakeResult:
    """Check (and reload where needed) every ready pod, a few in parallel."""
    if not pods:
        return HandshakeResult(expected, ())
    with ThreadPoolExecutor(max_workers=min(max_workers, len(pods))) as pool:
        reports = list(pool.map(lambda p: check_pod(p, expected, client), pods))
    return HandshakeResult(expected, tuple(reports))


# ---------------------------------------------------------------- what to do next


@dataclass(frozen=True)
class Converged:
    """Every ready pod reports the expected hash and no version is still settling."""


@dataclass(frozen=True)
class Retry:
    delay: float
    reason: str


@dataclass(frozen=True)
class GaveUp:
    message: str


Step = Converged | Retry | GaveUp


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential back-off: base, 2*base, 4*base … capped."""
    return float(min(cap, base * (2 ** max(0, min(attempt, 16)))))


def stale_seconds(pod: PodTarget, expected: str, now: float) -> float:
    """How long the pod has been nudged for ``expected`` without applying it (0 if never)."""
    if pod.nudged_hash != expected or pod.nudged_at is None:
        return 0.0
    return max(0.0, now - pod.nudged_at)


def next_step(result: HandshakeResult, targets: Sequence[PodTarget], now: float, attempt: int,
              elapsed: float, timeout: float, base_delay: float, max_delay: float) -> Step:
    """Decide after a handshake: converged, retry in a while, or give up and report.

    ``now`` is epoch seconds (compared with the pods' nudge times), ``elapsed`` how long this
    change has been worked on (kopf's handler runtime), ``attempt`` the retry count.
    """
    stale = result.stale
    if not stale and not result.settling:
        return Converged()
    if not stale and elapsed >= timeout:
        return GaveUp(f"gave up after {timeout:.0f} s: model versions are still loading; "
                      "the operator checks again periodically.")
    by_name = {t.name: t for t in targets}
    overdue = [
        p for p in stale
        if p.name in by_name and stale_seconds(by_name[p.name], result.expected, now) >= timeout
    ]
    if stale and len(overdue) == len(stale):
        names = ", ".join(sorted(p.name for p in overdue))
        return GaveUp(
            f"gave up after {timeout:.0f} s: pod(s) {names} still report config "
            f"{_short(stale[0].config_hash)} instead of {_short(result.expected)}"
            + (f" ({stale[0].error})" if stale[0].error else "")
            + "; the kubelet has not delivered the ConfigMap yet. The operator checks again "
            "periodically."
        )
    if stale:
        names = ", ".join(sorted(p.name for p in stale))
        reason = f"waiting for pod(s) {names} to see config {_short(result.expected)}"
    else:
        reason = "waiting for model versions to finish loading"
    return Retry(retry_delay(attempt, base_delay, max_delay), reason)


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "(none)"


# ---------------------------------------------------------------- HTTP


class HttpPodClient:
    """:class:`PodClient` over HTTP(S) with the standard library.

    Pods are addressed by IP, which their certificates do not name, so with TLS the server's
    certificate is not verified: the operator only reads statuses and asks for a reload, and
    the hash it checks comes from the ConfigMap it wrote itself.
    """

    def __init__(self, timeout: float = 60.0,
                 opener: Callable[..., Any] | None = None,
                 connect_timeout: float | None = None) -> None:
        self.timeout = timeout
        # A dropped SYN (a default-deny NetworkPolicy) must not hold a pass for ``timeout``:
        # the TCP connection is tried first with this shorter limit.
        self.connect_timeout = min(timeout, connect_timeout or timeout)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        # No proxy: pod IPs are called directly, whatever HTTP(S)_PROXY says.
        self._open = opener or urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)).open

    def get_config(self, url: str) -> PodReply:
        return self._call(urllib.request.Request(f"{url}/v1/config", method="GET"))

    def reload(self, url: str) -> PodReply:
        return self._call(urllib.request.Request(f"{url}/v1/config/reload", data=b"",
                                                  method="POST"))

    def model_status(self, url: str, name: str) -> PodReply:
        path = urllib.parse.quote(name, safe="")
        return self._call(urllib.request.Request(f"{url}/v1/models/{path}", method="GET"))

    def _call(self, request: urllib.request.Request) -> PodReply:
        url = request.full_url
        problem = _cannot_connect(url, self.connect_timeout)
        if problem:
            return PodReply(0, error=problem)
        try:
            with self._open(request, timeout=self.timeout) as response:
                return _reply(int(response.status), response.headers, response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return _reply(exc.code, exc.headers, exc.read())
        except (OSError, ValueError) as exc:
            return PodReply(0, error=f"{request.get_method()} {url}: {_why(exc)}")


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    inner = reason if isinstance(reason, BaseException) else exc
    if isinstance(inner, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(inner).__name__}: {inner}"


def _cannot_connect(url: str, timeout: float) -> str | None:
    """None when a TCP connection to the URL's host and port opens within ``timeout``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return (f"cannot connect to {parts.scheme}://{parts.netloc}: timed out after "
                f"{timeout:g} s (does a NetworkPolicy block the operator from the pods' REST "
                "port?)")
    except OSError as exc:
        return f"cannot connect to {parts.scheme}://{parts.netloc}: {exc.strerror or exc}"


def _reply(status: int, headers: Any, data: bytes) -> PodReply:
    try:
        body = json.loads(data) if data else None
    except ValueError:
        body = {"error": data[:200].decode(errors="replace")}
    return PodReply(status, headers.get(HASH_HEADER) if headers else None, body)
