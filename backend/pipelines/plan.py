"""`python -m backend plan`: what the full-size pipeline costs, worked out without weights or a GPU.

    python -m backend plan [--frames N] [--fast] [--low-vram] [--memory GiB] [--prompt [--image]] [--json]

Every model is built at its released size without storage (torch's "fake" tensors: shapes, dtypes
and a device, no memory; backend.pipelines.tracing) and each stage's forward pass is run once as the generate job runs it:
nothing is computed, only shapes flow, so a 1.4B-parameter transformer over 32k tokens traces in
well under a second on a CPU. While it runs:

- FLOPs come from torch's `FlopCounterMode` (matmuls and attention; element-wise ops are not
  counted, a few percent at these sizes);
- activation memory is the peak of the bytes held by tensors the pass allocates, tracked by a
  dispatch mode that adds each new storage's size and subtracts it when the storage is freed;
- the pass runs under the precision the pipeline gives it (bf16 autocast for the flow
  transformers, the shape VAE and Stage II on a GPU, whose own autocast-off regions then stay
  float32; DINOv2 and RMBG-1.4 in float32), inside `inference_mode` as the job does (where
  autocast keeps no cache of cast weights). The fake device is the CPU, whose autocast casts the
  same layers (Linear, matmul, attention) to bf16 as CUDA's does;
- attention runs as the fused kernel a GPU uses (flash attention for bf16, memory-efficient for
  fp32), never as an explicit attention matrix.

Stages (the release's settings): background removal (RMBG-1.4 at 1024 x 1024 per frame; not with
--alpha, frames that carry their own masks); Stage 0, TripoSG's DINOv2 on the anchor frame, then its
flow transformer for 100 steps (50 with --fast) with classifier-free guidance, then the shape VAE's
decoder at the extraction resolution (512, as the pipeline); DINOv2-large on every frame; Stage I,
the temporal denoiser over windows of 16 frames sliding by 15, 30 steps (15 with --fast), guidance;
Stage II, the temporal autoencoder, one self-attention pass per target frame (as upstream does),
reading every vertex of the clean-up mesh in chunks.

Configurations. `generate` (default): one model on the device at a time (each stage loads its
model and frees it), float32 weights under bf16 autocast, the guidance pair in one batch.
`generate --low-vram`: the same, plus the flow transformers' Linear layers held in bf16
(backend.pipelines.generate.runtime.hold_linear_in, the function the pipeline calls), the guidance
pair as two passes and smaller decoding chunks. Memory of a configuration = the running stage's
weights in that layout + its activation peak, maximised over stages, plus a fixed allowance for
the CUDA context and allocator slack. Time: per call, the longer of its FLOPs at the device's
peak and reading its weights once at the device's memory bandwidth (the part that grows when the
guidance pair runs as two passes), summed; model loading, extraction's grid work and the clean-up
are left out. For comparison with the release's published figures, its own two modes: every model
resident with autocast's cache of bf16 weight copies ("release default"), and one model at a time,
guidance split, cache cleared per block ("release --low_ram"). These are estimates from the models'
shapes.

Why here (backend/pipelines): it traces the pipelines' own stages, and `check` (the GPU check a
user runs) reads its memory plan; benchmarks and training sit above the pipelines and may import
it, not the other way round (and they do not ship in the extension).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from ..errors import BackendError, BadInput
from .generate import anchor as _anchor
from .generate import temporal as _temporal
from .generate.runtime import hold_linear_in
from .tracing import (CONTEXT_BYTES, H100_BANDWIDTH, H100_PEAK_FLOPS, GiB, _empty, _flops, _gib, duration, fake_copy,
                      new_fake_mode, state_bytes, trace)


# The release's own figures (facebookresearch/actionmesh README: 16 frames on an H100).
RELEASE = dict(device="H100", memory_gib_default=32.0, memory_gib_low_ram=12.0, seconds_default=75.0,
               seconds_fast=45.0, frames="16-31")

# The pipeline's settings (the release's steps and windows; our chunks), read from the pipeline itself.
STAGE0_STEPS, STAGE0_STEPS_FAST = _anchor.STAGE0_STEPS, _anchor.FAST_STAGE0_STEPS
STAGE1_STEPS, STAGE1_STEPS_FAST = _temporal.STAGE1_STEPS, _temporal.FAST_STAGE1_STEPS
WINDOW, STRIDE = _temporal.WINDOW, _temporal.SLIDE
LATENT_TOKENS = 2048
IMAGE_SIZE = 224  # DINOv2 input after the preprocessor's centre crop: 1 + 16 x 16 tokens
RMBG_SIZE = 1024  # RMBG-1.4's input (backend.preprocessing.background.MODEL_INPUT_SIZE)
DEFAULT_VERTICES = 20_000  # the clean-up decimates to 40k faces: about 20k vertices
DEFAULT_RESOLUTION = _anchor.EXTRACT_RESOLUTION  # what generate extracts at with the released models

# What --low-vram must fit: an 8 GB card (RTX 3060 Ti / 4060 class) runs the whole pipeline.
LOW_VRAM_TARGET_GIB = 8.0


# ---------------------------------------------------------------- the models


def _build_models() -> Dict[str, torch.nn.Module]:
    """The six distinct architectures at full size on the meta device, float32."""
    from ..hub.architectures import build_dinov2_on_meta, build_on_meta
    from ..models.rmbg import BriaRMBG

    models = {name: build_on_meta(name) for name in
              ("triposg_dit", "triposg_vae", "actionmesh_denoiser", "actionmesh_autoencoder")}
    # TripoSG's image_encoder_dinov2 and facebook/dinov2-large are both DINOv2-large: one module
    # serves both traces (the weights differ, the shapes do not).
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
# The models --low-vram holds in bf16 (their Linear layers): the two 1.4B-parameter flow transformers.
FLOW_TRANSFORMERS = ("triposg_dit", "actionmesh_denoiser")


# ---------------------------------------------------------------- how a stage runs


@dataclass(frozen=True)
class Variant:
    """How the generate job runs the networks in one of its modes."""

    name: str
    autocast: bool  # bf16 autocast for the flow transformers, VAE and Stage II (on a GPU)
    split_guidance: bool  # the guidance pair as two passes (SplitGuidanceBatch)
    low_vram: bool  # the flow transformers' Linear layers in bf16; the low-vram chunks

    @property
    def vae_chunk(self) -> int:
        return _anchor.LOW_VRAM_QUERY_CHUNK if self.low_vram else _anchor.QUERY_CHUNK

    @property
    def stage2_chunk(self) -> int:
        return _temporal.LOW_VRAM_STAGE2_QUERY_CHUNK if self.low_vram else _temporal.STAGE2_QUERY_CHUNK

    def stage2_targets(self, frames: int) -> int:
        """Target frames per Stage II self-attention pass (temporal.stage2_positions' rule)."""
        if self.low_vram:
            return 1
        return max(1, _temporal.STAGE2_TOKEN_BUDGET // (frames * (LATENT_TOKENS + 1)))


VARIANTS = {
    "gpu": Variant("gpu", autocast=True, split_guidance=False, low_vram=False),
    "low-vram": Variant("low-vram", autocast=True, split_guidance=True, low_vram=True),
    "cpu": Variant("cpu", autocast=False, split_guidance=False, low_vram=False),
}


@dataclass
class Stage:
    name: str
    models: Tuple[str, ...]  # what must be on the device while it runs
    calls: Dict[str, int]  # variant -> forward passes
    flops: int  # all calls (the same in every variant: splitting or chunking moves work, adds none)
    activation_bytes: Dict[str, int]  # variant -> peak of one call
    weight_bytes: Dict[str, int]  # variant -> bytes of the running models in that variant's layout
    bf16: bool  # runs under bf16 autocast on a GPU (else float32)
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


@functools.lru_cache(maxsize=8)
def extraction_queries(resolution: int) -> Tuple[int, int]:
    """(coarse-to-fine, dense) query counts of our extraction at `resolution`, measured on the
    reference shape of `python -m backend.bench.extract` (thin legs and a thin ring: more queries
    than most shapes)."""
    from ..geometry.extract import extract_mesh
    from ..synthetic.sdf import creature_sdf

    stats = extract_mesh(creature_sdf, resolution=resolution, bounds=_anchor.EXTRACT_BOUNDS)[2]
    return stats["queries"], stats["dense_queries"]


class StageTracer:
    """Traces each stage's passes in every variant: its models in the variant's layout, its
    batch (a guidance pair batched, or one half), its chunks, its precision."""

    def __init__(self, fake, models: Dict[str, Dict[str, torch.nn.Module]]):
        self.fake = fake
        self.models = models  # variant -> key -> fake module
        fp32 = models["cpu"]
        self.latent_channels = fp32["triposg_vae"].config["latent_channels"]
        dino = fp32["dinov2_large"].config
        self.context_dim = dino.hidden_size
        self.image_tokens = 1 + (IMAGE_SIZE // dino.patch_size) ** 2  # CLS + patches

    def run(self, keys: Tuple[str, ...], build, *, guided: bool = False, bf16: bool = True) -> Tuple[int, dict, dict]:
        """build(models, variant, batch) -> the pass. -> (FLOPs of one whole call, {variant:
        activation peak of one call}, {variant: bytes of the models `keys` in its layout})."""
        flops, memory, weights = 0, {}, {}
        for name, variant in VARIANTS.items():
            batch = 1 if (guided and variant.split_guidance) or not guided else 2
            t = trace(build(self.models[name], variant, batch), self.fake, autocast=bf16 and variant.autocast)
            memory[name] = t.activation_bytes
            weights[name] = sum(state_bytes(self.models[name][k]) for k in keys)
            if name == "gpu":  # a whole call (both halves of a guidance pair)
                flops = t.flops
        return flops, memory, weights

    # ------------------------------------------------------------ passes

    def rmbg(self, m, v, b):
        return lambda: m["rmbg"].first_side_output(_empty(1, 3, RMBG_SIZE, RMBG_SIZE))

    def dinov2(self, images: int):
        return lambda m, v, b: (lambda: m["dinov2_large"](pixel_values=_empty(images, 3, IMAGE_SIZE, IMAGE_SIZE)))

    def dit(self, m, v, b):
        return lambda: m["triposg_dit"](_empty(b, LATENT_TOKENS, self.latent_channels), torch.full((b,), 500.0),
                                        _empty(b, self.image_tokens, self.context_dim))

    def vae_memory(self, m, v, b):
        return lambda: m["triposg_vae"].decode_latents(_empty(1, LATENT_TOKENS, self.latent_channels))

    def vae_query(self, m, v, b):
        vae = m["triposg_vae"]

        def run():
            with torch.autocast("cpu", enabled=False):  # the memory is what decode_latents returned
                memory = _empty(1, LATENT_TOKENS, vae.decoder.proj_query.out_features,
                                dtype=torch.bfloat16 if v.autocast else torch.float32)
            return vae.query(memory, _empty(1, v.vae_chunk, 3))
        return run

    def denoiser(self, frames: int):
        def build(m, v, b):
            return lambda: m["actionmesh_denoiser"](
                _empty(b, frames, LATENT_TOKENS, self.latent_channels), _empty(b, frames, self.image_tokens,
                                                                              self.context_dim),
                torch.arange(frames).expand(b, frames), 500.0, torch.zeros(b, frames))
        return build

    def autoencoder(self, frames: int, vertices: int, targets: int):
        # One pass = one self-attention stack for up to `stage2_targets` of the window's `targets`
        # target times (upstream re-runs it for each target), then the read-out over every vertex
        # in chunks.
        def build(m, v, b):
            k = min(v.stage2_targets(frames), targets)
            return lambda: m["actionmesh_autoencoder"](
                _empty(1, frames, LATENT_TOKENS, self.latent_channels), _empty(1, vertices, 6), 0.0,
                torch.zeros(1, k), frame_index=torch.arange(frames)[None], target_chunk=k,
                query_chunk=v.stage2_chunk)
        return build


def _max_each(a: Dict[str, int], b: Dict[str, int]) -> Dict[str, int]:
    return {k: max(a.get(k, 0), v) for k, v in b.items()}


def _per_variant(value) -> Dict[str, int]:
    return {name: value(v) for name, v in VARIANTS.items()}


def plan_stages(settings: PlanSettings, tracer: StageTracer) -> List[Stage]:
    """Every stage of the pipeline, in order, with its calls, FLOPs, weights and activation peaks."""
    from ..models.image_encoder import DEFAULT_BATCH_SIZE
    from ..models.windows import window_plan

    n = settings.frames
    windows = window_plan(n, WINDOW, STRIDE)
    stages: List[Stage] = []

    # Background removal: one frame at a time at 1024 x 1024 (as the release), float32, for frames
    # without alpha.
    if not settings.alpha:
        f, mem, w = tracer.run(("rmbg",), tracer.rmbg, bf16=False)
        stages.append(Stage("background_removal", ("rmbg",), _per_variant(lambda v: n), f * n, mem, w, False,
                            f"RMBG-1.4, {n} frames at {RMBG_SIZE}^2"))

    # Stage 0: the anchor frame's image tokens (TripoSG's own DINOv2, float32; the negative is zeros) ...
    f, mem, w = tracer.run(("dinov2_large",), tracer.dinov2(1), bf16=False)
    stages.append(Stage("stage0_image", ("triposg_image_encoder",), _per_variant(lambda v: 1), f, mem, w, False,
                        "DINOv2-large, anchor frame"))
    # ... flow-transformer sampling with the guidance pair [zeros | image tokens] ...
    f, mem, w = tracer.run(("triposg_dit",), tracer.dit, guided=True)
    steps = settings.stage0_steps
    stages.append(Stage("stage0_dit", ("triposg_dit",), _per_variant(lambda v: steps * (1 + v.split_guidance)),
                        f * steps, mem, w, True, f"{steps} steps x guidance pair, {LATENT_TOKENS} tokens"))
    # ... and the VAE decoder: self-attention over the latents once, then chunks of query points.
    f_memory, mem_memory, w = tracer.run(("triposg_vae",), tracer.vae_memory)
    f_chunk, mem_chunk, _ = tracer.run(("triposg_vae",), tracer.vae_query)
    queries, dense = extraction_queries(settings.resolution)
    per_query = f_chunk / VARIANTS["gpu"].vae_chunk
    stages.append(Stage("stage0_vae_decode", ("triposg_vae",),
                        _per_variant(lambda v: 1 + -(-queries // v.vae_chunk)),
                        int(f_memory + per_query * queries), _max_each(mem_memory, mem_chunk), w, True,
                        f"{settings.resolution}^3 grid, coarse-to-fine: {queries:,} queries "
                        f"({queries / dense:.1%} of dense)",
                        dict(queries=queries, dense_queries=dense, dense_flops=int(f_memory + per_query * dense))))

    # Every frame's image tokens for Stage I (facebook/dinov2-large, float32), in the encoder's batches.
    batch = min(n, DEFAULT_BATCH_SIZE)
    f, mem, w = tracer.run(("dinov2_large",), tracer.dinov2(batch), bf16=False)
    calls = -(-n // batch)
    stages.append(Stage("frame_features", ("dinov2_large",), _per_variant(lambda v: calls), int(f * n / batch),
                        mem, w, False, f"DINOv2-large, {n} frames, {batch} per pass"))

    # Stage I: per window, every step runs the denoiser on the guidance pair [context zeroed | context].
    steps = settings.stage1_steps
    by_size = {size: tracer.run(("actionmesh_denoiser",), tracer.denoiser(size), guided=True)
               for size in {len(win.frames) for win in windows}}
    total, peak = 0, {}
    for win in windows:
        f, mem, w = by_size[len(win.frames)]
        total, peak = total + f * steps, _max_each(peak, mem)
    stages.append(Stage("stage1_denoiser", ("actionmesh_denoiser",),
                        _per_variant(lambda v: steps * len(windows) * (1 + v.split_guidance)), total, peak, w, True,
                        f"{len(windows)} window(s) of {'/'.join(str(len(win.frames)) for win in windows)} frames x "
                        f"{steps} steps x guidance pair"))

    # Stage II: per window, one self-attention pass per group of target frames, reading every vertex.
    most = {}  # window size -> the most targets a window of that size has
    for win in windows:
        most[len(win.frames)] = max(most.get(len(win.frames), 1), len(win.targets))
    by_size = {size: tracer.run(("actionmesh_autoencoder",), tracer.autoencoder(size, settings.vertices, targets))
               for size, targets in most.items()}
    total, peak = 0, {}
    for win in windows:
        f, mem, w = by_size[len(win.frames)]
        per_target = f / min(VARIANTS["gpu"].stage2_targets(len(win.frames)), most[len(win.frames)])
        total, peak = total + per_target * len(win.targets), _max_each(peak, mem)
    targets = sum(len(win.targets) for win in windows)
    stages.append(Stage("stage2_autoencoder", ("actionmesh_autoencoder",),
                        _per_variant(lambda v: sum(-(-len(win.targets) // v.stage2_targets(len(win.frames)))
                                                   for win in windows)),
                        int(total), peak, w, True, f"{targets} target frames x {settings.vertices:,} vertices"))
    return stages


# ---------------------------------------------------------------- configurations


@dataclass
class Configuration:
    device: str
    dtype: str  # "bf16-autocast" (bf16 compute, autocast), "fp32"
    mode: str  # "default", "low-vram" (generate's modes); "release default", "release --low_ram"
    peak_bytes: int = 0
    peak_stage: str = ""
    compute_seconds: float = 0.0  # estimated time (GPU: H100 peak and bandwidth; CPU: measured matmul rate)
    note: str = ""
    stage_peak_bytes: Dict[str, int] = field(default_factory=dict)  # tensors only (no context allowance)
    stage_seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.device} {self.dtype}, {self.mode}"


# (device, dtype, mode, variant of the activations, what it is). Fastest first: --memory picks
# the first that fits among the ones generate can run.
CONFIGURATIONS = [
    ("cuda", "bf16-autocast", "default", "gpu", "generate"),
    ("cuda", "bf16-autocast", "low-vram", "low-vram", "generate --low-vram"),
    ("cuda", "bf16-autocast", "release default", "gpu", "the release's default, for comparison"),
    ("cuda", "bf16-autocast", "release --low_ram", "low-vram", "the release's --low_ram, for comparison"),
    ("cpu", "fp32", "default", "cpu", "generate on the CPU"),
]


def estimate(config: Configuration, variant: str, stages: List[Stage], fp32_bytes: Dict[str, int],
             cpu_flops_per_second: float) -> Configuration:
    """Fills in the peak memory and time of `config`; its stages' activations are `variant`'s."""
    release = config.mode.startswith("release")
    resident_all = sum(fp32_bytes.values())
    best = (0, "")
    for stage in stages:
        if release:  # float32 weights, as the release keeps them
            running = sum(fp32_bytes[m] for m in stage.models)
            weights = resident_all if config.mode == "release default" else running
            # Its default caches a bf16 copy of every weight autocast casts (its --low_ram clears it per block).
            cache = running // 2 if config.mode == "release default" and stage.bf16 else 0
        else:
            weights, cache = stage.weight_bytes[variant], 0
        peak = weights + cache + stage.activation_bytes[variant]
        config.stage_peak_bytes[stage.name] = peak
        best = max(best, (peak, stage.name))
        calls = stage.calls[variant]
        if config.device == "cuda":
            rate = H100_PEAK_FLOPS["bf16" if stage.bf16 else "fp32"]
            per_call = max(stage.flops / calls / rate, (weights if not release else running) / H100_BANDWIDTH)
            config.stage_seconds[stage.name] = calls * per_call
        else:
            config.stage_seconds[stage.name] = stage.flops / cpu_flops_per_second
    config.peak_bytes = best[0] + (CONTEXT_BYTES if config.device == "cuda" else 0)
    config.peak_stage = best[1]
    config.compute_seconds = sum(config.stage_seconds.values())
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
    """The first configuration generate can run on a GPU (not the release's) within memory_gib."""
    limit = memory_gib * GiB
    return next((c for c in configs if c.device == "cuda" and not c.mode.startswith("release")
                 and c.peak_bytes <= limit), None)


def pipeline_configuration(plan: dict, device: str = "cuda", low_vram: bool = False) -> dict:
    """The plan's configuration for what `generate [--low-vram]` runs on `device`."""
    mode = "low-vram" if low_vram and device == "cuda" else "default"
    return next(c for c in plan["configurations"] if c["device"] == device and c["mode"] == mode)


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
    from ..hub.architectures import count_parameters

    started = time.perf_counter()
    meta = _build_models()
    params = {key: count_parameters(meta[key]) for key in meta}
    params["triposg_image_encoder"] = params["dinov2_large"]
    fp32_bytes = {key: state_bytes(meta[key]) for key in meta}
    fp32_bytes["triposg_image_encoder"] = fp32_bytes["dinov2_large"]
    if settings.alpha:  # never loaded
        del params["rmbg"], fp32_bytes["rmbg"]
    params = {k: params[k] for k in MODEL_LABELS if k in params}
    # The layouts: float32 as loaded, and --low-vram's (the pipeline's own conversion, applied to
    # the meta modules: what it leaves in float32 stays float32 here too).
    fake = new_fake_mode()
    fp32 = {k: fake_copy(m, fake) for k, m in meta.items()}
    low = dict(fp32)
    for key in FLOW_TRANSFORMERS:
        low[key] = fake_copy(hold_linear_in(copy.deepcopy(meta[key]), torch.bfloat16), fake)
    tracer = StageTracer(fake, {"gpu": fp32, "low-vram": low, "cpu": fp32})
    stages = plan_stages(settings, tracer)
    total_flops = sum(s.flops for s in stages)
    cpu_rate = cpu_matmul_rate()
    configs = [estimate(Configuration(device, dtype, mode, note=note), variant, stages, fp32_bytes, cpu_rate)
               for device, dtype, mode, variant, note in CONFIGURATIONS]
    choice = fastest_fitting(configs, memory_gib) if memory_gib is not None else None
    plan = dict(
        settings=dict(asdict(settings), stage0_steps=settings.stage0_steps, stage1_steps=settings.stage1_steps,
                      low_vram=low_vram, memory_gib=memory_gib),
        models=[dict(key=k, label=MODEL_LABELS[k], parameters=p, bytes_fp32=p * 4, bytes_bf16=p * 2,
                     bytes_low_vram=state_bytes(low[k]) if k in low else fp32_bytes[k])
                for k, p in params.items()],
        stages=[dict(name=s.name, detail=s.detail, models=list(s.models), calls=s.calls, flops=s.flops,
                     activation_bytes=s.activation_bytes, weight_bytes=s.weight_bytes, bf16=s.bf16, **s.extra)
                for s in stages],
        total_flops=total_flops,
        cpu_flops_per_second=cpu_rate,
        configurations=[dict(asdict(c), label=c.label) for c in configs],
        choice=None if choice is None else dict(asdict(choice), label=choice.label),
        release=RELEASE,
        low_vram_target_gib=LOW_VRAM_TARGET_GIB,
    )
    plan["selected"] = pipeline_configuration(plan, low_vram=low_vram)
    plan["seconds"] = time.perf_counter() - started
    return plan


# ---------------------------------------------------------------- printing


def print_plan(plan: dict) -> None:
    s = plan["settings"]
    rel = plan["release"]
    print(f"ActionMesh at full size: {s['frames']} frames, Stage 0 {s['stage0_steps']} steps, Stage I "
          f"{s['stage1_steps']} steps{' (--fast)' if s['fast'] else ''}, extraction at {s['resolution']}^3; "
          f"traced without weights in {plan['seconds']:.1f} s")
    print("\nmodel                                           parameters    fp32 weights  --low-vram")
    for m in plan["models"]:
        print(f"{m['label']:<48}{m['parameters'] / 1e6:>9.1f} M  {_gib(m['bytes_fp32']):>12}  "
              f"{_gib(m['bytes_low_vram']):>10}")
    print("\nstage               calls  FLOPs         activations (default | --low-vram)  what")
    for st in plan["stages"]:
        act = st["activation_bytes"]
        both = f"{_gib(act['gpu'])} | {_gib(act['low-vram'])}"
        print(f"{st['name']:<20}{st['calls']['gpu']:>5}  {_flops(st['flops']):<13} {both:<36}{st['detail']}")
    print(f"{'total':<27}{_flops(plan['total_flops'])}")
    print("\nconfiguration                          peak memory   time (estimate)        (peak stage)")
    for c in plan["configurations"]:
        where = "H100 peak" if c["device"] == "cuda" else "this CPU"
        note = f"  <- {c['note']}" if c["note"] else ""
        print(f"{c['label']:<39}{_gib(c['peak_bytes']):>11}   {duration(c['compute_seconds']):>8} at {where:<9}"
              f"  ({c['peak_stage']}){note}")
    print("(time: FLOPs at peak or weights read at full bandwidth, whichever is longer, per call; loading, "
          "extraction's grid work and the clean-up are not in it)")
    print(f"\nrelease ({rel['device']}): {rel['memory_gib_default']:.0f} GB default, "
          f"{rel['memory_gib_low_ram']:.0f} GB with --low_ram; ~{rel['seconds_default']:.0f} s default, "
          f"~{rel['seconds_fast']:.0f} s --fast ({rel['frames']} frames). Its times include loading, mesh "
          "extraction and clean-up.")
    if not 16 <= s["frames"] <= 31:
        print(f"note: the release takes {rel['frames']} frames; {s['frames']} is outside that range (the windows "
              "of 16 sliding by 15 cover any length the same way)")
    sel = plan["selected"]
    default = pipeline_configuration(plan)
    print(f"this run's mode ({sel['label']}): about {_gib(sel['peak_bytes'])} at its peak ({sel['peak_stage']}), "
          f"about {duration(sel['compute_seconds'])} at H100 peak")
    if s["low_vram"]:
        extra = sel["compute_seconds"] - default["compute_seconds"]
        print(f"--low-vram against the default: {_gib(sel['peak_bytes'])} instead of {_gib(default['peak_bytes'])}, "
              f"{extra:+.1f} s of estimated time (the same FLOPs; the guidance pair's two passes read the weights "
              f"twice per step, which is all it adds); target {plan['low_vram_target_gib']:g} GiB")
    if s["memory_gib"] is not None:
        choice = plan["choice"]
        if choice:
            flag = " --low-vram" if choice["mode"] == "low-vram" else ""
            print(f"fastest that fits {s['memory_gib']:g} GiB: generate{flag} (about {_gib(choice['peak_bytes'])})")
        else:
            cpu = pipeline_configuration(plan, device="cpu")
            print(f"nothing fits {s['memory_gib']:g} GiB on a GPU: run on the CPU (about {_gib(cpu['peak_bytes'])} "
                  f"of RAM, {duration(cpu['compute_seconds'])} of compute at this machine's rate)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=16, help="video frames (the release takes 16-31)")
    p.add_argument("--fast", action="store_true", help="the release's --fast: 50 / 15 steps")
    p.add_argument("--low-vram", action="store_true",
                   help="headline generate --low-vram: one model at a time, the flow transformers' Linear layers "
                        "in bf16 (autocast's own cast, held once), the guidance pair as two passes")
    p.add_argument("--memory", type=float, default=None, metavar="GiB",
                   help="accelerator memory: report the fastest mode of generate that fits it")
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, help="extraction grid (cells per axis)")
    p.add_argument("--vertices", type=int, default=DEFAULT_VERTICES, help="vertices Stage II tracks")
    p.add_argument("--alpha", action="store_true",
                   help="the frames have alpha masks (PNGs with transparency): no background removal")
    p.add_argument("--prompt", action="store_true",
                   help="also the prompt path (generate --prompt): the video model's stages, resident and offloaded")
    p.add_argument("--image", action="store_true", help="--prompt with a first frame (the image-to-video model)")
    p.add_argument("--video-model", default=None, help="--prompt: the video model (default by --image)")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    args = p.parse_args(argv)
    try:
        plan = make_plan(PlanSettings(args.frames, args.fast, args.resolution, args.vertices, args.alpha),
                         memory_gib=args.memory, low_vram=args.low_vram)
        if args.prompt or args.image or args.video_model:
            from .plan_prompt import plan_prompt

            peaks = {mode: pipeline_configuration(plan, low_vram=mode == "low-vram")["peak_bytes"]
                     for mode in ("default", "low-vram")}
            plan["prompt"] = plan_prompt(args.frames, args.image, peaks, args.video_model)
    except BackendError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan))
    else:
        print_plan(plan)
        if "prompt" in plan:
            from .plan_prompt import print_prompt

            print_prompt(plan["prompt"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
