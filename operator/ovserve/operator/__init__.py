"""ovserve.operator: a kopf operator for InferenceModel and InferenceServer resources.

Start it with ``ovserve-operator``. No imports here, so importing a submodule stays cheap.

Modules, inner to outer (docs/operator.md tells the whole story):

* ``resources`` - typed, validated views of the two custom resources;
* ``render`` - pure: specs -> config.json bytes, ConfigMap, Deployment, Service;
* ``status`` - pure: per-pod model statuses -> InferenceModel / InferenceServer status;
* ``reload`` - the reload/hash handshake with the server pods, and when to retry or give up;
* ``kube`` - the only module that talks to the Kubernetes API;
* ``reconcile`` - one pass per InferenceServer: decode, render, apply, reload, write status;
* ``handlers`` - kopf wiring only (the only module importing kopf);
* ``cli`` - the ``ovserve-operator`` command line.

From the server it imports only ``ovserve.server.config`` (the config.json contract).
"""
