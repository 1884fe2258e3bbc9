"""Real-shaped Kubernetes objects and extender requests, as kube-scheduler and the API server write them.

The Pod is what ``json.Marshal`` of a ``v1.Pod`` looks like after admission (defaults filled in,
empty structs as ``{}``, ``creationTimestamp`` as RFC 3339); the Node is a p4de-like 8-GPU node with
capacity, allocatable and the labels a managed cluster puts on it.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

A100 = "NVIDIA-A100-SXM4-80GB"
H100 = "NVIDIA-H100-80GB-HBM3"


def pod(name: str = "trainer-0", namespace: str = "ml", *, gpus: int = 1, cpu: str = "4", memory: str = "16Gi",
        annotations: dict[str, str] | None = None, uid: str | None = None, node_name: str = "",
        phase: str = "Pending", gpu_in: str = "limits") -> dict[str, Any]:
    resources: dict[str, Any] = {"limits": {"memory": memory}, "requests": {"cpu": cpu, "memory": memory}}
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
        if gpu_in == "both":
            resources["requests"]["nvidia.com/gpu"] = str(gpus)
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "generateName": name.rsplit("-", 1)[0] + "-",
            "namespace": namespace,
            "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}/{name}")),
            "resourceVersion": "48213",
            "creationTimestamp": "2026-08-20T09:14:07Z",
            "labels": {"app": "trainer", "batch.kubernetes.io/job-name": "trainer"},
            "annotations": dict(annotations or {}),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "trainer",
                                 "uid": "0b6f3e0e-5d7a-4a57-9a43-3c1f2d1f9f11", "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-08-20T09:14:07Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}],
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x2k9p", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}],
            "containers": [{
                "name": "trainer",
                "image": "nvcr.io/nvidia/pytorch:25.08-py3",
                "command": ["python", "train.py"],
                "resources": resources,
                "volumeMounts": [{"name": "kube-api-access-x2k9p", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "gpufleet-scheduler",
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {"phase": phase, "qosClass": "Burstable"},
    }
    if node_name:
        obj["spec"]["nodeName"] = node_name
    return obj


def node(name: str, *, gpus: int = 8, product: str = A100, instance_type: str = "p4de.24xlarge",
         capacity_type: str = "on-demand", annotations: dict[str, str] | None = None, cpu: str = "96",
         memory: str = "1176502328Ki", zone: str = "us-east-1a", resource_version: str = "7731") -> dict[str, Any]:
    capacity = {"cpu": cpu, "ephemeral-storage": "209702892Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                "memory": memory, "nvidia.com/gpu": str(gpus), "pods": "250"}
    allocatable = dict(capacity, cpu="95690m" if cpu == "96" else cpu, memory="1163868216Ki" if memory ==
                       "1176502328Ki" else memory, **{"ephemeral-storage": "192188443124"})
    return {
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
            "resourceVersion": resource_version,
            "creationTimestamp": "2026-08-19T22:01:44Z",
            "labels": {
                "beta.kubernetes.io/arch": "amd64", "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "node.kubernetes.io/instance-type": instance_type,
                "topology.kubernetes.io/region": zone[:-1], "topology.kubernetes.io/zone": zone,
                "karpenter.sh/capacity-type": capacity_type,
                "karpenter.sh/nodepool": "gpu",
                "nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.present": "true",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                            **(annotations or {})},
        },
        "spec": {"providerID": f"aws:///us-east-1a/i-0{abs(hash(name)) % 10**16:016d}",
                 "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]},
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-08-20T09:13:51Z",
                            "lastTransitionTime": "2026-08-19T22:02:31Z", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.12.7"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "ec2c7a", "systemUUID": "ec2c7a", "bootID": "b1", "kernelVersion": "6.1.0",
                         "osImage": "Bottlerocket OS 1.30.0", "containerRuntimeVersion": "containerd://1.7.27",
                         "kubeletVersion": "v1.37.2", "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": "amd64"},
        },
    }


def names_args(p: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """ExtenderArgs with nodeCacheCapable: true (Nodes is sent as null)."""
    return {"Pod": p, "Nodes": None, "NodeNames": list(names)}


def nodes_args(p: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """ExtenderArgs with nodeCacheCapable: false (NodeNames is sent as null)."""
    return {"Pod": p, "Nodes": {"metadata": {}, "items": copy.deepcopy(nodes)}, "NodeNames": None}


def binding_args(p: dict[str, Any], node_name: str) -> dict[str, Any]:
    meta = p["metadata"]
    return {"PodName": meta["name"], "PodNamespace": meta["namespace"], "PodUID": meta["uid"], "Node": node_name}


def namespace(name: str, placement: str | None = None) -> dict[str, Any]:
    annotations = {"gpufleet.io/placement": placement} if placement else {}
    return {"metadata": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, "ns/" + name)),
                         "resourceVersion": "12", "labels": {"kubernetes.io/metadata.name": name},
                         "annotations": annotations},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
