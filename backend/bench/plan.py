"""`python -m backend plan`: what the full-size pipeline costs, worked out without weights or a GPU.

    python -m backend plan [--frames N] [--fast] [--low-vram] [--memory GiB] [--json]

Every model is built at its released size on torch's "meta" device (shapes, no storage) and each
stage's forward pass is run once on meta tensors: nothing is computed, only shapes flow, so a
1.4B-parameter transformer over 32k tokens traces in well under a second on a CPU. While it runs:

- FLOPs come from torch's `FlopCounterMode` (matmuls and attention; element-wise ops are not
  counted, a few percent at these sizes);
- activation memory is the peak of the bytes held by tensors the pass allocates, tracked by a
  dispatch mode that adds each new storage's size and subtracts it when the storage is freed;
- attention runs as the fused kernel a GPU uses (flash attention for bf16, memory-efficient for
  fp32): on meta, torch would otherwise pick the math path and hold the full attention matrix,
  which a GPU run never does.

Stages (the release's settings): background removal (RMBG-1.4 at 1024 x 1024 per frame; not with
--alpha, frames that carry their own masks); Stage 0, TripoSG's DINOv2 on the anchor frame, then its flow
transformer for 100 steps (50 with --fast) with classifier-free guidance, then the shape VAE's
decoder at the extraction resolution; DINOv2-large on every frame; Stage I, the temporal denoiser
over windows of 16 frames sliding by 15, 30 steps (15 with --fast), guidance; Stage II, the
temporal autoencoder, one self-attention pass per target frame (as upstream does), reading
every vertex of the clean-up mesh.

Memory of a configuration = the weights resident while a stage runs + (under bf16 autocast)
the cast copy of the running model autocast caches + that stage's activation peak, maximised
over stages, plus a fixed allowance for the CUDA context and allocator slack. "default" keeps
every model on the device and batches the guidance pair; "low-vram" (the release's --low_ram)
loads one model at a time and runs the guidance pair as two passes. These are estimates from
the models' shapes; the release's own figures are printed beside them.

Why here (backend/bench) and not backend/pipelines: a pipeline is a job the service runs on a
user's data; this reads no data and writes nothing, and like the benchmarks it prints figures
next to a reference (the release's).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import weakref
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ..errors import BackendError, BadInput

GiB = 1 << 30

# The release's own figures (facebookresearch/actionmesh README: 16 frames on an H100).
RELEASE = dict(device="H100", memory_gib_default=32.0, memory_gib_low_ram=12.0, seconds_default=75.0,
               seconds_fast=45.0, frames="16-31")

# The release's settings.
STAGE0_STEPS, STAGE0_STEPS_FAST = 100, 50
STAGE1_STEPS, STAGE1_STEPS_FAST = 30, 15
WINDOW, STRIDE = 16, 15
LATENT_TOKENS = 2048
IMAGE_SIZE = 224  # DINOv2 input after the preprocessor's centre crop: 1 + 16 x 16 tokens
RMBG_SIZE = 1024  # RMBG-1.4's input (backend.preprocessing.background.MODEL_INPUT_SIZE)
DEFAULT_VERTICES = 20_000  # the clean-up decimates to 40k faces: about 20k vertices
DEFAULT_RESOLUTION = 256  # our extraction grid (backend.geometry.extract)
QUERY_CHUNK = 65_536  # extraction's query chunk (backend.geometry.extract.DEFAULT_CHUNK_SIZE)

# Dense peak throughput of an H100 SXM (NVIDIA's data sheet): bf16 tensor cores, and plain fp32
# (torch's default matmul precision does not use TF32). Only for a compute-bound lower bound.
H100_PEAK_FLOPS = {"bf16": 989.4e12, "fp32": 66.9e12}
# CUDA context + allocator slack assumed on top of the tensors (typically 0.5-1 GiB).
CONTEXT_BYTES = 1 * GiB


# ---------------------------------------------------------------- tracing on meta


class _FusedAttention(TorchFunctionMode):
    """scaled_dot_product_attention -> the fused kernel a GPU would run (same FLOPs, O(tokens) memory)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            plain = len(args) <= 3 and kwargs.get("attn_mask") is None and not kwargs.get("is_causal") \
                and not kwargs.get("dropout_p")
            if plain and q.device.type == "meta":
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


def trace(fn: Callable[[], object]) -> Trace:
    """Runs fn (a forward pass on meta tensors) and measures it."""
    with torch.no_grad(), FlopCounterMode(display=False) as flops, _FusedAttention(), _LiveMemory() as memory:
        fn()
    return Trace(int(flops.get_total_flops()), int(memory.peak))


def _meta(*shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(*shape, device="meta", dtype=dtype)


# ---------------------------------------------------------------- the models


def _build_models() -> Dict[str, torch.nn.Module]:
    """The six distinct architectures at full size on the meta device, float32."""
    from ..hub.architectures import build_dinov2_on_meta, build_on_meta
    from ..models.rmbg import BriaRMBG

    models = {name: build_on_meta(name) for name in
              ("triposg_dit", "triposg_vae", "actionmesh_denoiser", "actionmesh_autoencoder")}
    # TripoSG's image_encoder_dinov2 and facebook/dinov2-large are both DINOv2-large: one meta
    # module serves both traces (the weights differ, the shapes do not).
    models["dinov2_large"] = build_dinov2_on_meta()
    with torch.device("meta"):
        models["rmbg"] = BriaRMBG().eval()
    return models


MODEL_LABELS = {
    "triposg_dit": "TripoSG flow transformer (transformer/)",
    "triposg_vae": "TripoSG shape VAE (vae/)",
    "triposg_image_encoder": "TripoSG DINOv2-large (image_encoder_dinov2/)",
    "dinov2_large": "DINOv2-large (facebook/dinov2-large)",
    "actionmesh_denoiser": "ActionMesh Stage I denoiser (denoiser/)",
    "actionmesh_autoencoder": "ActionMesh Stage II autoencoder (autoencoder/)",
    "rmbg": "RMBG-1.4 background removal (briaai/RMBG-1.4)",
}


# ---------------------------------------------------------------- stages


@dataclass
class Stage:
    name: str
    models: Tuple[str, ...]  # what must be on the device while it runs
    calls: int  # forward passes (a guidance pair batched = one call)
    flops: int  # all calls
    activation_bytes: Dict[str, int]  # "<dtype>/<batching>" -> peak of one call
    detail: str
    extra: dict = field(default_factory=dict)


@dataclass
class PlanSettings:
    frames: int = 16
    fast: bool = False
    resolution: int = DEFAULT_RESOLUTION
    vertices: int = DEFAULT_VERTICES
    alpha: bool = False  # the frames carry usable alpha masks: no background removal

    @property
    def stage0_steps(self) -> int:
        return STAGE0_STEPS_FAST if self.fast else STAGE0_STEPS

    @property
    def stage1_steps(self) -> int:
        return STAGE1_STEPS_FAST if self.fast else STAGE1_STEPS


def extraction_queries(resolution: int) -> Tuple[int, int]:
    """(coarse-to-fine, dense) query counts of our extraction at `resolution`, measured on the
    reference shape of `python -m backend.bench.extract` (thin legs and a thin ring: more queries
    than most shapes)."""
    from ..geometry.extract import extract_mesh
    from .extract import creature_sdf

    stats = extract_mesh(creature_sdf, resolution=resolution)[2]
    return stats["queries"], stats["dense_queries"]


# A pass builder: (models of one dtype, that dtype, batch size) -> the forward pass to trace.
PassBuilder = Callable[[Dict[str, torch.nn.Module], torch.dtype, int], Callable[[], object]]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


class StageTracer:
    """Traces passes for each activation dtype and each way of running classifier-free guidance:
    "cfg2", the guidance pair in one batch of 2 (default), and "cfg1", one half at a time
    (low-vram). Passes without guidance run at batch 1 in both."""

    def __init__(self, models_by_dtype: Dict[str, Dict[str, torch.nn.Module]]):
        self.models_by_dtype = models_by_dtype
        fp32 = models_by_dtype["fp32"]
        # Input sizes, from the models themselves.
        self.latent_channels = fp32["triposg_vae"].config["latent_channels"]
        dino = fp32["dinov2_large"].config
        self.context_dim = dino.hidden_size
        self.image_tokens = 1 + (IMAGE_SIZE // dino.patch_size) ** 2  # CLS + patches

    def measure(self, build: PassBuilder, guided: bool = False) -> Tuple[int, Dict[str, int]]:
        """(FLOPs of one full call, {"<dtype>/<cfg>": activation peak})."""
        batches = (("cfg2", 2), ("cfg1", 1)) if guided else (("cfg2", 1), ("cfg1", 1))
        flops, memory = 0, {}
        for dname, models in self.models_by_dtype.items():
            for bname, batch in batches:
                t = trace(build(models, DTYPES[dname], batch))
                memory[f"{dname}/{bname}"] = t.activation_bytes
                if bname == "cfg2":  # a whole call (both halves of a guidance pair)
                    flops = t.flops
        return flops, memory

    # ------------------------------------------------------------ passes

    def rmbg(self, m, dt, b):
        return lambda: m["rmbg"].first_side_output(_meta(1, 3, RMBG_SIZE, RMBG_SIZE, dtype=dt))

    def dinov2(self, images: int) -> PassBuilder:
        return lambda m, dt, b: (lambda: m["dinov2_large"](
            pixel_values=_meta(images, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=dt)))

    def dit(self, m, dt, b):
        return lambda: m["triposg_dit"](_meta(b, LATENT_TOKENS, self.latent_channels, dtype=dt),
                                        torch.full((b,), 500.0, device="meta"),
                                        _meta(b, self.image_tokens, self.context_dim, dtype=dt))

    def vae_memory(self, m, dt, b):
        return lambda: m["triposg_vae"].decode_latents(_meta(1, LATENT_TOKENS, self.latent_channels, dtype=dt))

    def vae_query(self, m, dt, b):
        vae = m["triposg_vae"]
        memory = _meta(1, LATENT_TOKENS, vae.decoder.proj_query.out_features, dtype=dt)
        return lambda: vae.query(memory, _meta(1, QUERY_CHUNK, 3, dtype=dt))

    def denoiser(self, frames: int) -> PassBuilder:
        def build(m, dt, b):
            return lambda: m["actionmesh_denoiser"](
                _meta(b, frames, LATENT_TOKENS, self.latent_channels, dtype=dt),
                _meta(b, frames, self.image_tokens, self.context_dim, dtype=dt),
                torch.arange(frames, device="meta").expand(b, frames), 500.0, torch.zeros(b, frames, device="meta"))
        return build

    def autoencoder(self, frames: int, vertices: int) -> PassBuilder:
        # One target time per pass: upstream re-runs the self-attention stack for each target.
        def build(m, dt, b):
            return lambda: m["actionmesh_autoencoder"](
                _meta(1, frames, LATENT_TOKENS, self.latent_channels, dtype=dt), _meta(1, vertices, 6, dtype=dt),
                0.0, torch.zeros(1, 1, device="meta"), frame_index=torch.arange(frames, device="meta")[None])
        return build


def _max_each(a: Dict[str, int], b: Dict[str, int]) -> Dict[str, int]:
    return {k: max(a.get(k, 0), v) for k, v in b.items()}


def plan_stages(settings: PlanSettings, models_by_dtype: Dict[str, Dict[str, torch.nn.Module]]) -> List[Stage]:
    """Every stage of the pipeline, in order, with its calls, FLOPs and activation peaks."""
    from ..models.windows import window_plan

    tracer = StageTracer(models_by_dtype)
    n = settings.frames
    windows = window_plan(n, WINDOW, STRIDE)
    stages: List[Stage] = []

    # Background removal: one frame at a time at 1024 x 1024 (as the release), for frames without alpha.
    if not settings.alpha:
        f, mem = tracer.measure(tracer.rmbg)
        stages.append(Stage("background_removal", ("rmbg",), n, f * n, mem, f"RMBG-1.4, {n} frames at {RMBG_SIZE}^2"))

    # Stage 0: the anchor frame's image tokens (TripoSG's own DINOv2; the negative is zeros) ...
    f, mem = tracer.measure(tracer.dinov2(1))
    stages.append(Stage("stage0_image", ("triposg_image_encoder",), 1, f, mem, "DINOv2-large, anchor frame"))
    # ... flow-transformer sampling with the guidance pair [zeros | image tokens] ...
    f, mem = tracer.measure(tracer.dit, guided=True)
    steps = settings.stage0_steps
    stages.append(Stage("stage0_dit", ("triposg_dit",), steps, f * steps, mem,
                        f"{steps} steps x guidance pair, {LATENT_TOKENS} tokens"))
    # ... and the VAE decoder: self-attention over the latents once, then chunks of query points.
    f_memory, mem_memory = tracer.measure(tracer.vae_memory)
    f_chunk, mem_chunk = tracer.measure(tracer.vae_query)
    queries, dense = extraction_queries(settings.resolution)
    per_query = f_chunk / QUERY_CHUNK
    stages.append(Stage("stage0_vae_decode", ("triposg_vae",), 1 + -(-queries // QUERY_CHUNK),
                        int(f_memory + per_query * queries), _max_each(mem_memory, mem_chunk),
                        f"{settings.resolution}^3 grid, coarse-to-fine: {queries:,} queries "
                        f"({queries / dense:.1%} of dense)",
                        dict(queries=queries, dense_queries=dense, dense_flops=int(f_memory + per_query * dense))))

    # Every frame's image tokens for Stage I (facebook/dinov2-large), one batch.
    f, mem = tracer.measure(tracer.dinov2(n))
    stages.append(Stage("frame_features", ("dinov2_large",), 1, f, mem, f"DINOv2-large, {n} frames"))

    # Stage I: per window, every step runs the denoiser on the guidance pair [context zeroed | context].
    steps = settings.stage1_steps
    by_size = {size: tracer.measure(tracer.denoiser(size), guided=True) for size in {len(w.frames) for w in windows}}
    total, peak = 0, {}
    for win in windows:
        f, mem = by_size[len(win.frames)]
        total, peak = total + f * steps, _max_each(peak, mem)
    stages.append(Stage("stage1_denoiser", ("actionmesh_denoiser",), steps * len(windows), total, peak,
                        f"{len(windows)} window(s) of {'/'.join(str(len(w.frames)) for w in windows)} frames x "
                        f"{steps} steps x guidance pair"))

    # Stage II: per window, one pass per target frame, reading every vertex.
    by_size = {size: tracer.measure(tracer.autoencoder(size, settings.vertices))
               for size in {len(w.frames) for w in windows}}
    total, peak, calls = 0, {}, 0
    for win in windows:
        f, mem = by_size[len(win.frames)]
        total, peak, calls = total + f * len(win.targets), _max_each(peak, mem), calls + len(win.targets)
    stages.append(Stage("stage2_autoencoder", ("actionmesh_autoencoder",), calls, total, peak,
                        f"{calls} target frames x {settings.vertices:,} vertices"))
    return stages


# ---------------------------------------------------------------- configurations


@dataclass
class Configuration:
    device: str
    dtype: str  # "bf16" (bf16 weights), "bf16-autocast" (fp32 weights, bf16 compute: the release), "fp32"
    mode: str  # "default" or "low-vram"
    peak_bytes: int = 0
    peak_stage: str = ""
    compute_seconds: float = 0.0  # compute-bound lower bound (GPU: H100 peak; CPU: measured matmul rate)
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.device} {self.dtype}, {self.mode}"


# Fastest first: bf16 tensor cores beat fp32; keeping every model resident and batching the guidance
# pair is never slower than lazy loading and two half passes; bf16 weights skip autocast's casts.
GPU_CONFIGURATIONS = [("bf16", "default"), ("bf16-autocast", "default"), ("bf16", "low-vram"),
                      ("bf16-autocast", "low-vram"), ("fp32", "default"), ("fp32", "low-vram")]
RELEASE_CONFIGURATIONS = {("bf16-autocast", "default"): "release default",
                          ("bf16-autocast", "low-vram"): "release --low_ram"}


def _weight_bytes(parameters: int, dtype: str) -> int:
    return parameters * (2 if dtype == "bf16" else 4)


def estimate(config: Configuration, stages: List[Stage], params: Dict[str, int], total_flops: int,
             cpu_flops_per_second: float) -> Configuration:
    """Fills in the peak memory and compute time of `config`."""
    act_dtype = "fp32" if config.dtype == "fp32" else "bf16"
    batching = "cfg1" if config.mode == "low-vram" else "cfg2"
    resident_all = sum(_weight_bytes(p, config.dtype) for p in params.values())
    best = (0, "")
    for stage in stages:
        running = sum(params[m] for m in stage.models)
        weights = resident_all if config.mode == "default" else _weight_bytes(running, config.dtype)
        cache = 2 * running if config.dtype == "bf16-autocast" else 0  # autocast's bf16 copies
        peak = weights + cache + stage.activation_bytes[f"{act_dtype}/{batching}"]
        best = max(best, (peak, stage.name))
    config.peak_bytes = best[0] + (CONTEXT_BYTES if config.device == "cuda" else 0)
    config.peak_stage = best[1]
    if config.device == "cuda":
        config.compute_seconds = total_flops / H100_PEAK_FLOPS[act_dtype]
    else:
        config.compute_seconds = total_flops / cpu_flops_per_second
    config.note = RELEASE_CONFIGURATIONS.get((config.dtype, config.mode), "")
    return config


def cpu_matmul_rate(size: int = 768, repeats: int = 3, rounds: int = 4) -> float:
    """This machine's fp32 matmul FLOP/s (a fraction of a second), for the CPU time estimate: the
    best of a few rounds, so a busy moment on a shared machine does not set it."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    a @ b  # warm-up: thread pool, caches
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * size ** 3 * repeats / max(time.perf_counter() - start, 1e-9))
    return best


def fastest_fitting(configs: List[Configuration], memory_gib: float) -> Optional[Configuration]:
    limit = memory_gib * GiB
    return next((c for c in configs if c.device == "cuda" and c.peak_bytes <= limit), None)


# ---------------------------------------------------------------- the plan


def make_plan(settings: PlanSettings, memory_gib: Optional[float] = None, low_vram: bool = False) -> dict:
    if settings.frames < 2:
        raise BadInput(f"--frames must be at least 2 (one known frame and one to make), got {settings.frames}")
    if settings.resolution < 8 or settings.resolution > 1024:
        raise BadInput(f"--resolution must be in 8..1024, got {settings.resolution}")
    if settings.vertices < 1:
        raise BadInput(f"--vertices must be positive, got {settings.vertices}")
    if memory_gib is not None and memory_gib <= 0:
        raise BadInput(f"--memory must be positive (GiB), got {memory_gib}")
    started = time.perf_counter()
    fp32 = _build_models()
    # A meta module copies for free; copying beats building twice (DINOv2's constructor is slow).
    models_by_dtype = {"bf16": {k: copy.deepcopy(m).to(torch.bfloat16) for k, m in fp32.items()}, "fp32": fp32}
    from ..hub.architectures import count_parameters

    base = models_by_dtype["fp32"]
    params = {key: count_parameters(base[key]) for key in
              ("triposg_dit", "triposg_vae", "actionmesh_denoiser", "actionmesh_autoencoder", "dinov2_large", "rmbg")}
    params["triposg_image_encoder"] = params["dinov2_large"]
    if settings.alpha:  # never loaded
        del params["rmbg"]
    params = {k: params[k] for k in MODEL_LABELS if k in params}
    stages = plan_stages(settings, models_by_dtype)
    total_flops = sum(s.flops for s in stages)
    cpu_rate = cpu_matmul_rate()
    configs = [estimate(Configuration("cuda", d, m), stages, params, total_flops, cpu_rate)
               for d, m in GPU_CONFIGURATIONS]
    configs.append(estimate(Configuration("cpu", "fp32", "default"), stages, params, total_flops, cpu_rate))
    choice = fastest_fitting(configs, memory_gib) if memory_gib is not None else None
    selected = next(c for c in configs if c.device == "cuda" and c.dtype == "bf16-autocast"
                    and c.mode == ("low-vram" if low_vram else "default"))
    return dict(
        settings=dict(asdict(settings), stage0_steps=settings.stage0_steps, stage1_steps=settings.stage1_steps,
                      low_vram=low_vram, memory_gib=memory_gib),
        models=[dict(key=k, label=MODEL_LABELS[k], parameters=p, bytes_fp32=p * 4, bytes_bf16=p * 2)
                for k, p in params.items()],
        stages=[dict(name=s.name, detail=s.detail, models=list(s.models), calls=s.calls, flops=s.flops,
                     activation_bytes=s.activation_bytes, **s.extra) for s in stages],
        total_flops=total_flops,
        cpu_flops_per_second=cpu_rate,
        configurations=[dict(asdict(c), label=c.label) for c in configs],
        selected=dict(asdict(selected), label=selected.label),
        choice=None if choice is None else dict(asdict(choice), label=choice.label),
        release=RELEASE,
        seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------- printing


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 2 else f"{n / (1 << 20):.0f} MiB"


def _flops(n: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} FLOP"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_plan(plan: dict) -> None:
    s = plan["settings"]
    rel = plan["release"]
    print(f"ActionMesh at full size: {s['frames']} frames, Stage 0 {s['stage0_steps']} steps, Stage I "
          f"{s['stage1_steps']} steps{' (--fast)' if s['fast'] else ''}; traced without weights in "
          f"{plan['seconds']:.1f} s")
    print("\nmodel                                           parameters    fp32 weights  bf16 weights")
    for m in plan["models"]:
        print(f"{m['label']:<48}{m['parameters'] / 1e6:>9.1f} M  {_gib(m['bytes_fp32']):>12}  "
              f"{_gib(m['bytes_bf16']):>12}")
    print("\nstage               calls  FLOPs         activations (bf16, guidance batched | split)  what")
    for st in plan["stages"]:
        act = st["activation_bytes"]
        both = f"{_gib(act['bf16/cfg2'])} | {_gib(act['bf16/cfg1'])}"
        print(f"{st['name']:<20}{st['calls']:>5}  {_flops(st['flops']):<13} {both:<46}{st['detail']}")
    print(f"{'total':<27}{_flops(plan['total_flops'])}")
    print("\nconfiguration                  peak memory   compute-bound time   (peak stage)")
    for c in plan["configurations"]:
        where = "H100 peak" if c["device"] == "cuda" else "this CPU"
        note = f"  <- {c['note']}" if c["note"] else ""
        print(f"{c['label']:<31}{_gib(c['peak_bytes']):>11}   {_duration(c['compute_seconds']):>8} at {where:<9}"
              f"  ({c['peak_stage']}){note}")
    print(f"\nrelease ({rel['device']}): {rel['memory_gib_default']:.0f} GB default, "
          f"{rel['memory_gib_low_ram']:.0f} GB with --low_ram; ~{rel['seconds_default']:.0f} s default, "
          f"~{rel['seconds_fast']:.0f} s --fast ({rel['frames']} frames). Its times include loading, mesh "
          "extraction and clean-up, which the compute-bound times above leave out.")
    if not 16 <= s["frames"] <= 31:
        print(f"note: the release takes {rel['frames']} frames; {s['frames']} is outside that range (the windows "
              "of 16 sliding by 15 cover any length the same way)")
    sel = plan["selected"]
    print(f"this run's mode ({sel['label']}): about {_gib(sel['peak_bytes'])} at its peak ({sel['peak_stage']})")
    if s["memory_gib"] is not None:
        choice = plan["choice"]
        if choice:
            print(f"fastest that fits {s['memory_gib']:g} GiB: {choice['label']} (about {_gib(choice['peak_bytes'])})")
        else:
            cpu = plan["configurations"][-1]
            print(f"nothing fits {s['memory_gib']:g} GiB on a GPU: run on the CPU (about {_gib(cpu['peak_bytes'])} "
                  f"of RAM, {_duration(cpu['compute_seconds'])} of compute at this machine's rate)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=16, help="video frames (the release takes 16-31)")
    p.add_argument("--fast", action="store_true", help="the release's --fast: 50 / 15 steps")
    p.add_argument("--low-vram", action="store_true", help="headline the release's --low_ram mode")
    p.add_argument("--memory", type=float, default=None, metavar="GiB",
                   help="accelerator memory: report the fastest device/dtype/mode that fits it")
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, help="extraction grid (cells per axis)")
    p.add_argument("--vertices", type=int, default=DEFAULT_VERTICES, help="vertices Stage II tracks")
    p.add_argument("--alpha", action="store_true",
                   help="the frames have alpha masks (PNGs with transparency): no background removal")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    args = p.parse_args(argv)
    try:
        plan = make_plan(PlanSettings(args.frames, args.fast, args.resolution, args.vertices, args.alpha),
                         memory_gib=args.memory, low_vram=args.low_vram)
    except BackendError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan))
    else:
        print_plan(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
