"""Device, precision and memory for the generate job's stages.

Memory: each model is loaded when its stage starts and released when it ends, so only one large
model is on the device at a time. On CUDA the models run under bf16 autocast (fp16 where bf16 is
not supported; fp16 on MPS); on the CPU in float32. The same seed gives the same result on the
same device. --low-vram (about 7.2 GiB at its peak for 16 frames, `python -m backend plan --low-vram`,
so an 8 GB card runs the whole pipeline) also:

- holds the Linear layers of the two 1.4B-parameter flow transformers (TripoSG's DiT, Stage I's
  denoiser) in the autocast dtype (`load_flow_transformer`): 2.7 GiB instead of 5.4 each. Under
  autocast every Linear call casts its float32 weight and bias to that dtype anyway, so the
  products are the same, bit for bit (tests/test_low_vram_numerics.py, on the parity cases); the
  norms keep float32. The release keeps float32 weights; only where autocast is off would this
  differ, and there (the CPU) nothing is converted;
- runs the guidance batch as two passes (SplitGuidanceBatch): one half's activations at a time;
- decodes in smaller chunks (the VAE's field queries, Stage II's read-out).

What we learned from the upstream code (facebookresearch/actionmesh, read, not copied):
configs/actionmesh*.yaml's lowram preset (split CFG batch, clear the autocast cache).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from typing import Dict, Optional

from ...errors import BadInput

DEVICES = ("auto", "cuda", "mps", "cpu")
# Ours: CPU threads of the sampling loops. They call a network once per step; when its layers are
# small (activation rows x width under this), splitting each op over threads costs more than it
# saves, and far more when other work shares the cores (measured on 2 busy cores: a 64-wide DiT
# step 0.34 s on 2 threads, 0.005 s on 1; see backend.fitting.fit for the same finding). Such loops
# run on one thread; the release's networks (2 x 2048 tokens x 2048 wide and up) keep torch's count.
SMALL_LAYER_VALUES = 1 << 20


def pick_device(device: str) -> str:
    """auto -> cuda, else mps, else cpu; an explicit device must exist (BadInput otherwise)."""
    import torch

    if device not in DEVICES:
        raise BadInput(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if device == "cuda" and not has_cuda:
        raise BadInput("device 'cuda' was requested but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if device == "mps" and not has_mps:
        raise BadInput("device 'mps' was requested but torch sees no Apple GPU (MPS); use 'auto' or 'cpu'")
    return device


def autocast_dtype(dev: str):
    """The reduced precision the release runs the networks in, where the device has it."""
    import torch

    if dev == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dev == "mps":
        return torch.float16
    return None  # CPU: float32 (CPU autocast is slow and gains nothing here)


@contextlib.contextmanager
def loop_threads(dev: str, layer_values: int):
    """One CPU thread for a sampling loop over a small network (see SMALL_LAYER_VALUES)."""
    import torch

    before = torch.get_num_threads()
    if dev != "cpu" or layer_values >= SMALL_LAYER_VALUES or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hold_linear_in(model, dtype):
    """--low-vram: `model`'s Linear layers (weights and biases) converted to `dtype`, the autocast
    dtype it will run under, in place; everything else (norms, tables) keeps its dtype. Under
    autocast a Linear casts its float32 parameters to `dtype` on every call: holding them there
    gives the same products at half the memory (module docstring)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)
    return model


def load_flow_transformer(cls, folder, *, dev: str, dtype, low_vram: bool):
    """A flow transformer (ShapeDiT, TemporalDenoiser) from `folder` onto `dev`. With --low-vram
    under autocast (`dtype` not None) its Linear layers are held in `dtype` (hold_linear_in),
    converted on the CPU before the move, so the float32 copy never reaches the device."""
    model = cls.from_pretrained(folder)
    if low_vram and dtype is not None:
        hold_linear_in(model, dtype)
    return model.to(dev)


def amp(dev: str, dtype):
    import torch

    return torch.autocast(device_type=dev, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def release_memory(dev: str) -> None:
    """Frees what the last stage left (models are dropped by their owner before this)."""
    import torch

    gc.collect()
    if dev == "cuda":
        torch.cuda.empty_cache()
    elif dev == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def _peak_rss_mb() -> Optional[float]:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)  # bytes on macOS, KiB on Linux


class StageMeter:
    """Seconds and peak memory per stage, for report.json."""

    def __init__(self, dev: str):
        self.dev = dev
        self.stages: Dict[str, dict] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        import torch

        if self.dev == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        yield
        if self.dev == "cuda":
            torch.cuda.synchronize()
        entry = {"seconds": round(time.perf_counter() - started, 3)}
        if self.dev == "cuda":
            entry["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        # The process's peak resident memory so far (it cannot be reset per stage).
        entry["peak_rss_mb"] = _peak_rss_mb()
        self.stages[name] = entry


class SplitGuidanceBatch:
    """Runs a guided batch [unconditioned | conditioned] as two forward passes (--low-vram): the
    activations of one half at a time. Tensor arguments with the batch's rows are split; the
    rest (a shared diffusion time) is passed to both passes as is."""

    def __init__(self, model):
        self.model = model

    def __call__(self, first, *rest):
        import torch

        rows = first.shape[0]
        if rows % 2:
            return self.model(first, *rest)
        half = rows // 2

        def part(a, i):
            if torch.is_tensor(a) and a.ndim > 0 and a.shape[0] == rows:
                return a[i * half:(i + 1) * half]
            return a

        return torch.cat([self.model(part(first, i), *(part(a, i) for a in rest)) for i in range(2)])
