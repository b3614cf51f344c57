"""Nodes and pods from Kubernetes API JSON, as the API server and ``kubectl get -o json`` give them."""

from __future__ import annotations

import copy
import json

import pytest

from scheduler.model.cluster import TaintEffect, Toleration, WorkloadKind
from scheduler.model.k8s_json import ModelError, items, node_from_k8s, pod_from_k8s
from scheduler.model.resources import CPU, GPU, GPU_MILLI, MEMORY, PODS, Resources
from scheduler.model.sources import read_nodes, read_pods

GiB = 2**30

NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "gpu-a100-0",
        "uid": "2a7f3c1e-7d44-4f0e-9a61-6f1d1c0b7d11",
        "labels": {
            "kubernetes.io/hostname": "gpu-a100-0",
            "topology.kubernetes.io/zone": "zone-a",
            "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
            "nvidia.com/gpu.memory": "81920",
        },
    },
    "spec": {
        "podCIDR": "10.244.3.0/24",
        "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
    },
    "status": {
        "capacity": {"cpu": "96", "memory": "1056613216Ki", "nvidia.com/gpu": "8", "pods": "110"},
        "allocatable": {
            "cpu": "95800m",
            "ephemeral-storage": "423440201683",
            "hugepages-1Gi": "0",
            "memory": "1055462240Ki",
            "nvidia.com/gpu": "8",
            "pods": "110",
        },
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "train-resnet-worker-0",
        "namespace": "vision",
        "uid": "9d0c2b8e-1f3a-4c55-8b5e-2e7c8e1f0a42",
        "labels": {"slotwise.io/pipeline": "resnet-sweep-7", "slotwise.io/dataset": "imagenet"},
        "annotations": {"slotwise.io/gpu-models": "NVIDIA-A100-SXM4-80GB|NVIDIA-H100-80GB-HBM3"},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "train-resnet", "uid": "u1"}],
    },
    "spec": {
        "schedulerName": "default-scheduler",
        "priority": 1000,
        "containers": [
            {
                "name": "trainer",
                "image": "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
                "resources": {
                    "requests": {"cpu": "7500m", "memory": "60Gi"},
                    "limits": {"memory": "60Gi", "nvidia.com/gpu": "2"},
                },
            }
        ],
        "nodeSelector": {"topology.kubernetes.io/zone": "zone-a"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40000"]},
                                {"key": "maintenance", "operator": "DoesNotExist"},
                            ]
                        },
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-h100-0"]}]},
                    ]
                }
            }
        },
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "imagenet-cache"}},
            {"name": "kube-api-access-abcde", "projected": {"sources": []}},
        ],
    },
    "status": {"phase": "Pending", "qosClass": "Burstable"},
}


def test_node_from_api_json() -> None:
    node = node_from_k8s(NODE)
    assert node.name == "gpu-a100-0"
    assert node.allocatable[CPU] == 95_800
    assert node.allocatable[MEMORY] == 1_055_462_240 * 1024
    assert node.allocatable[GPU] == 8 and node.gpu_count == 8
    assert node.allocatable[PODS] == 110
    assert node.gpu_model == "NVIDIA-A100-SXM4-80GB" and node.gpu_memory_mib == 81_920
    assert [str(t) for t in node.taints] == ["nvidia.com/gpu=present:NoSchedule"]


def test_a_cordoned_node_is_tainted_unschedulable() -> None:
    cordoned = copy.deepcopy(NODE)
    cordoned["spec"]["unschedulable"] = True
    assert "node.kubernetes.io/unschedulable:NoSchedule" in [str(t) for t in node_from_k8s(cordoned).taints]


def test_a_node_without_gpus_has_no_gpu_model() -> None:
    cpu_node = copy.deepcopy(NODE)
    del cpu_node["status"]["allocatable"]["nvidia.com/gpu"]
    assert node_from_k8s(cpu_node).gpu_model is None


def test_pod_from_api_json() -> None:
    pod = pod_from_k8s(POD)
    assert pod.key == "vision/train-resnet-worker-0"
    assert pod.requests == Resources({CPU: 7500, MEMORY: 60 * GiB, GPU: 2})
    assert pod.gpu is not None and (pod.gpu.count, pod.gpu.milli) == (2, 1000)
    assert pod.gpu.models == {"NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"}
    assert pod.project == "vision" and pod.kind is WorkloadKind.JOB and pod.priority == 1000
    assert pod.node_selector == {"topology.kubernetes.io/zone": "zone-a"}
    assert [[(r.key, r.operator, r.values, r.field) for r in term] for term in pod.affinity] == [
        [("nvidia.com/gpu.memory", "Gt", ("40000",), False), ("maintenance", "DoesNotExist", (), False)],
        [("metadata.name", "In", ("gpu-h100-0",), True)],
    ]
    assert pod.tolerations[0] == Toleration("nvidia.com/gpu", "Exists", "", TaintEffect.NO_SCHEDULE)
    assert pod.pipeline == "resnet-sweep-7"
    assert pod.datasets == ("imagenet", "imagenet-cache")
    assert pod.node_name is None and pod.gpu_indices == ()


def test_a_gpu_share_request_is_one_shared_gpu() -> None:
    shared = copy.deepcopy(POD)
    shared["spec"]["containers"][0]["resources"] = {"limits": {"slotwise.io/gpu-milli": "300"}}
    pod = pod_from_k8s(shared)
    assert pod.requests[GPU_MILLI] == 300
    assert pod.gpu is not None and pod.gpu.shared and (pod.gpu.count, pod.gpu.milli) == (1, 300)


@pytest.mark.parametrize(
    ("labels", "owners", "kind"),
    [
        ({"slotwise.io/workload-kind": "notebook"}, [], WorkloadKind.NOTEBOOK),
        ({"notebook-name": "alice"}, [], WorkloadKind.NOTEBOOK),
        ({"serving.kserve.io/inferenceservice": "llm"}, [], WorkloadKind.SERVING),
        ({}, [{"kind": "ReplicaSet", "name": "api-7d9"}], WorkloadKind.SERVING),
        ({}, [{"kind": "Job", "name": "train"}], WorkloadKind.JOB),
    ],
)
def test_workload_kind_from_labels_and_owners(labels: dict, owners: list, kind: WorkloadKind) -> None:
    pod = copy.deepcopy(POD)
    pod["metadata"]["labels"] = labels
    pod["metadata"]["ownerReferences"] = owners
    assert pod_from_k8s(pod).kind is kind


def test_project_label_overrides_namespace_and_bound_pods_keep_their_gpus() -> None:
    pod = copy.deepcopy(POD)
    pod["metadata"]["labels"]["slotwise.io/project"] = "cv-research"
    pod["metadata"]["annotations"]["slotwise.io/gpu-indices"] = "2,3"
    pod["spec"]["nodeName"] = "gpu-a100-0"
    built = pod_from_k8s(pod)
    assert built.project == "cv-research"
    assert (built.node_name, built.gpu_indices) == ("gpu-a100-0", (2, 3))


def _broken(path: str, value: object) -> dict:
    pod = copy.deepcopy(POD)
    *parents, last = path.split(".")
    target = pod
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return pod


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("metadata.name", "", "metadata.name"),
        ("metadata.labels", ["a"], "metadata.labels: expected an object"),
        ("spec.containers.0.resources", {"requests": {"cpu": "lots"}}, "spec.containers: cpu"),
        ("spec.containers.0.resources", {"limits": {"nvidia.com/gpu": "0.5"}}, "whole number"),
        ("spec.containers.0.resources", {"limits": {"nvidia.com/gpu": "1", "slotwise.io/gpu-milli": "500"}}, "not both"),
        ("spec.containers.0.resources", {"limits": {"slotwise.io/gpu-milli": "1500"}}, "at most 1000"),
        ("spec.tolerations", {"key": "x"}, "spec.tolerations: expected a list"),
        ("spec.tolerations.0", {"key": "x", "effect": "Sometimes"}, r"spec.tolerations\[0\].effect"),
        ("spec.priority", "high", "spec.priority"),
        # Each of these was a TypeError, AttributeError or KeyError (a 500 from the webhooks).
        ("spec.containers", "trainer", "spec.containers: expected a list, got str"),
        ("spec.containers.0", None, r"spec.containers\[0\]: expected an object, got NoneType"),
        ("spec.containers.0.resources", [1], r"spec.containers\[0\].resources: expected an object"),
        ("spec.containers.0.resources.requests", ["cpu"], r"resources.requests: expected an object, got list"),
        ("spec.initContainers", 5, "spec.initContainers: expected a list, got int"),
        ("spec.overhead", [1], "spec.overhead: expected an object"),
        ("spec.volumes.0.persistentVolumeClaim", {}, r"spec.volumes\[0\].persistentVolumeClaim.claimName"),
        # Past 64 bits once counted in milli-GPU or added up: an OverflowError in the quota ledger.
        ("spec.containers.0.resources", {"requests": {"nvidia.com/gpu": "99999999999999999999999"}},
         "nvidia.com/gpu: the pod asks more than any cluster holds"),
        ("spec.priority", 2**31, "spec.priority: expected a 32-bit integer"),  # an int32 column in PostgreSQL
        ("spec.priority", True, "spec.priority: expected a 32-bit integer"),
    ],
)
def test_malformed_pods_name_the_offending_field(path: str, value: object, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        pod_from_k8s(_broken(path, value))


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("labels", "slotwise.io/workload-kind", "batch", "'batch' is not one of job, notebook, serving"),
        ("annotations", "slotwise.io/gpu-indices", "a,b", "expected comma-separated GPU indices"),
    ],
)
def test_malformed_slotwise_labels_name_the_key(section: str, key: str, value: str, message: str) -> None:
    pod = copy.deepcopy(POD)
    pod["metadata"][section][key] = value
    with pytest.raises(ModelError, match=f"metadata.{section}.{key}: {message}"):
        pod_from_k8s(pod)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"key": "a", "operator": "Near", "values": ["x"]}, "unknown operator 'Near'"),
        ({"key": "a", "operator": "Gt", "values": ["1", "2"]}, "needs exactly one integer"),
        ({"key": "a", "operator": "Lt", "values": ["ten"]}, "needs exactly one integer"),
        ({"key": "a", "operator": ["In"], "values": ["x"]}, r"unknown operator \['In'\]"),  # was a TypeError
    ],
)
def test_malformed_affinity_names_the_expression(expression: dict, message: str) -> None:
    pod = copy.deepcopy(POD)
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    terms[0]["matchExpressions"][1] = expression
    with pytest.raises(ModelError, match=r"nodeSelectorTerms\[0\]\.matchExpressions\[1\]"):
        pod_from_k8s(pod)
    with pytest.raises(ModelError, match=message):
        pod_from_k8s(pod)


def test_owner_references_that_are_not_objects_of_strings_are_ignored() -> None:
    pod = copy.deepcopy(POD)  # a list as an owner's kind was a TypeError (unhashable) looking it up
    pod["metadata"]["ownerReferences"] = [{"kind": ["ReplicaSet"], "name": "x"}, "Deployment", None]
    built = pod_from_k8s(pod)
    assert (built.kind, built.deployment, built.host_ties) == (WorkloadKind.JOB, None, ())


def test_malformed_nodes_name_the_offending_field() -> None:
    with pytest.raises(ModelError, match="metadata.name"):
        node_from_k8s({"metadata": {}})
    bad = copy.deepcopy(NODE)
    bad["status"]["allocatable"]["nvidia.com/gpu"] = "eight"
    with pytest.raises(ModelError, match="status.allocatable: nvidia.com/gpu"):
        node_from_k8s(bad)
    with pytest.raises(ModelError, match="node: expected an object"):
        node_from_k8s(["not", "a", "node"])  # type: ignore[arg-type]


def test_items_accepts_lists_bare_lists_and_single_objects() -> None:
    assert list(items({"apiVersion": "v1", "kind": "List", "items": [NODE, NODE]})) == [NODE, NODE]
    assert list(items([POD])) == [POD]
    assert list(items(POD)) == [POD]


def test_files_from_kubectl_read_back(tmp_path) -> None:
    nodes, pods = tmp_path / "nodes.json", tmp_path / "pods.json"
    nodes.write_text(json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": [NODE]}))
    pods.write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": [POD, _broken("spec.priority", "x")]}))
    assert [n.name for n in read_nodes(nodes)] == ["gpu-a100-0"]
    with pytest.raises(ValueError, match=r"pods.json: item 1: spec.priority"):
        read_pods(pods)
    pods.write_text("{not json")
    with pytest.raises(ValueError, match="pods.json: not valid JSON"):
        read_pods(pods)
