"""Reads an OVMS-layout model repository: the numeric version folders under a base path.

Called by :mod:`ovserve.server.manager` (in a worker thread, never on the event loop) on every
load, reload and poll. The layout (OVMS ``docs/models_repository_classic.md``)::

    <base_path>/1/model.xml + model.bin      version 1
    <base_path>/3/model.xml + model.bin      version 3
    <base_path>/README.md, <base_path>/tmp/  ignored: only folders named by a positive integer count

A folder name must be the canonical decimal form of a positive 64-bit integer (``01`` and ``0``
are ignored, as is anything else); symbolic links to folders count. Files inside a version folder
are not inspected here; :func:`fingerprint` summarises them so the manager can notice that a
version that failed to load has changed on disk (e.g. a copy finished).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "NO_BASE_PATH",
    "NO_VERSIONS",
    "ScanResult",
    "fingerprint",
    "from_names",
    "inspect",
    "scan",
    "version_dir",
]

NO_VERSIONS = "Not a single model version directory has valid numeric name"
NO_BASE_PATH = "The model base path does not exist or is not a directory"
_MAX_VERSION = 2**63 - 1


@dataclass(frozen=True)
class ScanResult:
    """Numeric version folders found (sorted ascending) and, when there are none, why."""

    versions: tuple[int, ...]
    error: str | None = None
    # The storage could not be read (unreachable, credentials): not a statement about versions.
    transient: bool = False


def _version_of(name: str) -> int | None:
    if not (name.isascii() and name.isdigit()) or name.startswith("0"):
        return None
    number = int(name)
    return number if 0 < number <= _MAX_VERSION else None


def scan(base_path: str) -> list[int]:
    """Numeric version folders under ``base_path``, ascending; ``[]`` if it does not exist."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return []
    found: set[int] = set()
    for name in names:
        number = _version_of(name)
        if number is not None and os.path.isdir(os.path.join(base_path, name)):
            found.add(number)
    return sorted(found)


def inspect(base_path: str) -> ScanResult:
    """Like :func:`scan`, with OVMS's error text when no version can be served.

    >>> inspect("/nonexistent").error
    'The model base path does not exist or is not a directory: /nonexistent'
    """
    if not os.path.isdir(base_path):
        return ScanResult((), f"{NO_BASE_PATH}: {base_path}")
    versions = tuple(scan(base_path))
    if not versions:
        return ScanResult((), f"{NO_VERSIONS}: {base_path}")
    return ScanResult(versions)


def from_names(names: list[str], base_path: str) -> ScanResult:
    """The versions among the child folder names of a remote base path, as :func:`inspect`."""
    versions = tuple(sorted({n for n in map(_version_of, names) if n is not None}))
    if not versions:
        return ScanResult((), f"{NO_VERSIONS}: {base_path}")
    return ScanResult(versions)


def version_dir(base_path: str, version: int) -> str:
    """The folder of one version: ``<base_path>/<version>``."""
    return os.path.join(base_path, str(version))


def fingerprint(folder: str) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, mtime in ns) of every file below ``folder``, sorted.

    Cheap enough to run on each poll for the few versions that failed to load; empty when the
    folder is missing.
    """
    entries: list[tuple[str, int, int]] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            entries.append((os.path.relpath(path, folder), st.st_size, st.st_mtime_ns))
    return tuple(sorted(entries))
