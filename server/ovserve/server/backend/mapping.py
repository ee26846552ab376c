"""``mapping_config.json``: the names a version folder gives its model's tensors on the wire.

OVMS reads ``<base_path>/<N>/mapping_config.json`` when it loads version N::

    {"inputs": {"data": "new_key"}, "outputs": {"prob": "gender"}}

Each key is a tensor's own name in the model, each value the name clients use instead: in
metadata (TFS v1 and KServe v2), in predict / infer requests and responses, and in
MindSpore-style requests. A tensor the file does not name keeps its own name; a key that names
no tensor of the model is ignored. Names in the model's ``shape`` and ``layout`` settings of
config.json are the mapped names (as OVMS reads them).

An unusable file never stops the model from loading; as OVMS does, it is logged and ignored:

* not valid JSON, or not a JSON object: the whole file is ignored (an error is logged);
* a section (``inputs`` / ``outputs``) that is not an object of strings, or a top-level key
  other than those two (OVMS's schema allows no other): that section is ignored (a warning);
* beyond OVMS, which does not check: a section that would give two tensors the same name is
  ignored too (a warning), rather than serving a model whose inputs cannot be told apart.

:func:`read_mapping` is called by :meth:`ovserve.server.backend.openvino.OpenVINOBackend.load`,
which applies the names to the model's signature; the rest of the server only ever sees the
mapped names.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["MAPPING_FILE", "MAX_MAPPING_BYTES", "TensorMapping", "read_mapping"]

log = logging.getLogger(__name__)

MAPPING_FILE = "mapping_config.json"
# A mapping names a handful of tensors; a larger file is refused (logged and ignored) rather
# than read into memory.
MAX_MAPPING_BYTES = 1024 * 1024
_SECTIONS = ("inputs", "outputs")


@dataclass(frozen=True)
class TensorMapping:
    """Own name -> served name, per side; empty when the folder has no (usable) file."""

    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.inputs or self.outputs)


def _section(doc: dict[str, object], key: str, path: str) -> dict[str, str]:
    value = doc.get(key)
    if value is None:
        return {}
    extra = [k for k in doc if k not in _SECTIONS]
    if extra:
        log.warning("Couldn't load %s object from file %s: unexpected key %s", key, path,
                    ", ".join(repr(k) for k in extra))
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        log.warning("Couldn't load %s object from file %s: expected an object of strings",
                    key, path)
        return {}
    return dict(value)


def read_mapping(version_dir: str) -> TensorMapping:
    """The mapping of ``version_dir`` (see the module docstring); never raises."""
    path = os.path.join(version_dir, MAPPING_FILE)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_MAPPING_BYTES + 1)
    except FileNotFoundError:
        return TensorMapping()
    except OSError as exc:
        log.error("Cannot read %s: %s; the tensors keep their own names", path, exc.strerror)
        return TensorMapping()
    if len(data) > MAX_MAPPING_BYTES:
        log.error("%s is larger than %d bytes; it is ignored", path, MAX_MAPPING_BYTES)
        return TensorMapping()
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        log.error("%s is not a valid JSON file (%s); the tensors keep their own names", path, exc)
        return TensorMapping()
    if not isinstance(doc, dict):
        log.error("%s is not a JSON object; the tensors keep their own names", path)
        return TensorMapping()
    return TensorMapping(_section(doc, "inputs", path), _section(doc, "outputs", path))


def served_names(own: Iterable[str], mapping: Mapping[str, str], side: str,
                 where: str) -> list[str]:
    """The served name of each tensor (``own`` in model order); a mapping that would make two
    tensors share a name is ignored, with a warning naming ``where`` (the file)."""
    own = list(own)
    names = [mapping.get(name, name) for name in own]
    if len(set(names)) != len(names):
        clash = sorted({n for n in names if names.count(n) > 1})
        log.warning("Couldn't load %s object from file %s: it gives two %s the name %s; the %s "
                    "keep their own names", side, where, side, clash[0], side)
        return own
    return names
