"""``az://container/prefix`` (Azure Blob storage) through azure-storage-blob (its only user).

Credentials: ``AZURE_STORAGE_CONNECTION_STRING`` (account key or SAS; Azurite's works too).
Downloads are read in chunks of at most 4 MiB (the SDK's first GET is capped to the same), so
a large file is never held whole; every call carries the store's timeout, one retry.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobPrefix, BlobServiceClient

from . import MAX_LISTED, RemoteFile, StorageError, join

__all__ = ["AzureStore"]

_GET_BYTES = 4 * 1024 * 1024


def _describe(exc: Exception) -> str:
    if isinstance(exc, HttpResponseError):
        raw = getattr(exc, "error_code", None)
        code = str(getattr(raw, "value", raw)) if raw else f"HTTP {exc.status_code}"
        first = (exc.message or str(exc)).splitlines()[0]
        return f"{code}: {first}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class AzureStore:
    def __init__(self, url: str, container: str, prefix: str, timeout: float) -> None:
        self.url = url
        self._prefix = prefix
        conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
        if not conn:
            raise StorageError(f"Cannot use {url}: AZURE_STORAGE_CONNECTION_STRING is not set")
        try:
            service = BlobServiceClient.from_connection_string(
                conn, connection_timeout=timeout, read_timeout=timeout, retry_total=1,
                max_single_get_size=_GET_BYTES, max_chunk_get_size=_GET_BYTES,
            )
        except (ValueError, AzureError) as exc:
            raise StorageError(f"Cannot use {url}: {_describe(exc)}") from None
        self._container: Any = service.get_container_client(container)

    def list_children(self) -> list[str]:
        prefix = self._prefix + "/" if self._prefix else ""
        names: list[str] = []
        found = False
        try:
            for item in self._container.walk_blobs(name_starts_with=prefix, delimiter="/"):
                found = True
                if isinstance(item, BlobPrefix):
                    names.append(item.name[len(prefix):].strip("/"))
                if len(names) > MAX_LISTED:
                    raise StorageError(f"{self.url}: more than {MAX_LISTED} entries")
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"Cannot list {self.url}: {_describe(exc)}") from None
        if not found:
            raise StorageError(f"Cannot list {self.url}: no object under it", missing=True)
        return names

    def list_files(self, folder: str) -> list[RemoteFile]:
        prefix = join(self._prefix, folder) + "/"
        files: list[RemoteFile] = []
        try:
            for blob in self._container.list_blobs(name_starts_with=prefix):
                files.append(RemoteFile(blob.name[len(prefix):], int(blob.size or 0),
                                        str(blob.etag or "")))
                if len(files) > MAX_LISTED:
                    raise StorageError(f"{self.url}: more than {MAX_LISTED} files in {folder}")
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"Cannot list {self.url}: {_describe(exc)}") from None
        return files

    def download(self, folder: str, path: str, out: BinaryIO) -> None:
        key = join(self._prefix, folder, path)
        try:
            stream = self._container.download_blob(key, max_concurrency=1)
            for chunk in stream.chunks():
                out.write(chunk)
        except Exception as exc:
            raise StorageError(f"Cannot download {key} from {self.url}: {_describe(exc)}") from None
