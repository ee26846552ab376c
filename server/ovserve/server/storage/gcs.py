"""``gs://bucket/prefix`` through google-cloud-storage (the only user of that SDK).

Credentials: ``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account key file), else the
environment's default credentials; with ``STORAGE_EMULATOR_HOST`` set (a local emulator) the
client is anonymous. Every call carries the store's timeout; downloads are streamed to the
output file by the SDK, never held whole.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from . import MAX_LISTED, RemoteFile, StorageError, join

__all__ = ["GcsStore"]


def _describe(exc: Exception) -> str:
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"{exc.code} {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class GcsStore:
    def __init__(self, url: str, bucket: str, prefix: str, timeout: float) -> None:
        self.url = url
        self._prefix = prefix
        self._timeout = timeout
        try:
            if os.environ.get("STORAGE_EMULATOR_HOST"):
                client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "ovserve"),
                                        credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
            elif os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
                client = storage.Client()
            else:
                client = storage.Client.create_anonymous_client()
        except Exception as exc:
            raise StorageError(f"Cannot use {url}: {_describe(exc)}") from None
        self._bucket: Any = client.bucket(bucket)

    def _list(self, prefix: str, delimiter: str | None) -> tuple[list[Any], set[str]]:
        blobs: list[Any] = []
        it = self._bucket.list_blobs(prefix=prefix, delimiter=delimiter, timeout=self._timeout,
                                     max_results=MAX_LISTED + 1)
        for blob in it:
            blobs.append(blob)
        prefixes = set(it.prefixes)
        if len(blobs) + len(prefixes) > MAX_LISTED:
            raise StorageError(f"{self.url}: more than {MAX_LISTED} entries under {prefix!r}")
        return blobs, prefixes

    def list_children(self) -> list[str]:
        prefix = self._prefix + "/" if self._prefix else ""
        try:
            blobs, prefixes = self._list(prefix, "/")
        except StorageError:
            raise
        except gexc.NotFound as exc:
            raise StorageError(f"Cannot list {self.url}: {_describe(exc)}") from None
        except Exception as exc:
            raise StorageError(f"Cannot list {self.url}: {_describe(exc)}") from None
        if not blobs and not prefixes:
            raise StorageError(f"Cannot list {self.url}: no object under it", missing=True)
        return [p[len(prefix):].strip("/") for p in prefixes]

    def list_files(self, folder: str) -> list[RemoteFile]:
        prefix = join(self._prefix, folder) + "/"
        try:
            blobs, _ = self._list(prefix, None)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"Cannot list {self.url}: {_describe(exc)}") from None
        return [RemoteFile(b.name[len(prefix):], int(b.size or 0),
                           f"{b.generation}:{b.md5_hash or b.etag or ''}")
                for b in blobs if not b.name.endswith("/")]

    def download(self, folder: str, path: str, out: BinaryIO) -> None:
        key = join(self._prefix, folder, path)
        try:
            self._bucket.blob(key).download_to_file(out, timeout=self._timeout, checksum=None)
        except Exception as exc:
            raise StorageError(f"Cannot download gs://{self._bucket.name}/{key}: "
                               f"{_describe(exc)}") from None
