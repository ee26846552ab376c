"""``s3://bucket/prefix`` through boto3 (the only boto3 user).

Credentials and region come from boto3's usual environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``); ``S3_ENDPOINT`` points at an
S3-compatible store (MinIO, Ceph, ...) and then path-style addressing is used. Every call has
the connect/read timeout given to the store and at most 2 attempts.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import boto3
import botocore.config
import botocore.exceptions

from . import CHUNK_BYTES, MAX_LISTED, RemoteFile, StorageError, join

__all__ = ["S3Store", "endpoint_url"]


def endpoint_url() -> str | None:
    """``S3_ENDPOINT`` as a URL: ``host:port`` gets https (http with ``S3_USE_HTTPS=0``)."""
    endpoint = os.environ.get("S3_ENDPOINT", "").strip()
    if not endpoint:
        return None
    if "://" in endpoint:
        return endpoint
    https = os.environ.get("S3_USE_HTTPS", "1").strip().lower() not in ("0", "false", "no")
    return f"{'https' if https else 'http'}://{endpoint}"


def _describe(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '') or exc}"
    return f"{type(exc).__name__}: {exc}"


class S3Store:
    def __init__(self, url: str, bucket: str, prefix: str, timeout: float) -> None:
        self.url = url
        self._bucket = bucket
        self._prefix = prefix
        endpoint = endpoint_url()
        config = botocore.config.Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint else {},
        )
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION") or None,
            config=config,
        )

    def _fail(self, what: str, exc: Exception) -> StorageError:
        missing = isinstance(exc, botocore.exceptions.ClientError) and exc.response.get(
            "Error", {}).get("Code") in ("NoSuchKey", "404")
        return StorageError(f"Cannot {what} {self.url}: {_describe(exc)}", missing=missing)

    def _pages(self, prefix: str, delimiter: str | None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        pages: list[dict[str, Any]] = []
        seen = 0
        for page in self._client.get_paginator("list_objects_v2").paginate(**kwargs):
            pages.append(page)
            seen += len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))
            if seen > MAX_LISTED:
                raise StorageError(f"{self.url}: more than {MAX_LISTED} entries under {prefix!r}")
        return pages

    def list_children(self) -> list[str]:
        prefix = join(self._prefix) + "/" if self._prefix else ""
        try:
            pages = self._pages(prefix, "/")
        except StorageError:
            raise
        except Exception as exc:
            raise self._fail("list", exc) from None
        names = [p["Prefix"][len(prefix):].strip("/")
                 for page in pages for p in page.get("CommonPrefixes", [])]
        if not names and not any(page.get("Contents") for page in pages):
            raise StorageError(f"Cannot list {self.url}: no object under it", missing=True)
        return names

    def list_files(self, folder: str) -> list[RemoteFile]:
        prefix = join(self._prefix, folder) + "/"
        try:
            pages = self._pages(prefix, None)
        except StorageError:
            raise
        except Exception as exc:
            raise self._fail("list", exc) from None
        return [RemoteFile(o["Key"][len(prefix):], int(o["Size"]), str(o.get("ETag", "")))
                for page in pages for o in page.get("Contents", [])
                if not o["Key"].endswith("/")]

    def download(self, folder: str, path: str, out: BinaryIO) -> None:
        key = join(self._prefix, folder, path)
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    out.write(chunk)
            finally:
                body.close()
        except Exception as exc:
            raise StorageError(f"Cannot download s3://{self._bucket}/{key}: {_describe(exc)}") from None
