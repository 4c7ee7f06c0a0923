"""Measuring a forward pass without running it, for `plan` (ActionMesh's stages) and `plan
--prompt` (the video model's): FLOPs, the peak of the storages it allocates, the H100 figures the
time estimate uses, and how the figures are printed.

A pass runs on torch's "fake" tensors (shapes, dtypes and a device, no memory): nothing is
computed, only shapes flow, so a 1.4B-parameter transformer over 32k tokens traces in well under a
second on a CPU. Attention runs as the fused kernel a GPU uses (flash attention for bf16,
memory-efficient for fp32), never as an explicit attention matrix.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

GiB = 1 << 30

# Dense peak throughput of an H100 SXM (NVIDIA's data sheet): bf16 tensor cores, and plain fp32
# (torch's default matmul precision does not use TF32); HBM3 bandwidth. An H200 has the same
# compute and more, faster memory.
H100_PEAK_FLOPS = {"bf16": 989.4e12, "fp32": 66.9e12}
H100_BANDWIDTH = 3.35e12  # bytes/s
# CUDA context + allocator slack assumed on top of the tensors (typically 0.5-1 GiB).
CONTEXT_BYTES = 1 * GiB


class _FusedAttention(TorchFunctionMode):
    """scaled_dot_product_attention -> the fused kernel a GPU would run (same FLOPs, O(tokens) memory)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            # Positional (our models) or by name (diffusers' attention dispatch).
            q, k, v = (args[i] if i < len(args) else kwargs.get(name)
                       for i, name in enumerate(("query", "key", "value")))
            plain = len(args) <= 3 and kwargs.get("attn_mask") is None and not kwargs.get("is_causal") \
                and not kwargs.get("dropout_p") and not kwargs.get("enable_gqa")
            if plain and isinstance(q, FakeTensor):
                scale = kwargs.get("scale")
                if q.dtype in (torch.float16, torch.bfloat16):
                    return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, scale=scale)[0]
                return torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, False, scale=scale)[0]
        return func(*args, **kwargs)


class _LiveMemory(TorchDispatchMode):
    """Peak bytes of the storages allocated while active (views and in-place results add nothing)."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._tracked.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(a.untyped_storage()) for a in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key in inputs or key in self._tracked:  # a view of, or written into, existing memory
                continue
            nbytes = storage.nbytes()
            self._tracked.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, nbytes)
        return out


@dataclass
class Trace:
    flops: int  # of one call
    activation_bytes: int  # peak bytes the call allocates


def new_fake_mode() -> FakeTensorMode:
    # Real tensors may meet fake ones (a module's constant built at call time): they become fake.
    return FakeTensorMode(allow_non_fake_inputs=True)


def trace(fn: Callable[[], object], fake: FakeTensorMode, autocast: bool = False) -> Trace:
    """Runs fn (a forward pass on fake tensors of `fake`, its inputs made inside it) and measures
    it, under bf16 autocast when asked, in inference mode as the generate job runs its networks."""
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with fake, torch.inference_mode(), amp, FlopCounterMode(display=False) as flops, _FusedAttention(), \
            _LiveMemory() as memory:
        fn()
    return Trace(int(flops.get_total_flops()), int(memory.peak))


def _empty(*shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype)  # fake when called inside trace()


def fake_copy(module: torch.nn.Module, fake: FakeTensorMode) -> torch.nn.Module:
    """A storage-less copy of a meta module whose tensors say "cpu" (so autocast regions run).
    A parameter shared by two modules (UMT5's tied embedding) stays one parameter: Module.to_empty
    cannot swap such a one."""
    module = copy.deepcopy(module)
    made = {}
    with fake:
        for sub in module.modules():
            for name, p in sub._parameters.items():
                if p is not None:
                    if id(p) not in made:
                        made[id(p)] = torch.nn.Parameter(torch.empty_like(p, device="cpu"), p.requires_grad)
                    sub._parameters[name] = made[id(p)]
            for name, b in sub._buffers.items():
                if b is not None:
                    sub._buffers[name] = torch.empty_like(b, device="cpu")
    return module


def state_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers, what loading it puts on the device."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)



# ---------------------------------------------------------------- showing the figures


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 2 else f"{n / (1 << 20):.0f} MiB"


def _flops(n: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} FLOP"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
