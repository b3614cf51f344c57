"""The node agent: reads the real MIG layout through NVML and reports it to the control plane.

Runs on each GPU node (a DaemonSet with the NVIDIA driver mounted). Profile IDs differ between
GPU models, so they are never taken as identity: the agent asks NVML for every GPU instance
profile the device supports (``nvmlDeviceGetGpuInstanceProfileInfo``) and names each instance by
the profile info whose ID it carries. An instance is in use when a process runs on its MIG device.

``nvml`` is the ``pynvml`` module (package nvidia-ml-py) or anything with its functions.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx

from mig.report import NodeReport


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _profiles(nvml: Any, device: Any) -> dict[int, tuple[str, int]]:
    """Profile ID -> (profile name, instance capacity) for every profile the device supports."""
    out: dict[int, tuple[str, int]] = {}
    for const in range(nvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
        try:
            info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(device, const)
        except nvml.NVMLError:  # not supported on this GPU
            continue
        out[info.id] = (_text(info.name).removeprefix("MIG ").strip(), info.instanceCount)
    return out


def _busy_instances(nvml: Any, device: Any) -> set[int]:
    """GPU instance IDs with at least one process on their MIG device."""
    busy: set[int] = set()
    for k in range(nvml.nvmlDeviceGetMaxMigDeviceCount(device)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(device, k)
        except nvml.NVMLError:  # no MIG device at this index
            continue
        if nvml.nvmlDeviceGetComputeRunningProcesses(mig):
            busy.add(nvml.nvmlDeviceGetGpuInstanceId(mig))
    return busy


def _instances(nvml: Any, device: Any) -> list[dict[str, Any]]:
    busy = _busy_instances(nvml, device)
    found = []
    for profile_id, (name, capacity) in _profiles(nvml, device).items():
        handles = (nvml.c_nvmlGpuInstance_t * max(capacity, 1))()
        count = ctypes.c_uint(0)
        nvml.nvmlDeviceGetGpuInstances(device, profile_id, handles, ctypes.byref(count))
        for k in range(count.value):
            info = nvml.nvmlGpuInstanceGetInfo(handles[k])
            found.append({"profile": name, "start": info.placement.start, "size": info.placement.size,
                          "in_use": info.id in busy})
    return sorted(found, key=lambda i: i["start"])


def read_node(node: str, nvml: Any | None = None) -> NodeReport:
    """The layout of every MIG-capable GPU on this node, as NVML reports it; raises ValueError
    (pydantic's ValidationError) when NVML reports something the catalog rejects."""
    nvml = nvml if nvml is not None else _pynvml()
    nvml.nvmlInit()
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            device = nvml.nvmlDeviceGetHandleByIndex(index)
            product = _text(nvml.nvmlDeviceGetName(device)).replace(" ", "-")  # as GPU Feature Discovery labels it
            try:
                current, _pending = nvml.nvmlDeviceGetMigMode(device)
            except nvml.NVMLError:  # not MIG-capable
                continue
            enabled = current == nvml.NVML_DEVICE_MIG_ENABLE
            gpus.append({"index": index, "product": product, "mig_enabled": enabled,
                         "instances": _instances(nvml, device) if enabled else []})
    finally:
        nvml.nvmlShutdown()
    return NodeReport.model_validate({"node": node, "gpus": gpus})


def _pynvml() -> ModuleType:
    import pynvml

    return pynvml


class NvmlUnavailable(RuntimeError):
    """NVML cannot start here: no NVIDIA driver, or its library is not mounted."""


def check_nvml(nvml: Any | None = None) -> None:
    """Start and stop NVML once, so that a node without it fails at once rather than every round."""
    nvml = nvml if nvml is not None else _pynvml()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML cannot start ({exc}): run the agent on a GPU node with the NVIDIA driver "
                              "and its libnvidia-ml library") from None
    nvml.nvmlShutdown()


def report_url(control_plane: str, node: str) -> str:
    return f"{control_plane.rstrip('/')}/mig/nodes/{node}"


def post(report: NodeReport, control_plane: str, token: str, client: httpx.Client | None = None) -> None:
    """POST the report; raises ``httpx.HTTPStatusError`` with the server's message on a refusal."""
    own = client is None
    client = client or httpx.Client(timeout=10.0)
    try:
        response = client.post(report_url(control_plane, report.node), json=report.model_dump(),
                               headers={"Authorization": f"Bearer {token}"})
        if response.is_error:
            detail = response.json().get("detail", response.text) if response.headers.get(
                "content-type", "").startswith("application/json") else response.text
            raise httpx.HTTPStatusError(f"{response.status_code}: {detail}", request=response.request, response=response)
    finally:
        if own:
            client.close()


def run(node: str, control_plane: str, token: Callable[[], str], interval: float, *, nvml: Any | None = None,
        rounds: int | None = None, sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = print) -> None:
    """Report every ``interval`` seconds (``rounds`` times, or for ever); a failed round (the
    control plane, or NVML, say while a GPU resets) is logged and retried at the next one.
    ``token`` is read at each round: a projected ServiceAccount token is rotated in its file."""
    nvml = nvml if nvml is not None else _pynvml()
    done = 0
    while rounds is None or done < rounds:
        try:
            post(read_node(node, nvml), control_plane, token())
            log(f"reported {node} to {report_url(control_plane, node)}")
        except (httpx.HTTPError, ValueError, OSError, nvml.NVMLError) as exc:
            log(f"report failed: {exc}")
        done += 1
        if rounds is None or done < rounds:
            sleep(interval)
