"""ovserve.server: an OpenVINO model server speaking OVMS's REST dialects (TFS v1, KServe v2, MindSpore).

Start it with ``ovserve-server`` or ``python -m ovserve.server``; the composition root is
:mod:`ovserve.server.cli`. No imports here, so importing a submodule stays cheap.
"""

__version__ = "0.1.0"
