"""Wire codecs: one module per REST dialect, each pure ``decode_*`` / ``encode_*`` functions.

* :mod:`.tfs` — the TensorFlow-Serving-style v1 API as OVMS (<= 2026.2) serves it, with
  :mod:`.tfs_values` turning its JSON values into numpy arrays.
* :mod:`.kserve_v2` — KServe v2 / Open Inference Protocol, JSON and the binary extension.
* :mod:`.mindspore` — MindSpore-Serving-style ``instances`` requests and replies.
* :mod:`.dtypes` — precision names per wire (OpenVINO, TF ``DT_*``, KServe v2, MindSpore, numpy).

Codecs know :mod:`ovserve.server.types` and :mod:`ovserve.server.errors` only; the HTTP layer
calls them and maps the domain errors they raise to status codes.
"""
