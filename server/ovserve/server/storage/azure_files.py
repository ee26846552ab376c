"""``azfs://share/path`` (Azure Files shares) through azure-storage-file-share (its only user).

OVMS reads ``azfs://`` URLs as Azure Files: the first component is the share, the rest a
directory in it; ``az://`` is Blob storage (:mod:`.azure`). Credentials:
``AZURE_STORAGE_CONNECTION_STRING``, as for blobs. Directories are real here, so the version
folders are the share directory's subdirectories. Downloads are read in chunks of at most
4 MiB; every call carries the store's timeout, one retry.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.fileshare import ShareServiceClient

from . import MAX_LISTED, RemoteFile, StorageError, join

__all__ = ["AzureFilesStore"]

_GET_BYTES = 4 * 1024 * 1024
_MISSING = ("ResourceNotFound", "ParentNotFound")


def _code(exc: Exception) -> str | None:
    raw = getattr(exc, "error_code", None)
    return str(getattr(raw, "value", raw)) if raw else None


def _describe(exc: Exception) -> str:
    if isinstance(exc, HttpResponseError):
        code = _code(exc) or f"HTTP {exc.status_code}"
        first = (exc.message or str(exc)).splitlines()[0]
        return f"{code}: {first}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class AzureFilesStore:
    def __init__(self, url: str, share: str, prefix: str, timeout: float) -> None:
        self.url = url
        self._prefix = prefix
        conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
        if not conn:
            raise StorageError(f"Cannot use {url}: AZURE_STORAGE_CONNECTION_STRING is not set")
        try:
            service = ShareServiceClient.from_connection_string(
                conn, connection_timeout=timeout, read_timeout=timeout, retry_total=1,
                max_single_get_size=_GET_BYTES, max_chunk_get_size=_GET_BYTES,
            )
        except (ValueError, AzureError) as exc:
            raise StorageError(f"Cannot use {url}: {_describe(exc)}") from None
        self._share: Any = service.get_share_client(share)

    def _entries(self, path: str) -> list[Any]:
        entries: list[Any] = []
        directory = self._share.get_directory_client(path)
        for item in directory.list_directories_and_files():
            entries.append(item)
            if len(entries) > MAX_LISTED:
                raise StorageError(f"{self.url}: more than {MAX_LISTED} entries under {path!r}")
        return entries

    def list_children(self) -> list[str]:
        try:
            entries = self._entries(self._prefix)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"Cannot list {self.url}: {_describe(exc)}",
                               missing=_code(exc) in _MISSING) from None
        if not entries:
            raise StorageError(f"Cannot list {self.url}: no object under it", missing=True)
        return [e["name"] for e in entries if e.get("is_directory")]

    def list_files(self, folder: str) -> list[RemoteFile]:
        files: list[RemoteFile] = []
        pending = [""]
        try:
            while pending:
                rel = pending.pop()
                for entry in self._entries(join(self._prefix, folder, rel)):
                    path = f"{rel}/{entry['name']}" if rel else str(entry["name"])
                    if entry.get("is_directory"):
                        pending.append(path)
                    else:
                        files.append(RemoteFile(path, int(entry.get("size") or 0),
                                                str(entry.get("etag") or entry.get("size"))))
                    if len(files) > MAX_LISTED:
                        raise StorageError(f"{self.url}: more than {MAX_LISTED} files in {folder}")
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"Cannot list {self.url}: {_describe(exc)}") from None
        return sorted(files, key=lambda f: f.path)

    def download(self, folder: str, path: str, out: BinaryIO) -> None:
        key = join(self._prefix, folder, path)
        try:
            stream = self._share.get_file_client(key).download_file(max_concurrency=1)
            for chunk in stream.chunks():
                out.write(chunk)
        except Exception as exc:
            raise StorageError(f"Cannot download {key} from {self.url}: {_describe(exc)}") from None
