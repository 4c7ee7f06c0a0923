"""`check`: what this backend can run here: torch, the device, its memory, and which modes fit.

Modes, as the add-on offers them:
  default   the learned pipeline (`generate`: one model on the GPU at a time, bf16 autocast)
  low_vram  the same with the flow transformers' Linear layers in bf16 and the guidance batch
            split (`generate --low-vram`)
  fit_only  fitting a given mesh to the frames (`generate --method fit`): CPU, no models

A learned mode fits when the GPU's free memory (its total where free is not known) holds the peak
`python -m backend plan` computes for it: generate's bf16-autocast configurations, traced at
full size without weights (backend/pipelines/plan.py). The trace takes some seconds, so it runs once
per backend process and per frame count. The CPU can run the learned pipeline too (float32; the
plan's CPU figure), but at hours per clip: it is reported, not offered as a mode.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Dict, Optional, Tuple

from ..jobs import JobContext

GiB = 1 << 30
_PLAN_CACHE: Dict[int, Dict[str, Tuple[int, str]]] = {}


def ram_bytes() -> Tuple[Optional[int], Optional[int]]:
    """(total, available) bytes of system memory; None where this platform does not say."""
    total = available = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if sys.platform == "win32":
        import ctypes

        class MemoryStatus(ctypes.Structure):
            _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                        ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                        ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                        ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                        ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

        status = MemoryStatus()
        status.dwLength = ctypes.sizeof(MemoryStatus)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            total, available = int(status.ullTotalPhys), int(status.ullAvailPhys)
    return total, available


def probe_device() -> dict:
    """The device the pipelines pick with device="auto", its name and memory."""
    import torch

    info = dict(device="cpu", device_name=platform.processor() or platform.machine() or "CPU",
                gpu_total_bytes=None, gpu_free_bytes=None, cuda_available=False, mps_available=False,
                cuda_build=torch.version.cuda)
    if torch.cuda.is_available():
        info.update(cuda_available=True, device="cuda", device_name=torch.cuda.get_device_name(0),
                    gpu_count=torch.cuda.device_count())
        try:
            free, total = torch.cuda.mem_get_info(0)
            info.update(gpu_free_bytes=int(free), gpu_total_bytes=int(total))
        except RuntimeError:
            info["gpu_total_bytes"] = int(torch.cuda.get_device_properties(0).total_memory)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        info.update(mps_available=True, device="mps", device_name=f"Apple {platform.machine()} GPU (MPS)")
        try:
            total = int(torch.mps.recommended_max_memory())
            info.update(gpu_total_bytes=total, gpu_free_bytes=max(0, total - int(torch.mps.driver_allocated_memory())))
        except (AttributeError, RuntimeError):
            pass
    return info


def plan_needs(frames: int) -> Dict[str, Tuple[int, str]]:
    """{mode: (peak bytes, configuration label)} from the plan, for default / low_vram / cpu."""
    if frames not in _PLAN_CACHE:
        from .plan import PlanSettings, make_plan

        configs = make_plan(PlanSettings(frames=frames))["configurations"]

        def pick(device, dtype, mode):
            c = next(c for c in configs if (c["device"], c["dtype"], c["mode"]) == (device, dtype, mode))
            return int(c["peak_bytes"]), c["label"]

        _PLAN_CACHE[frames] = {"default": pick("cuda", "bf16-autocast", "default"),
                               "low_vram": pick("cuda", "bf16-autocast", "low-vram"),
                               "cpu": pick("cpu", "fp32", "default")}
    return _PLAN_CACHE[frames]


def _gib(n: Optional[int]) -> str:
    return "unknown" if n is None else f"{n / GiB:.1f} GiB"


def fitting_modes(info: dict, needs: Dict[str, Tuple[int, str]]) -> list:
    """Which modes fit the probed device, each with its memory need and a one-line reason."""
    gpu = info["device"] in ("cuda", "mps")
    budget = info["gpu_free_bytes"] if info["gpu_free_bytes"] is not None else info["gpu_total_bytes"]
    modes = []
    for mode, label in (("default", "Default"), ("low_vram", "Low VRAM")):
        need, config = needs[mode]
        if not gpu:
            fits, why = False, f"needs a CUDA or MPS GPU with about {_gib(need)}; this backend sees none"
        elif budget is None:
            fits, why = True, f"needs about {_gib(need)} of GPU memory; this GPU does not report its memory"
        elif budget >= need:
            fits, why = True, f"needs about {_gib(need)}; {_gib(budget)} free on {info['device_name']}"
        else:
            fits, why = False, f"needs about {_gib(need)}; only {_gib(budget)} free on {info['device_name']}"
        modes.append(dict(mode=mode, label=label, fits=fits, needs_bytes=need, configuration=config, reason=why))
    modes.append(dict(mode="fit_only", label="Fit only", fits=True, needs_bytes=None, configuration="cpu",
                      reason="fits a given mesh to the frames on the CPU; no models needed"))
    return modes


def run_check(ctx: JobContext, *, frames: int = 16) -> dict:
    """torch, the device and its memory, CPUs and RAM, and which modes fit (module docstring)."""
    ctx.progress("check", 0, 2, "probing torch and the devices")
    import torch

    info = probe_device()
    total_ram, free_ram = ram_bytes()
    ctx.progress("check", 1, 2, "estimating what each mode needs (traced once per backend session)")
    needs = plan_needs(int(frames))
    modes = fitting_modes(info, needs)
    cpu_need, _ = needs["cpu"]
    ctx.progress("check", 2, 2, "done")
    return dict(
        torch=torch.__version__, python=platform.python_version(), platform=platform.platform(),
        executable=sys.executable, cpu_count=os.cpu_count(), ram_total_bytes=total_ram,
        ram_available_bytes=free_ram, frames=int(frames), **info, modes=modes,
        fitting=[m["mode"] for m in modes if m["fits"]],
        recommended=next(m["mode"] for m in modes if m["fits"]),
        cpu_learned=dict(needs_bytes=cpu_need, fits_ram=total_ram is not None and total_ram >= cpu_need,
                         note="the learned pipeline on the CPU (float32) works but takes hours per clip"),
    )


__all__ = ["fitting_modes", "probe_device", "ram_bytes", "run_check"]
