"""Every annotation and label name gpufleet reads or writes, in one place. No I/O here.

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

# ---- Kubernetes' own -------------------------------------------------------------------------
GPU_RESOURCE = "nvidia.com/gpu"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # on EndpointSlices
