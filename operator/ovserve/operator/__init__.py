"""ovserve.operator: a kopf operator for InferenceModel and InferenceServer resources.

Start it with ``ovserve-operator``. No imports here, so importing a submodule stays cheap.
"""
