"""Remote model repositories: ``s3://``, ``gs://`` and ``az://`` base paths behind one protocol.

OVMS serves ``base_path`` (and ``--model_path``) from object storage as it does from a local
folder: the numeric "folders" under the base path are the versions, polled like a local disk.
This package is the only place that knows the providers: :func:`open_store` turns a URL into a
:class:`Store` (each provider's SDK is imported lazily, inside its own module, so a server that
uses no remote storage needs none of them), and :mod:`.cache` streams one version's files into
a bounded local cache folder that the OpenVINO backend then reads like any other version folder.

Everything here is blocking I/O; the manager runs it on its own small thread pool with a
deadline (:data:`DEFAULT_TIMEOUT`), never on the event loop. Credentials come from the
environment, as in OVMS:

=========  ================================================================================
scheme     environment
=========  ================================================================================
s3://      AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
           S3_ENDPOINT (S3-compatible stores such as MinIO; ``host:port`` or a URL),
           S3_USE_HTTPS=0 (plain HTTP when S3_ENDPOINT has no scheme)
gs://      GOOGLE_APPLICATION_CREDENTIALS; STORAGE_EMULATOR_HOST (an emulator, no credentials)
az://      AZURE_STORAGE_CONNECTION_STRING; ``az://<container>/<path>`` (Blob storage)
azfs://    AZURE_STORAGE_CONNECTION_STRING; ``azfs://<share>/<path>`` (Azure Files, as in OVMS)
=========  ================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO, Protocol

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_LISTED",
    "REMOTE_SCHEMES",
    "RemoteFile",
    "StorageError",
    "Store",
    "is_remote",
    "open_store",
    "split_url",
]

REMOTE_SCHEMES = ("s3", "gs", "az", "azfs")
DEFAULT_TIMEOUT = 30.0  # seconds: connect and read timeout of every storage call (--storage_timeout_seconds)
MAX_LISTED = 10_000  # entries one listing may return (version folders, or files of one version)
CHUNK_BYTES = 1024 * 1024  # bytes read from a download stream at a time: what one file holds in memory

_URL_RE = re.compile(r"^([a-z][a-z0-9+.-]*)://(.*)$")


class StorageError(Exception):
    """A remote repository could not be read; ``str(err)`` says what and why.

    ``missing`` is True when the storage answered and the base path simply holds nothing
    (the remote equivalent of a missing folder); otherwise the failure is the storage's
    (unreachable, credentials, permissions) and whatever serves keeps serving.
    """

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class RemoteFile:
    """One object below a version folder: path relative to it, size, and a change tag."""

    path: str
    size: int
    tag: str


class Store(Protocol):
    """One remote base path (``scheme://bucket/prefix``)."""

    url: str

    def list_children(self) -> list[str]:
        """Names of the immediate "folders" under the base path. Raises StorageError."""
        ...

    def list_files(self, folder: str) -> list[RemoteFile]:
        """Every object below ``<base>/<folder>/``, recursively. Raises StorageError."""
        ...

    def download(self, folder: str, path: str, out: BinaryIO) -> None:
        """Stream ``<base>/<folder>/<path>`` into ``out`` in chunks. Raises StorageError."""
        ...


def is_remote(path: str) -> bool:
    """True for a URL with a scheme (``s3://…``), remote or not supported."""
    return _URL_RE.match(path) is not None


def split_url(url: str) -> tuple[str, str, str]:
    """``s3://bucket/a/b/`` -> ``("s3", "bucket", "a/b")``. Raises StorageError."""
    m = _URL_RE.match(url)
    if m is None:
        raise StorageError(f"Not a storage URL: {url}")
    scheme, rest = m.group(1), m.group(2)
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"{url}: the URL names no bucket or container")
    return scheme, bucket, prefix.strip("/")


def open_store(url: str, timeout: float = DEFAULT_TIMEOUT) -> Store:
    """A :class:`Store` for ``url``; the provider's SDK is imported here, on first use.

    Raises StorageError for an unknown scheme, a malformed URL or a missing SDK.
    """
    scheme, bucket, prefix = split_url(url)
    try:
        if scheme == "s3":
            from .s3 import S3Store

            return S3Store(url, bucket, prefix, timeout)
        if scheme == "gs":
            from .gcs import GcsStore

            return GcsStore(url, bucket, prefix, timeout)
        if scheme == "az":
            from .azure import AzureStore

            return AzureStore(url, bucket, prefix, timeout)
        if scheme == "azfs":
            from .azure_files import AzureFilesStore

            return AzureFilesStore(url, bucket, prefix, timeout)
    except ImportError as exc:
        raise StorageError(
            f"{scheme}:// storage needs the Python package {exc.name!r}: "
            "install ovserve with the 'storage' extra (pip install 'ovserve[server,storage]')"
        ) from None
    raise StorageError(
        f"{url}: remote storage {scheme}:// is not supported (supported: s3://, gs://, az://, azfs://)"
    )


def join(prefix: str, *parts: str) -> str:
    """Object key of ``parts`` under ``prefix`` (no leading slash, no doubled slashes)."""
    return "/".join(p.strip("/") for p in (prefix, *parts) if p.strip("/"))
