"""Every annotation and label name gpufleet reads or writes, in one place, and the capacity type a
node's labels say. No I/O here.

Users type these (``kubectl annotate pod X gpufleet.io/keep-until=...``), so a name never changes once
released; a new meaning gets a new name.
"""

from __future__ import annotations

PREFIX = "gpufleet.io/"

# ---- reclaim: what users set -------------------------------------------------------------------
#: On a namespace or a pod (pod wins): off (default), report, notify, scale-to-zero, evict.
RECLAIM = "gpufleet.io/reclaim"
#: RFC 3339 time; until then the pod is never touched (the snooze).
KEEP_UNTIL = "gpufleet.io/keep-until"
#: Karpenter's opt-out, honoured too: "true" means never touched.
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"

# ---- reclaim: what the controller writes --------------------------------------------------------
#: On a pod: RFC 3339 time of the first idle sample of the idle run that the notice is about.
IDLE_SINCE = "gpufleet.io/idle-since"
#: On a pod: RFC 3339 time the notice was given (the action comes a notice period later).
NOTICE_AT = "gpufleet.io/reclaim-notice-at"
#: On a reclaimed Deployment/StatefulSet/ReplicaSet/Job: the replica count before (scale) or "suspend".
RECLAIMED_REPLICAS = "gpufleet.io/reclaimed-replicas"
#: On a reclaimed workload: RFC 3339 time of the action.
RECLAIMED_AT = "gpufleet.io/reclaimed-at"
#: On a reclaimed workload: the action's idempotency key, ``<pod uid>@<idle-since>``.
RECLAIM_KEY = "gpufleet.io/reclaim-key"
#: On a reclaimed workload: GPUs the action freed (for reclaimed GPU-seconds).
RECLAIMED_GPUS = "gpufleet.io/reclaimed-gpus"
#: On the controller's Lease: recent actions (JSON) so a new leader keeps the budget.
RECLAIM_LEDGER = "gpufleet.io/reclaim-ledger"

# ---- scheduling -------------------------------------------------------------------------------
#: On a pod, written by the extender's bind: comma-separated GPU indexes of the node.
GPU_IDS = "gpufleet.io/gpu-ids"
#: On a pod or namespace: the extender's placement opt-in.
PLACEMENT = "gpufleet.io/placement"
#: Extended resource of GPU shares (1000 per GPU), and the pod annotation asking for one.
GPU_MILLI = "gpufleet.io/gpu-milli"

#: On a pod: "true" lets it run on spot capacity without the interruption penalty.
INTERRUPTIBLE = "gpufleet.io/interruptible"
#: On a node: USD per hour for the whole node, overriding the price catalog.
PRICE_PER_HOUR = "gpufleet.io/price-per-hour"
#: On a node: the GPU model in the scheduler's own naming (the local cluster's fake nodes carry it).
GPU_MODEL_LABEL = "gpufleet.io/gpu-model"
#: On a pod, written by the device plugin: the GPU UUIDs it handed the container.
GPU_ASSIGNED = "gpufleet.io/gpu-assigned"
#: On the local cluster's trace pods: which replay they belong to.
REPLAY_LABEL = "gpufleet.io/replay"

# ---- Kubernetes', the clouds' and NVIDIA's -----------------------------------------------------
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
LEGACY_INSTANCE_TYPE_LABEL = "beta.kubernetes.io/instance-type"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
#: Capacity type: Karpenter's label (the one the local cluster sets) and the clouds' own.
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
EKS_CAPACITY_TYPE_LABEL = "eks.amazonaws.com/capacityType"
GKE_SPOT_LABEL = "cloud.google.com/gke-spot"
GKE_PREEMPTIBLE_LABEL = "cloud.google.com/gke-preemptible"
AZURE_PRIORITY_LABEL = "kubernetes.azure.com/scalesetpriority"
SPOT = "spot"
ON_DEMAND = "on-demand"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # on EndpointSlices


def capacity_type(labels: dict[str, str]) -> str:
    """Normalised capacity type ("spot", "on-demand", "reserved", "" when unknown) from the cloud and
    autoscaler labels in use today."""
    value = labels.get(CAPACITY_TYPE_LABEL)
    if value:
        return value.lower()
    value = labels.get(EKS_CAPACITY_TYPE_LABEL)
    if value:
        return {"SPOT": SPOT, "ON_DEMAND": ON_DEMAND, "CAPACITY_BLOCK": "reserved"}.get(value.upper(), value.lower())
    if labels.get(GKE_SPOT_LABEL, "").lower() == "true" or labels.get(GKE_PREEMPTIBLE_LABEL, "").lower() == "true":
        return SPOT
    value = labels.get(AZURE_PRIORITY_LABEL)
    if value:
        return SPOT if value.lower() == "spot" else ON_DEMAND
    return ""
