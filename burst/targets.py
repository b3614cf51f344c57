"""Burst configuration: where work may overflow to, at what price, and when.

Two kinds of target: a virtual-kubelet node pool (idle capacity of other clusters, exposed as a
virtual node with label ``type=virtual-kubelet`` and taint ``virtual-kubelet.io/provider``), and
Alibaba Cloud ECI, with a catalog of instance types (vCPU, memory, GPU model and count, hourly
price, spot price when spot is offered). Parsed from YAML with every problem named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from quota.config import parse_duration, validation_problems
from scheduler.model.cluster import WorkloadKind
from scheduler.model.resources import CPU, MEMORY, ResourceError, parse_amount
from scheduler.model.safe_yaml import load_yaml

VIRTUAL_KUBELET = "virtual-kubelet"
ECI = "eci"
#: At most this many instance types go into one ``k8s.aliyun.com/eci-use-specs`` list.
MAX_SPECS = 5

Quantity = StrictStr | StrictInt | StrictFloat


class BurstConfigError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid burst configuration: " + "; ".join(problems))


class InstanceTypeDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    cpu: Quantity
    memory: Quantity
    gpu: int = Field(default=0, ge=0)
    gpu_model: str | None = None
    price: float = Field(gt=0, description="pay-as-you-go, per hour")
    spot_price: float | None = Field(default=None, gt=0, description="per hour; absent: no spot offer")


class TargetDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    type: Literal["virtual-kubelet", "eci"]
    provider: str = Field(min_length=1, description="the virtual-kubelet.io/provider taint value")
    startup: Quantity = "60s"
    # virtual-kubelet pools: what one pod may take, and the price per vCPU-hour and GPU-hour
    max_pods: int | None = Field(default=None, ge=0)
    cpu_hour_price: float = Field(default=0.0, ge=0)
    gpu_hour_price: float = Field(default=0.0, ge=0)
    gpus: bool = False
    # ECI
    instance_types: list[InstanceTypeDocument] = Field(default_factory=list)
    spot: bool = False
    spot_fallback: bool = True
    fail_strategy: Literal["fail-back", "fail-fast"] = "fail-back"
    #: Simulation only: the chance that an instance type asked for is out of stock.
    stock_out: float = Field(default=0.0, ge=0, le=1)


class BurstDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Overflow what has waited this long and cannot be served locally within it.
    threshold: Quantity = "30m"
    #: Work kinds that may overflow; notebooks and serving only when listed.
    kinds: list[Literal["job", "notebook", "serving"]] = Field(default_factory=lambda: ["job"])
    #: The longest a burst pod may run (set as activeDeadlineSeconds): spend is reserved for it.
    max_runtime: Quantity = "8h"
    targets: list[TargetDocument] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InstanceType:
    name: str
    cpu_milli: int
    memory: int
    gpus: int
    gpu_model: str | None
    price: float
    spot_price: float | None


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    kind: str  # VIRTUAL_KUBELET | ECI
    provider: str
    startup_s: float
    max_pods: int | None = None
    cpu_hour_price: float = 0.0
    gpu_hour_price: float = 0.0
    gpus: bool = False
    instance_types: tuple[InstanceType, ...] = ()
    spot: bool = False
    spot_fallback: bool = True
    fail_strategy: str = "fail-back"
    stock_out: float = 0.0


@dataclass(frozen=True, slots=True)
class BurstConfig:
    threshold_s: float = 1800.0
    kinds: frozenset[WorkloadKind] = frozenset({WorkloadKind.JOB})
    max_runtime_s: float = 8 * 3600.0
    targets: tuple[Target, ...] = ()


def _seconds(value: Any, where: str, problems: list[str]) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return 0.0


def _amount(resource: str, value: Any, where: str, problems: list[str]) -> int:
    try:
        return parse_amount(resource, value)
    except ResourceError as exc:
        problems.append(f"{where}: {exc}")
        return 0


def compile_burst(doc: BurstDocument) -> BurstConfig:
    problems: list[str] = []
    targets = []
    names = set()
    for t in doc.targets:
        where = f"target {t.name}"
        if t.name in names:
            problems.append(f"{where}: the name is used twice")
        names.add(t.name)
        types = []
        for it in t.instance_types:
            at = f"{where}: instance type {it.name}"
            if it.gpu and not it.gpu_model:
                problems.append(f"{at}: gpu_model is required with gpu")
            if it.spot_price is not None and it.spot_price > it.price:
                problems.append(f"{at}: spot_price ({it.spot_price:g}) is above price ({it.price:g})")
            types.append(InstanceType(it.name, _amount(CPU, it.cpu, f"{at}: cpu", problems),
                                      _amount(MEMORY, it.memory, f"{at}: memory", problems), it.gpu, it.gpu_model,
                                      it.price, it.spot_price))
        if t.type == ECI and not types:
            problems.append(f"{where}: an ECI target needs instance_types")
        if t.type == VIRTUAL_KUBELET and types:
            problems.append(f"{where}: instance_types are for ECI targets; a virtual-kubelet pool prices per vCPU-hour")
        if t.spot and not any(it.spot_price for it in types):
            problems.append(f"{where}: spot is on but no instance type has a spot_price")
        targets.append(Target(t.name, t.type, t.provider, _seconds(t.startup, f"{where}: startup", problems),
                              t.max_pods, t.cpu_hour_price, t.gpu_hour_price, t.gpus, tuple(types), t.spot,
                              t.spot_fallback, t.fail_strategy, t.stock_out))
    config = BurstConfig(_seconds(doc.threshold, "threshold", problems), frozenset(WorkloadKind(k) for k in doc.kinds),
                         _seconds(doc.max_runtime, "max_runtime", problems), tuple(targets))
    if config.max_runtime_s <= 0:
        problems.append("max_runtime: must be above zero (burst spend is reserved for it)")
    if problems:
        raise BurstConfigError(problems)
    return config


def burst_from_yaml(text: str) -> BurstConfig:
    try:
        data = load_yaml(text) or {}
        return compile_burst(BurstDocument.model_validate(data))
    except yaml.YAMLError as exc:
        raise BurstConfigError([f"not valid YAML: {exc}"]) from None
    except ValidationError as exc:
        raise BurstConfigError(validation_problems(exc)) from None
