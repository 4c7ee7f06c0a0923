"""Generation benchmark: `generate`'s seconds (and GPU memory) per stage, beside a baseline.

    python -m backend bench generate [--models-dir DIR] [--input FRAMES] [--frames 16,31] [--json PATH]
    python -m backend bench generate --random-full [--presets default,fast,low-vram] [--scratch DIR]

The clip: a folder of frames (default ../shared/examples/panda, 16 RGBA PNGs of 512 x 512); a
longer clip plays them forward then backward (31 frames = 0..15, 14..0), so every frame count
runs on the same images.

What runs depends on what is installed:

- the released weights (facebook/ActionMesh, VAST-AI/TripoSG, facebook/dinov2-large) and a CUDA
  GPU: for each frame count, the default, --fast and --low-vram presets; seconds and peak GPU
  memory per stage (report.json's StageMeter), printed beside the release's own figures (H100,
  16 frames: ~75 s default, ~45 s fast; 32 GB default, 12 GB low-RAM: the release's README).
- small stand-ins (`python -m backend models tiny-random DIR`; recognised by their parameter
  counts, under 1 % of the released models', or forced with --tiny): the pipeline's own
  overhead on the CPU. The networks' work is cut to the least the code paths allow (1 Stage 0
  step, 1 Stage I step, a 64^3 extraction grid) and the time spent inside network calls is
  measured and taken out (a global forward hook: the time from entering an outermost
  nn.Module call to leaving it), leaving what the pipeline itself costs per stage: reading
  the frames, alpha and crop, model loading, surface extraction's grid work, the clean-up,
  Stage II's glue, writing the outputs. Baseline from the same run: the time to read the same
  frames and write an animation.npz of the same size, the floor any pipeline stands on.
- otherwise it says what is missing (each model's state and the command that fetches it, as
  `generate` would; and/or "no CUDA GPU") and exits 0: nothing to measure is not a failure.

--random-full: the released sizes without the released weights, for a GPU that can download
nothing. Every network generate loads (TripoSG's DiT, VAE and DINOv2, DINOv2-large, the Stage I
denoiser and the Stage II autoencoder) is built from the official configs with seeded random
weights and written in the released folders' layouts to a scratch folder (about 16 GB, float32 as
released, deleted afterwards); then generate runs 16 frames in each preset, and the seconds and
peak GPU memory of each stage are printed beside `python -m backend plan`'s estimate for the same
settings. Why files and not modules handed over in memory: the run then takes the path a user's
run takes (the store's checks, each stage loading its model and freeing it, --low-vram's bf16
Linear layers made at load time), which is what decides the memory this is here to measure; an
in-memory hand-over would be a second loading path, measured in place of the real one.
The one change to random weights: the shape VAE's read-out is set so that its field is a closed
blob (module `closed_field`); a random full-size VAE's field has no shape (on a 24^3 grid, 58 %
of points positive and the sign flipping between 17 % of neighbours), so extraction would
refine nearly every cell and the clean-up would get millions of faces, neither of which a real
shape costs. Without a CUDA GPU it refuses (nothing to measure, exit 0, like the rest of this
benchmark), saying how long the same work would take on this CPU (plan's FLOPs at this
machine's measured matmul rate).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .common import choices, write_json

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INPUT = REPO.parent / "shared" / "examples" / "panda"
MODEL_NAMES = ("actionmesh", "dinov2", "triposg")
# A stand-in is a model with under this fraction of the released parameter count.
SMALL_FRACTION = 0.01
# Overhead mode: the least network work every code path still runs with.
OVERHEAD_SETTINGS = dict(stage0_steps=1, stage1_steps=1, resolution=64)
PRESETS = {"default": {}, "fast": {"fast": True}, "low-vram": {"low_vram": True}}
# report.json's stage names, plus the two the job does not meter (timed here from its progress).
STAGE_ORDER = ("prepare", "stage0", "image_tokens", "stage1", "stage2", "write")
PROGRESS_STAGE = {"prepare": "prepare", "stage0": "stage0", "tokens": "image_tokens", "stage1": "stage1",
                  "stage2": "stage2", "write": "write"}


# ---------------------------------------------------------------- what is installed


def safetensors_parameters(path: Path) -> int:
    """Parameter count of a .safetensors file from its header alone (no tensor is read)."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    return sum(int(np.prod(entry["shape"], dtype=np.int64)) for key, entry in header.items() if key != "__metadata__")


def inspect_models(models_dir: Optional[str]) -> dict:
    """{"missing": [message per model not ready], "models": {name: parameters, released estimate,
    small}}. The released count is the registry's size / 4 bytes (its sizes are float32 weights
    or the files' sizes), enough to tell a stand-in from a release."""
    from ..hub import READY, get_model, open_store
    from ..hub.store import not_ready_message

    store = open_store(models_dir)
    out = {"store": store.describe(), "missing": [], "models": {}}
    for name in MODEL_NAMES:
        spec = get_model(name)
        status = store.status(spec)
        if status.state != READY:
            out["missing"].append(not_ready_message(status, models_dir))
            continue
        params = sum(safetensors_parameters(status.folder / f) for f in spec.weights_files)
        released = spec.size_bytes // 4
        out["models"][name] = {"repo_id": spec.repo_id, "parameters": params, "released_parameters": released,
                               "small": params < SMALL_FRACTION * released}
    return out


def clip_folder(source: Path, count: int, folder: Path) -> Path:
    """`count` frames from the frames in `source`, played forward, backward, forward..., as links."""
    frames = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(frames) < 2:
        raise SystemExit(f"bench generate: {source} holds fewer than 2 frames")
    cycle = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    folder.mkdir(parents=True)
    for i in range(count):
        # Zero-padded names: natural and plain sorting agree.
        (folder / f"frame_{i:04d}{frames[0].suffix}").symlink_to(frames[cycle[i % len(cycle)]].resolve())
    return folder


# ---------------------------------------------------------------- timing


class NetworkTimer:
    """Seconds spent inside outermost nn.Module calls, per pipeline stage (the stage being the
    one the job last reported progress for). CPU only: on a GPU a call returns before its
    kernels finish, so this would time the launches."""

    def __init__(self):
        self.depth = 0
        self.entered = 0.0
        self.stage = "prepare"
        self.seconds: Dict[str, float] = {}
        self.handles = []

    def __enter__(self):
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        def pre(module, args):
            if self.depth == 0:
                self.entered = time.perf_counter()
            self.depth += 1

        def post(module, args, output):
            self.depth -= 1
            if self.depth == 0:
                self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + time.perf_counter() - self.entered

        self.handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def run_once(clip: Path, out: Path, models_dir: Optional[str], *, device: str, settings: dict,
             time_networks: bool) -> dict:
    """One run_generate; -> per-stage seconds (report.json's, plus prepare and write from the
    progress events), GPU peaks where metered, network seconds where timed, and the sizes."""
    from ..jobs import JobContext
    from ..pipelines import run_generate

    marks: Dict[str, List[float]] = {}
    timer = NetworkTimer()

    def sink(stage, step, total, message):
        name = PROGRESS_STAGE.get(stage, stage)
        marks.setdefault(name, []).append(time.perf_counter())

    started = time.perf_counter()
    if time_networks:
        from ..pipelines import generate as job

        class Meter(job.StageMeter):
            """The job's own meter, also telling the timer which stage runs: progress events
            come late (Stage I reports after its first step), the meter's bounds do not."""

            @contextlib.contextmanager
            def __call__(self, name):
                timer.stage = name
                with super().__call__(name):
                    yield
                timer.stage = "write"  # what follows the last metered stage

        real = job.StageMeter
        job.StageMeter = Meter  # run_generate looks it up when it runs; restored below
        try:
            with timer:
                result = run_generate(JobContext(sink), input=str(clip), out=str(out), models_dir=models_dir,
                                      device=device, **settings)
        finally:
            job.StageMeter = real
    else:
        result = run_generate(JobContext(sink), input=str(clip), out=str(out), models_dir=models_dir,
                              device=device, **settings)
    ended = time.perf_counter()
    report = json.loads((out / "report.json").read_text())
    stages = {name: dict(entry) for name, entry in report["stages"].items()}
    # Not metered by the job: from the call's start (argument checks, model look-up) to the last
    # "prepare" event, and from the first "write" event to the call's return.
    stages["prepare"] = {"seconds": round(marks["prepare"][-1] - started, 3)}
    stages["write"] = {"seconds": round(ended - marks["write"][0], 3)}
    ordered = {k: stages[k] for k in STAGE_ORDER if k in stages}
    ordered.update({k: v for k, v in stages.items() if k not in ordered})
    if time_networks:
        for name, entry in ordered.items():
            net = timer.seconds.get(name, 0.0)
            entry["network_seconds"] = round(net, 3)
            entry["overhead_seconds"] = round(max(entry["seconds"] - net, 0.0), 3)
    peaks = [e["peak_gpu_mb"] for e in ordered.values() if "peak_gpu_mb" in e]
    return {"frames": result["frames"], "vertices": result["vertices"], "faces": result["faces"],
            "seconds": round(ended - started, 3), "peak_gpu_mb": max(peaks) if peaks else None, "stages": ordered}


def baseline_seconds(clip: Path, vertices: int, faces: int, folder: Path) -> float:
    """Read the clip's frames and write an animation.npz of the given size: the floor."""
    from ..io import read_frames
    from ..io.mesh import write_animation_npz

    started = time.perf_counter()
    frames = read_frames(str(clip))
    v = np.zeros((vertices, 3))
    f = np.zeros((faces, 3), dtype=np.int64)
    write_animation_npz(folder / "baseline.npz", v, f, np.zeros((len(frames), vertices, 3)), frames.fps)
    return round(time.perf_counter() - started, 3)


# ---------------------------------------------------------------- --random-full: released sizes, random weights


RANDOM_FULL_MODELS = ("triposg_dit", "triposg_vae", "actionmesh_denoiser", "actionmesh_autoencoder", "dinov2_large",
                      "rmbg")
# closed_field's blob: inside where cos x + cos y + cos z > BLOB_LEVEL, a rounded ball of radius
# about 0.74 in the model's [-1, 1] box (a real shape's size, not a speck or the whole box).
BLOB_LEVEL = 2.73
# The plan's stages inside each stage the job meters (report.json's names).
PLAN_STAGES = {"prepare": ("background_removal",), "stage0": ("stage0_image", "stage0_dit", "stage0_vae_decode"),
               "image_tokens": ("frame_features",), "stage1": ("stage1_denoiser",),
               "stage2": ("stage2_autoencoder",)}


def closed_field(vae) -> None:
    """Sets a shape VAE's read-out, in place, so that its field is positive inside a rounded ball
    (cos x + cos y + cos z > BLOB_LEVEL) and negative outside, whatever the latents. The last
    block's cross-attention and feed-forward write zeros into the residual (they still run, so
    their time is real); the query projection puts BLOB_LEVEL - (cos x + cos y + cos z) into one
    channel and a constant 1 into another (the layer norm then keeps that channel's sign, moving
    the zero by 1/width); the output head reads the first channel. Random weights elsewhere."""
    import torch

    embedder, decoder = vae.embedder, vae.decoder
    if not embedder.include_input or embedder.include_pi:
        raise ValueError("closed_field expects TripoSG's embedding: xyz, then sin and cos of 2^k x (no pi)")
    f = embedder.num_freqs
    dims = embedder.input_dim
    # [xyz | sin | cos], each angle block coordinate-major with frequency 2^0 first.
    cos_first = [dims + dims * f + i * f for i in range(dims)]
    last = decoder.blocks[-1]
    with torch.no_grad():
        for layer in (last.part("attn_cross").to_out[0], last.part("ff").net[-1], decoder.proj_query,
                      decoder.proj_out):
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()
        decoder.proj_query.weight[0, cos_first] = -1.0
        decoder.proj_query.bias[0] = BLOB_LEVEL
        decoder.proj_query.bias[1] = 1.0
        decoder.norm_out.weight.fill_(1.0)
        decoder.norm_out.bias.zero_()
        decoder.proj_out.weight[0, 0] = 1.0  # query() negates: positive inside


def official_configs() -> Dict[str, dict]:
    """The released networks' constructor arguments (backend.models.configs, temporal_configs;
    DINOV2_LARGE_CONFIG; RMBG-1.4's class defaults), by RANDOM_FULL_MODELS name."""
    from ..hub.architectures import DINOV2_LARGE_CONFIG
    from ..models.configs import ACTIONMESH_DENOISER_CONFIG, TRIPOSG_DIT_CONFIG, TRIPOSG_VAE_CONFIG
    from ..models.temporal_configs import ACTIONMESH_AUTOENCODER_CONFIG

    return {"triposg_dit": TRIPOSG_DIT_CONFIG, "triposg_vae": TRIPOSG_VAE_CONFIG,
            "actionmesh_denoiser": ACTIONMESH_DENOISER_CONFIG, "actionmesh_autoencoder": ACTIONMESH_AUTOENCODER_CONFIG,
            "dinov2_large": DINOV2_LARGE_CONFIG, "rmbg": {}}


def build_random_full(name: str, device="meta", seed: int = 0, config: Optional[dict] = None):
    """One network generate loads, built from `config` (default: the official one, the released
    size) with seeded random weights (torch's and transformers' own initialisation) on `device`;
    "meta" gives the shapes alone, at no cost. The shape VAE's read-out is then set by closed_field."""
    import torch

    from ..hub.architectures import OFFICIAL_MODELS

    if name not in RANDOM_FULL_MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(RANDOM_FULL_MODELS)}")
    config = official_configs()[name] if config is None else config
    torch.manual_seed(seed)
    with torch.device(device):
        if name == "dinov2_large":
            from transformers import Dinov2Config, Dinov2Model

            model = Dinov2Model(Dinov2Config(**config))
        elif name == "rmbg":
            from ..models.rmbg import BriaRMBG

            model = BriaRMBG(**config)
        else:
            model = OFFICIAL_MODELS[name][1]()[0](**config)
    if name == "triposg_vae":
        closed_field(model)
    return model.eval()


def write_random_full(root: Path, device: str = "cpu", seed: int = 0,
                      configs: Optional[Dict[str, dict]] = None) -> dict:
    """The random set in the released folders' layouts under `root` (what --models-dir expects), one
    model at a time (built on `device`, written float32 as released, freed). `configs` (default
    official_configs(): the released sizes) must agree with each other as the released ones do.
    -> {"bytes": written, "seconds": taken}."""
    import torch

    from ..hub.registry import ACTIONMESH, DINOV2, RMBG, TRIPOSG
    from ..hub.tiny import (DIFFUSERS_VERSION, DINOV2_PREPROCESSOR, MODEL_INDEX, OFFICIAL_VAE_KEYS,
                            RMBG_RELEASED_CONFIG, SCHEDULER_CONFIG, _save_dinov2, _save_weights, _write_json)

    started = time.perf_counter()
    configs = official_configs() if configs is None else configs
    root = Path(root)
    actionmesh = root / ACTIONMESH.org / ACTIONMESH.repo_name
    triposg = root / TRIPOSG.org / TRIPOSG.repo_name
    diffusers = {"_diffusers_version": DIFFUSERS_VERSION}
    vae_keys = {k: configs["triposg_vae"][k] for k in OFFICIAL_VAE_KEYS}
    # (model, folder, its config.json, weights file)
    layout = [
        ("actionmesh_denoiser", actionmesh / "denoiser", configs["actionmesh_denoiser"], "model.safetensors"),
        ("actionmesh_autoencoder", actionmesh / "autoencoder", configs["actionmesh_autoencoder"], "model.safetensors"),
        ("triposg_dit", triposg / "transformer",
         {"_class_name": "TripoSGDiTModel", **diffusers, **configs["triposg_dit"]}, "diffusion_pytorch_model.safetensors"),
        ("triposg_vae", triposg / "vae", {"_class_name": "TripoSGVAEModel", **diffusers, **vae_keys},
         "diffusion_pytorch_model.safetensors"),
    ]
    for name, folder, config, weights in layout:
        model = build_random_full(name, device, seed, configs[name])
        _write_json(folder / "config.json", config)
        _save_weights(folder / weights, model)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    _write_json(triposg / "model_index.json", MODEL_INDEX)  # no generation defaults: the release's 512^3
    _write_json(triposg / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)
    _write_json(triposg / "feature_extractor_dinov2" / "preprocessor_config.json", DINOV2_PREPROCESSOR)
    # Two DINOv2-large folders, as released (their weights differ there; their sizes do not).
    dinov2 = build_random_full("dinov2_large", device, seed, configs["dinov2_large"])
    _save_dinov2(triposg / "image_encoder_dinov2", dinov2, preprocessor=False)
    _save_dinov2(root / DINOV2.org / DINOV2.repo_name, dinov2, preprocessor=True)
    del dinov2
    # RMBG-1.4 too, for clips without alpha (the default clip has its own).
    rmbg = root / RMBG.org / RMBG.repo_name
    build_random_full("rmbg", device, seed, configs["rmbg"]).save_pretrained(rmbg)
    _write_json(rmbg / "config.json", {**RMBG_RELEASED_CONFIG, **configs["rmbg"]})
    if device == "cuda":
        torch.cuda.empty_cache()
    written = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"bytes": written, "seconds": round(time.perf_counter() - started, 1)}


def clip_has_alpha(clip: Path) -> bool:
    """Whether generate takes the clip's masks from its own alpha (no background removal), as
    generate's inputs step decides."""
    from ..io import read_frames
    from ..preprocessing import alpha_is_usable

    frames = read_frames(str(clip)).frames
    return frames.shape[-1] == 4 and all(alpha_is_usable(f[..., 3]) for f in frames)


def plan_beside(plan: dict, preset: str) -> dict:
    """plan's figures for one preset, per stage the job meters: estimated seconds (H100 peak) and
    peak tensor memory (without plan's allowance for the CUDA context, which max_memory_allocated
    does not see either)."""
    from ..pipelines.plan import CONTEXT_BYTES, pipeline_configuration

    config = pipeline_configuration(plan, low_vram=preset == "low-vram")
    stages = {}
    for job_stage, names in PLAN_STAGES.items():
        names = [n for n in names if n in config["stage_peak_bytes"]]
        if names:
            stages[job_stage] = {"seconds": round(sum(config["stage_seconds"][n] for n in names), 2),
                                 "peak_gpu_mb": round(max(config["stage_peak_bytes"][n] for n in names) / 2 ** 20, 1)}
    return {"label": config["label"], "seconds": round(config["compute_seconds"], 1),
            "peak_gpu_mb": round((config["peak_bytes"] - CONTEXT_BYTES) / 2 ** 20, 1), "stages": stages}


def cpu_refusal(frame_counts: List[int], alpha: bool) -> dict:
    """What --random-full would cost on this CPU, which has no GPU to measure on (plan's default
    preset), and what plan expects on a GPU in the default and low-vram presets."""
    from ..pipelines.plan import PlanSettings, _flops, duration, make_plan, pipeline_configuration

    estimates, parts, expected = [], [], {}
    for count in frame_counts:
        plan = make_plan(PlanSettings(frames=count, alpha=alpha))
        cpu = pipeline_configuration(plan, device="cpu")
        estimates.append({"frames": count, "seconds": cpu["compute_seconds"], "flops": plan["total_flops"],
                          "cpu_flops_per_second": plan["cpu_flops_per_second"]})
        parts.append(f"{count} frames, default preset: about {duration(cpu['compute_seconds'])} "
                     f"({_flops(plan['total_flops'])} at this machine's {plan['cpu_flops_per_second'] / 1e9:.0f} "
                     "GFLOP/s float32 matmul rate)")
        expected[count] = {preset: plan_beside(plan, preset) for preset in ("default", "low-vram")}
    message = ("no CUDA GPU (torch sees none): --random-full runs every network at the released sizes, which "
               "needs one. The same work on this CPU: " + "; ".join(parts) + " (python -m backend plan"
               + (" --alpha" if alpha else "") + ")")
    return {"message": message, "cpu_estimates": estimates, "plan": expected}


def run_random_full(frame_counts: List[int], source: Path, presets: List[str], scratch: Optional[str] = None,
                    seed: int = 0) -> dict:
    import torch

    from ..pipelines.plan import RELEASE, PlanSettings, make_plan

    results = {"mode": "random-full", "release": RELEASE, "cuda": torch.cuda.is_available(), "frames": frame_counts,
               "presets": presets, "input": str(source), "seed": seed, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench_generate_random_full_", dir=scratch) as tmp:
        root = Path(tmp)
        clips = {count: clip_folder(source, count, root / f"clip_{count}") for count in frame_counts}
        alpha = clip_has_alpha(clips[frame_counts[0]])
        if not results["cuda"]:
            refusal = cpu_refusal(frame_counts, alpha)
            results.update(mode="unavailable", missing=[refusal["message"]], cpu_estimates=refusal["cpu_estimates"],
                           plan=refusal["plan"])
            return results
        print("  writing the random full-size models ...", file=sys.stderr, flush=True)
        results["written"] = write_random_full(root / "models", device="cuda", seed=seed)
        plans: Dict[tuple, dict] = {}
        for count, clip in clips.items():
            for preset in presets:
                print(f"  {count} frames, {preset} ...", file=sys.stderr, flush=True)
                row = run_once(clip, root / f"out_{count}_{preset}", str(root / "models"), device="cuda",
                               settings=dict(PRESETS[preset], seed=seed), time_networks=False)
                row["preset"] = preset
                key = (count, preset == "fast", row["vertices"])
                if key not in plans:
                    plans[key] = make_plan(PlanSettings(frames=count, fast=preset == "fast", vertices=row["vertices"],
                                                        alpha=alpha))
                row["plan"] = plan_beside(plans[key], preset)
                results["runs"].append(row)
    return results


def random_full_table(results: dict) -> List[str]:
    lines = [f"every network at the released sizes, random weights (seed {results['seed']}); "
             f"written {results['written']['bytes'] / 1e9:.1f} GB in {results['written']['seconds']:.0f} s; "
             f"on {results.get('gpu', 'the CUDA GPU')}",
             "seconds and peak GPU memory per stage, beside python -m backend plan (compute-bound at H100 peak; "
             "peak tensors, without its 1 GiB context allowance)"]
    for r in results["runs"]:
        p = r["plan"]
        lines.append(f"{r['frames']} frames, {r['preset']} ({r['vertices']:,} vertices): {r['seconds']:.1f} s, peak "
                     f"{(r['peak_gpu_mb'] or 0) / 1024:.1f} GiB; plan ({p['label']}): {p['seconds']:.0f} s, "
                     f"{p['peak_gpu_mb'] / 1024:.1f} GiB")
        lines.append(f"    {'stage':<14}{'seconds':>9}{'plan s':>9}{'peak GiB':>10}{'plan GiB':>10}")
        for stage, e in r["stages"].items():
            est = p["stages"].get(stage, {})
            peak = f"{e['peak_gpu_mb'] / 1024:>10.2f}" if "peak_gpu_mb" in e else f"{'':>10}"
            plan_s = f"{est['seconds']:>9.1f}" if est else f"{'':>9}"
            plan_peak = f"{est['peak_gpu_mb'] / 1024:>10.2f}" if est else f"{'':>10}"
            lines.append(f"    {stage:<14}{e['seconds']:>9.1f}{plan_s}{peak}{plan_peak}")
    return lines


# ---------------------------------------------------------------- the benchmark


def run(models_dir: Optional[str], frame_counts: List[int], source: Path, tiny: bool = False) -> dict:
    import torch

    from ..pipelines.plan import RELEASE

    found = inspect_models(models_dir)
    small = tiny or any(m["small"] for m in found["models"].values())
    cuda = torch.cuda.is_available()
    results = {"store": found["store"], "models": found["models"], "release": RELEASE, "cuda": cuda,
               "frames": frame_counts, "input": str(source), "runs": []}
    missing = list(found["missing"])
    if not small and not cuda:  # the release's figures need both: say every gap at once
        missing.append("no CUDA GPU: the released models are benchmarked on one (torch sees none)")
    if missing:
        results.update(mode="unavailable", missing=missing)
        return results
    results["mode"] = "overhead" if small else "gpu"
    presets = {"overhead": OVERHEAD_SETTINGS} if small else PRESETS
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        root = Path(tmp)
        for count in frame_counts:
            clip = clip_folder(source, count, root / f"clip_{count}")
            for preset, settings in presets.items():
                print(f"  {count} frames, {preset} ...", file=sys.stderr, flush=True)
                out = root / f"out_{count}_{preset}"
                row = run_once(clip, out, models_dir, device="cpu" if small else "cuda", settings=settings,
                               time_networks=small)
                row["preset"] = preset
                row["baseline_seconds"] = baseline_seconds(clip, row["vertices"], row["faces"], root)
                results["runs"].append(row)
    return results


def table(results: dict) -> str:
    lines = [f"models: {results['store']}"] if "store" in results else []
    for name, m in results.get("models", {}).items():
        lines.append(f"  {m['repo_id']:<24}{m['parameters']:>15,} parameters"
                     + (" (small stand-in)" if m["small"] else ""))
    if results["mode"] == "unavailable":
        lines.append("nothing to measure:")
        lines += [f"  - {m}" for m in results["missing"]]
        for count, presets in results.get("plan", {}).items():
            lines.append(f"what python -m backend plan expects on a GPU for {count} frames (peak tensors, "
                         "compute-bound at H100 peak): " + "; ".join(
                             f"{preset} {p['peak_gpu_mb'] / 1024:.1f} GiB, {p['seconds']:.0f} s"
                             for preset, p in presets.items()))
        return "\n".join(lines)
    release = results["release"]
    if results["mode"] == "random-full":
        return "\n".join(lines + random_full_table(results))
    if results["mode"] == "overhead":
        lines.append("the pipeline's own overhead on the CPU (networks cut to "
                     + ", ".join(f"{k} {v}" for k, v in OVERHEAD_SETTINGS.items())
                     + "; their time measured and taken out); seconds")
        head = f"{'stage':<14}" + "".join(f"{str(r['frames']) + ' fr: total':>16}{'networks':>10}{'overhead':>10}"
                                          for r in results["runs"])
        lines.append(head)
        for stage in STAGE_ORDER:
            cells = ""
            for r in results["runs"]:
                e = r["stages"].get(stage, {})
                cells += (f"{e.get('seconds', 0):>16.2f}{e.get('network_seconds', 0):>10.2f}"
                          f"{e.get('overhead_seconds', 0):>10.2f}")
            lines.append(f"{stage:<14}{cells}")
        lines.append(f"{'whole call':<14}" + "".join(
            f"{r['seconds']:>16.2f}{sum(e.get('network_seconds', 0) for e in r['stages'].values()):>10.2f}"
            f"{sum(e.get('overhead_seconds', 0) for e in r['stages'].values()):>10.2f}" for r in results["runs"]))
        for r in results["runs"]:
            over = sum(e.get("overhead_seconds", 0) for e in r["stages"].values())
            lines.append(f"{r['frames']} frames ({r['vertices']:,} vertices, {r['faces']:,} faces): overhead "
                         f"{over:.2f} s; baseline (read the frames + write animation.npz of that size) "
                         f"{r['baseline_seconds']:.2f} s = {over / max(r['baseline_seconds'], 1e-6):.1f}x")
        lines.append(f"(the release on an {release['device']}, networks included: ~{release['seconds_default']:.0f} s "
                     f"default, ~{release['seconds_fast']:.0f} s fast for 16 frames)")
        return "\n".join(lines)
    lines.append(f"seconds and peak GPU memory (GiB) per stage on {results.get('gpu', 'the CUDA GPU')}")
    for r in results["runs"]:
        lines.append(f"{r['frames']} frames, {r['preset']}: {r['seconds']:.1f} s, peak "
                     f"{(r['peak_gpu_mb'] or 0) / 1024:.1f} GiB; baseline {r['baseline_seconds']:.2f} s")
        for stage, e in r["stages"].items():
            peak = f"{e['peak_gpu_mb'] / 1024:>8.1f}" if "peak_gpu_mb" in e else f"{'':>8}"
            lines.append(f"    {stage:<14}{e['seconds']:>8.1f}{peak}")
    ref = {"default": (release["seconds_default"], release["memory_gib_default"]),
           "fast": (release["seconds_fast"], None), "low-vram": (None, release["memory_gib_low_ram"])}
    lines.append(f"the release ({release['device']}, 16 frames):")
    for preset, (sec, mem) in ref.items():
        ours = [r for r in results["runs"] if r["preset"] == preset and r["frames"] == 16]
        mine = (f"ours {ours[0]['seconds']:.1f} s, {(ours[0]['peak_gpu_mb'] or 0) / 1024:.1f} GiB" if ours
                else "ours: not run at 16 frames")
        theirs = ", ".join(x for x in (f"~{sec:.0f} s" if sec else "", f"{mem:.0f} GB" if mem else "") if x)
        lines.append(f"  {preset:<10}release {theirs:<16}{mine}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend bench generate", description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", default=None,
                   help="models folder laid out like the hub repositories (default: the Hugging Face hub cache)")
    p.add_argument("--frames", default=None,
                   help="comma-separated frame counts (default 16,31; with --random-full 16)")
    p.add_argument("--input", default=str(DEFAULT_INPUT), help="a folder of frames (default: the panda example)")
    p.add_argument("--tiny", action="store_true", help="measure the overhead even if the models look full-size")
    p.add_argument("--random-full", action="store_true",
                   help="no downloads: every network at the released sizes with random weights, written to a "
                        "scratch folder (about 16 GB), then each preset on a CUDA GPU beside plan's estimate")
    p.add_argument("--presets", default=",".join(PRESETS),
                   help=f"with --random-full: comma-separated presets (default {','.join(PRESETS)})")
    p.add_argument("--scratch", default=None, metavar="DIR",
                   help="with --random-full: where the random models are written (default: the system's temp folder)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    frames = args.frames or ("16" if args.random_full else "16,31")
    try:
        counts = [int(x) for x in frames.split(",") if x.strip()]
    except ValueError:
        p.error(f"--frames {frames!r}: expected comma-separated integers, e.g. 16,31")
    if not counts or min(counts) < 2:
        p.error("--frames: each count must be at least 2")
    if not Path(args.input).is_dir():
        p.error(f"--input {args.input}: not a folder of frames")
    if args.random_full:
        if args.models_dir or args.tiny:
            p.error("--random-full makes its own models: it takes neither --models-dir nor --tiny")
        presets = choices(p, presets=(args.presets, tuple(PRESETS)))["presets"]
        if not presets:
            p.error("--presets: name at least one of " + ", ".join(PRESETS))
        if args.scratch and not Path(args.scratch).is_dir():
            p.error(f"--scratch {args.scratch}: not a folder")
        results = run_random_full(counts, Path(args.input), presets, scratch=args.scratch)
    else:
        results = run(args.models_dir, counts, Path(args.input), tiny=args.tiny)
    if results["mode"] in ("gpu", "random-full"):
        import torch

        results["gpu"] = torch.cuda.get_device_name(0)
    print(table(results))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
