"""A stand-in for the ``pynvml`` module on machines without a GPU.

It keeps pynvml's calling conventions: the same function names and arguments, pynvml's own ctypes
structures for the results, caller-allocated ``c_nvmlGpuInstance_t`` arrays filled in place, counts
returned through ``ctypes.byref``, and ``NVMLError`` subclasses for unsupported profiles. Profile
IDs are the ones real drivers report, which differ between A100 and A30.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import pynvml

# (profile constant, profile ID, name, memory slices, instance capacity) as drivers report them.
A100_80GB_PROFILES = (
    (pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE, 19, "1g.10gb", 1, 7),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1, 20, "1g.10gb+me", 1, 1),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2, 15, "1g.20gb", 2, 4),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_2_SLICE, 14, "2g.20gb", 2, 3),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_3_SLICE, 9, "3g.40gb", 4, 2),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_4_SLICE, 5, "4g.40gb", 4, 1),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_7_SLICE, 0, "7g.80gb", 8, 1),
)
A30_PROFILES = (
    (pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE, 14, "1g.6gb", 1, 4),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1, 21, "1g.6gb+me", 1, 1),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_2_SLICE, 5, "2g.12gb", 2, 2),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1, 6, "2g.12gb+me", 2, 1),
    (pynvml.NVML_GPU_INSTANCE_PROFILE_4_SLICE, 0, "4g.24gb", 4, 1),
)


@dataclass
class FakeInstance:
    profile_id: int
    start: int
    size: int
    busy: bool = False


@dataclass
class FakeGpu:
    name: str
    profiles: tuple[tuple[int, int, str, int, int], ...] = A100_80GB_PROFILES
    mig_enabled: bool = True
    mig_capable: bool = True
    instances: list[FakeInstance] = field(default_factory=list)


class FakeNvml:
    """Module-like: pass it where the agent takes ``nvml``."""

    NVMLError = pynvml.NVMLError
    NVML_GPU_INSTANCE_PROFILE_COUNT = pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
    NVML_DEVICE_MIG_DISABLE = pynvml.NVML_DEVICE_MIG_DISABLE
    c_nvmlGpuInstance_t = pynvml.c_nvmlGpuInstance_t

    def __init__(self, gpus: list[FakeGpu]):
        self.gpus = gpus
        self.initialised = 0
        self.calls: list[str] = []

    def _error(self, code: int) -> pynvml.NVMLError:
        return pynvml.NVMLError(code)

    def _check(self) -> None:
        if self.initialised <= 0:
            raise self._error(pynvml.NVML_ERROR_UNINITIALIZED)

    # Library --------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._check()
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[str, int]:
        self._check()
        return ("gpu", index)

    def nvmlDeviceGetName(self, device: tuple[str, int]) -> str:
        return self.gpus[device[1]].name

    def nvmlDeviceGetMigMode(self, device: tuple[str, int]) -> list[int]:
        gpu = self.gpus[device[1]]
        if not gpu.mig_capable:
            raise self._error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if gpu.mig_enabled else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    # GPU instances --------------------------------------------------------------------
    def nvmlDeviceGetGpuInstanceProfileInfo(self, device: tuple[str, int], profile: int, version: int = 2):
        self.calls.append("nvmlDeviceGetGpuInstanceProfileInfo")
        for const, pid, name, slices, capacity in self.gpus[device[1]].profiles:
            if const == profile:
                info = pynvml.c_nvmlGpuInstanceProfileInfo_v2_t()
                info.id, info.sliceCount, info.instanceCount = pid, slices, capacity
                info.name = f"MIG {name}".encode()
                return info
        raise self._error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetGpuInstances(self, device, profileId, gpuInstancesRef, countRef) -> int:
        gpu = self.gpus[device[1]]
        mine = [(k, inst) for k, inst in enumerate(gpu.instances) if inst.profile_id == profileId]
        if len(mine) > len(gpuInstancesRef):
            raise self._error(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
        for slot, (k, _) in enumerate(mine):
            gpuInstancesRef[slot] = ctypes.cast(ctypes.c_void_p(self._token(device[1], k)), pynvml.c_nvmlGpuInstance_t)
        countRef._obj.value = len(mine)  # ctypes.byref(c_uint) as the real binding receives it
        return pynvml.NVML_SUCCESS

    def nvmlGpuInstanceGetInfo(self, gpuInstance):
        token = ctypes.cast(gpuInstance, ctypes.c_void_p).value
        gpu_index, k = divmod(token - 0x1000, 64)
        inst = self.gpus[gpu_index].instances[k]
        info = pynvml.c_nvmlGpuInstanceInfo_t()
        info.id, info.profileId = k + 1, inst.profile_id
        info.placement.start, info.placement.size = inst.start, inst.size
        return info

    @staticmethod
    def _token(gpu_index: int, k: int) -> int:
        return 0x1000 + gpu_index * 64 + k

    # MIG devices (one compute instance per GPU instance) ------------------------------
    def nvmlDeviceGetMaxMigDeviceCount(self, device) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device, index: int):
        gpu = self.gpus[device[1]]
        if index >= len(gpu.instances):
            raise self._error(pynvml.NVML_ERROR_NOT_FOUND)
        return ("mig", device[1], index)

    def nvmlDeviceGetGpuInstanceId(self, device) -> int:
        return device[2] + 1

    def nvmlDeviceGetComputeRunningProcesses(self, device) -> list[object]:
        busy = self.gpus[device[1]].instances[device[2]].busy
        return [object()] if busy else []
