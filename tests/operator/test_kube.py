"""The JSON patch the Kubernetes adapter sends to update an owned child."""

from __future__ import annotations

import copy

import jsonpatch
from operator_fakes import server_body

from ovserve.operator import render
from ovserve.operator.kube import apply_patch
from ovserve.operator.resources import ServerSpec


def test_patch_replaces_spec_and_merges_our_metadata() -> None:
    desired = render.deployment(ServerSpec.from_body(server_body(nodeSelector={"a": "b"})))
    live = copy.deepcopy(render.deployment(ServerSpec.from_body(server_body(
        nodeSelector={"old": "x"}))))
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    live["metadata"]["uid"] = "live-uid"
    live["spec"]["progressDeadlineSeconds"] = 600  # an API-server default
    live["status"] = {"replicas": 1}
    patched = jsonpatch.apply_patch(live, apply_patch(live, desired))
    assert patched["spec"] == desired["spec"]  # nodeSelector "old" is gone, not merged
    assert patched["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert (patched["metadata"]["annotations"][render.RENDERED_HASH_ANNOTATION]
            == desired["metadata"]["annotations"][render.RENDERED_HASH_ANNOTATION])
    assert patched["metadata"]["uid"] == "live-uid" and patched["status"] == {"replicas": 1}


def test_patch_of_a_config_map_replaces_data() -> None:
    server = ServerSpec.from_body(server_body())
    desired = render.config_map(server, b'{"model_config_list": []}\n')
    live = {"metadata": {"name": "default-config"}, "data": {"config.json": "{}", "x": "y"}}
    patched = jsonpatch.apply_patch(live, apply_patch(live, desired))
    assert patched["data"] == desired["data"]
    assert patched["metadata"]["labels"] == desired["metadata"]["labels"]
    assert patched["metadata"]["ownerReferences"] == desired["metadata"]["ownerReferences"]


def test_service_keeps_allocated_addresses_and_node_ports() -> None:
    desired = render.service(ServerSpec.from_body(server_body(serviceType="NodePort")))
    live = copy.deepcopy(desired)
    live["spec"].update(clusterIP="10.96.0.7", clusterIPs=["10.96.0.7"])
    live["spec"]["ports"][0]["nodePort"] = 31234
    patched = jsonpatch.apply_patch(live, apply_patch(live, desired))
    assert patched["spec"]["clusterIP"] == "10.96.0.7"
    assert patched["spec"]["ports"][0]["nodePort"] == 31234
    assert patched["spec"]["type"] == "NodePort"


def test_annotation_keys_with_slashes_are_escaped() -> None:
    desired = render.service(ServerSpec.from_body(server_body()))
    live = {"metadata": {"annotations": {"other": "1"}, "labels": {"x": "y"}}, "spec": {}}
    ops = apply_patch(live, desired)
    paths = [op["path"] for op in ops]
    assert "/metadata/annotations/ovserve.io~1rendered-hash" in paths
    patched = jsonpatch.apply_patch(live, ops)
    assert patched["metadata"]["annotations"]["other"] == "1"
