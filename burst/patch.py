"""The changes that steer a pod to its burst target, as a JSON Patch (RFC 6902) on the v1.Pod.

The admission loop applies it while the pod is still gated (scheduling gates allow changing
node selector, tolerations and annotations), or the mutating webhook returns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from burst.decide import Offer
from burst.targets import ECI
from scheduler.model.json_patch import set_entries

VIRTUAL_NODE_LABEL = ("type", "virtual-kubelet")
PROVIDER_TAINT = "virtual-kubelet.io/provider"
TARGET_LABEL = "slotwise.io/burst-target"
ECI_SPECS = "k8s.aliyun.com/eci-use-specs"
ECI_SPOT_STRATEGY = "k8s.aliyun.com/eci-spot-strategy"
ECI_SPOT_PRICE_LIMIT = "k8s.aliyun.com/eci-spot-price-limit"
ECI_SPOT_FALLBACK = "k8s.aliyun.com/eci-spot-fallback"
ECI_FAIL_STRATEGY = "k8s.aliyun.com/eci-fail-strategy"


def burst_patch(pod: Mapping[str, Any], offer: Offer, max_runtime_s: float) -> list[dict[str, Any]]:
    """The JSON Patch that sends ``pod`` (its v1.Pod object) where ``offer`` says."""
    target = offer.target
    spec = pod.get("spec") or {}
    ops = set_entries(pod, ("spec", "nodeSelector"), dict([VIRTUAL_NODE_LABEL]))
    toleration = {"key": PROVIDER_TAINT, "operator": "Equal", "value": target.provider, "effect": "NoSchedule"}
    if spec.get("tolerations"):
        ops.append({"op": "add", "path": "/spec/tolerations/-", "value": toleration})
    else:
        ops.append({"op": "add", "path": "/spec/tolerations", "value": [toleration]})
    # The budget reserved spend for max_runtime: the pod may not run longer.
    deadline = int(max_runtime_s)
    if spec.get("activeDeadlineSeconds") is not None:
        deadline = min(deadline, int(spec["activeDeadlineSeconds"]))
    ops.append({"op": "add", "path": "/spec/activeDeadlineSeconds", "value": deadline})
    ops += set_entries(pod, ("metadata", "labels"), {TARGET_LABEL: target.name})
    if target.kind == ECI:
        annotations = {ECI_SPECS: ",".join(s.name for s in offer.specs), ECI_FAIL_STRATEGY: target.fail_strategy}
        if offer.spot:
            limit = max(s.spot_price or s.price for s in offer.specs)
            annotations |= {ECI_SPOT_STRATEGY: "SpotWithPriceLimit", ECI_SPOT_PRICE_LIMIT: f"{limit:.3f}",
                            ECI_SPOT_FALLBACK: "true" if target.spot_fallback else "false"}
        ops += set_entries(pod, ("metadata", "annotations"), annotations)
    return ops
