"""The built-in demo model served by ``ovserve-server --demo`` (and ``make run``).

:func:`ensure_demo_model` is called by ``cli.py`` (in an executor) before the manager starts. It
writes ``<base_path>/1/model.xml`` + ``model.bin``, a model with float32 inputs ``a`` and ``b``
of shape ``[-1,4]`` and one output ``sum = a + b``, so the README's requests work::

    curl -X POST localhost:8001/v1/models/demo:predict \\
         -d '{"inputs": {"a": [[1, 2, 3, 4]], "b": [[10, 20, 30, 40]]}}'
    {"outputs": [[11.0, 22.0, 33.0, 44.0]]}

The model is built with OpenVINO's Python API (through :mod:`.openvino`, the only module that
imports OpenVINO) only when ``<base_path>/1`` holds no ``*.xml`` yet. It is built in a temporary
folder beside ``1/`` and moved into place with one ``os.replace``, so a crash never leaves a
half-written model for the server to load.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

__all__ = ["DEMO_VERSION", "ensure_demo_model"]

DEMO_VERSION = 1


def ensure_demo_model(base_path: str) -> str:
    """Build the demo model under ``base_path`` unless it is there already; return ``base_path``."""
    from .openvino import save_sum_model

    version_dir = os.path.join(base_path, str(DEMO_VERSION))
    if glob.glob(os.path.join(glob.escape(version_dir), "*.xml")):
        return base_path
    os.makedirs(base_path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{DEMO_VERSION}.building-", dir=base_path)
    try:
        save_sum_model(os.path.join(staging, "model.xml"))
        if os.path.isdir(version_dir) and not os.listdir(version_dir):
            os.rmdir(version_dir)  # an empty leftover folder would block os.replace
        try:
            os.replace(staging, version_dir)
        except OSError:
            # Someone else finished first (or left files there): keep theirs if it is a model.
            if not glob.glob(os.path.join(glob.escape(version_dir), "*.xml")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return base_path
