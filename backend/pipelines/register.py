"""Mesh sequence -> the reference mesh's per-frame offsets (the contract of the method's Stage II)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInput, Unsupported
from ..io.gltf import write_animated_glb
from ..jobs import JobContext
from ..io.mesh import MAX_REFERENCE_VERTICES, list_sequence, load_mesh, write_animation_npz
from .fit_report import surface_fit_report

# optimize: ARAP/ICP, no weights; learned: the Stage II model; learned-optimize: learned, then
# optimised, keeping per frame the one closer to that frame's surface. (`generate` has its own
# pair, fit and learned-fit: fitting follows silhouettes and flow, optimisation surfaces.)
METHODS = ("optimize", "learned", "learned-optimize")
# The release encodes a mesh for Stage II from this many surface samples (pipeline_with_3d); the
# official models have no training card to say so.
OFFICIAL_SURFACE_POINTS = 16_384
WEIGHTS_ROOT = Path(__file__).resolve().parents[1] / "weights"
# A first frame further than this (mean distance / bounding-box diagonal) from the reference
# almost always means a different coordinate frame (Y-up vs Z-up, units), not motion.
MISALIGNED_FRACTION = 0.2


def run_register(ctx: JobContext, *, reference: str, sequence: str, out: str, method: str = "learned-optimize",
                 device: str = "auto", fps: float = 24.0, profile: str = "tiny",
                 weights_dir: Optional[str] = None, models_dir: Optional[str] = None) -> dict:
    """Register `reference` onto every mesh of `sequence`; write animation.npz + animated.glb to `out`.

    method: "optimize" (ARAP/ICP, no weights), "learned" (the Stage II model: shape VAE +
    temporal autoencoder), "learned-optimize" (learned, refined per frame by a few optimisation iterations,
    keeping per frame the one closer to that frame's surface). The learned methods read
    `weights_dir`/vae and `weights_dir`/stage2 (default backend/weights/<profile>/...). Without
    them "learned" is Unsupported, while "learned-optimize" (the default) runs "optimize" and says so in a
    warning: the default must work on any install, with or without the learned weights.
    profile "actionmesh": the official Stage II instead (TripoSG's VAE encoder and ActionMesh's
    autoencoder, from the model store: the hub cache or `models_dir`); a missing or partial model
    is refused with its licence, size and the command that fetches it, whatever the method.
    """
    started = time.monotonic()
    if method not in METHODS:
        raise BadInput(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if device not in ("auto", "cpu", "cuda"):
        raise BadInput(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "cuda":
        _require_cuda()
    if not (np.isfinite(fps) and fps > 0):
        raise BadInput(f"fps must be a positive number, got {fps}")
    learned_dirs, fallback = None, None
    missing = []
    if profile == "actionmesh":
        if method == "optimize":
            raise BadInput("profile 'actionmesh' is the official Stage II model: use method 'learned' or 'learned-optimize'")
        learned_dirs = official_stage2_folders(models_dir)
    elif method == "learned-optimize":
        missing = _missing(weights_folders(profile, weights_dir))
    if missing:
        fallback = f"the learned Stage II weights are not installed ({', '.join(missing)} missing): ran 'optimize' alone"
        method = "optimize"
    elif method != "optimize" and learned_dirs is None:
        learned_dirs = learned_weights(method, profile, weights_dir)

    files = list_sequence(sequence)
    total_load = len(files) + 1
    ctx.progress("load", 0, total_load, f"reading reference {Path(reference).name}")
    ref = load_mesh(reference, role="reference")
    if len(ref.vertices) > MAX_REFERENCE_VERTICES:
        raise BadInput(f"reference has {len(ref.vertices):,} vertices; the limit is {MAX_REFERENCE_VERTICES:,}. "
                       "Decimate it first")
    frames = []
    for i, path in enumerate(files):
        ctx.progress("load", i + 1, total_load, f"reading frame {i} ({path.name})")
        mesh = load_mesh(path, role=f"frame {i}")
        frames.append((mesh.vertices, mesh.faces))

    warnings = _alignment_warnings(ref.vertices, frames[0][0], files[0].name)
    if fallback:
        warnings.append(fallback)

    report = lambda step, total, msg: ctx.progress("register", step, total, msg)  # noqa: E731
    extra = {}
    if method == "optimize":
        from ..registration.optimize import register_optimize

        fits = []
        offsets = register_optimize(ref.vertices, ref.faces, frames, progress=report,
                                    should_cancel=ctx.should_cancel, fit_report=fits)
        extra["frame_fit"] = fits
    else:
        offsets, extra = _register_learned(ctx, method, learned_dirs, device, ref, frames, report,
                                           OFFICIAL_SURFACE_POINTS if profile == "actionmesh" else None)
        extra["profile"] = profile
        warnings += extra.pop("warnings", [])
    extra["fit"] = surface_fit_report(extra.pop("frame_fit"))
    warnings += fit_warnings(extra["fit"])
    offsets = np.asarray(offsets, dtype=np.float32)
    if offsets.shape != (len(frames),) + ref.vertices.shape or not np.isfinite(offsets).all():
        raise RuntimeError(f"registration produced invalid offsets {offsets.shape}")

    ctx.progress("write", 0, 2, "writing animation.npz")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_animation_npz(out_dir / "animation.npz", ref.vertices, ref.faces, offsets, fps)
    ctx.check_cancel()
    ctx.progress("write", 1, 2, "writing animated.glb")
    write_animated_glb(out_dir / "animated.glb", ref.vertices, ref.faces, offsets, fps,
                       name=Path(reference).stem)
    ctx.progress("write", 2, 2, "done")
    return {"animation": str(out_dir / "animation.npz"), "glb": str(out_dir / "animated.glb"),
            "frames": len(frames), "vertices": int(len(ref.vertices)), "method": method,
            "seconds": round(time.monotonic() - started, 3), "warnings": warnings, **extra}


def weights_folders(profile: str, weights_dir: Optional[str]) -> dict:
    """{"vae": dir, "stage2": dir} under `weights_dir` (default backend/weights/<profile>)."""
    if weights_dir is None:
        if not isinstance(profile, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", profile) or profile.startswith("."):
            raise BadInput(f"invalid profile name {profile!r}")
        root = WEIGHTS_ROOT / profile
    else:
        root = Path(weights_dir)
        if not root.is_dir():
            raise BadInput(f"weights folder not found: {root}")
    return {"vae": root / "vae", "stage2": root / "stage2"}


def official_stage2_folders(models_dir: Optional[str]) -> dict:
    """{"vae": TripoSG's vae/, "stage2": ActionMesh's autoencoder/} from the model store, or
    MissingModel naming what to fetch."""
    from ..hub import require

    return {"vae": require("triposg", models_dir) / "vae", "stage2": require("actionmesh", models_dir) / "autoencoder"}


def _missing(dirs: dict) -> list:
    return [str(d) for d in dirs.values() if not (d / "config.json").is_file()]


def learned_weights(method: str, profile: str, weights_dir: Optional[str]) -> dict:
    """-> {"vae": dir, "stage2": dir}; Unsupported (with what to do instead) when they are missing."""
    dirs = weights_folders(profile, weights_dir)
    missing = _missing(dirs)
    if missing:
        raise Unsupported(
            f"method {method!r} needs the learned Stage II model, and the {profile!r} weights are not "
            f"installed (no config.json in {', '.join(missing)}). "
            "Use --method optimize (method 'optimize'), which needs no weights.")
    return dirs


def load_learned(dirs: dict, device: str, default_surface_points: Optional[int] = None) -> dict:
    """The shape VAE + Stage II model from `dirs` ({"vae", "stage2"}) and the encoding settings
    the Stage II model was trained with (its training.json; else `default_surface_points`):
    keyword arguments for register_learned / register_learned_optimize, plus "warnings"."""
    from ..models.configs import file_sha256
    from ..models.temporal_autoencoder import TemporalAutoencoder
    from ..models.vae import ShapeVAE
    from ..registration.learned import DEFAULT_SURFACE_POINTS

    warnings = []
    card = {}
    card_path = Path(dirs["stage2"]) / "training.json"
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except (OSError, ValueError) as exc:
            warnings.append(f"could not read {card_path} ({exc}); using default encoding settings")
    vae = ShapeVAE.from_pretrained(dirs["vae"], device=device)
    model = TemporalAutoencoder.from_pretrained(dirs["stage2"], device=device)
    if vae.config["latent_channels"] != model.config["latent_channels"]:
        raise Unsupported(f"the shape VAE in {dirs['vae']} makes {vae.config['latent_channels']}-channel latents "
                          f"but the Stage II model in {dirs['stage2']} expects {model.config['latent_channels']}: "
                          "they were not trained together")
    expected = card.get("vae_sha256")
    if expected:
        weights = Path(dirs["vae"]) / "model.safetensors"
        if weights.is_file() and file_sha256(weights) != expected:
            warnings.append(f"the Stage II model was trained on another shape VAE than the one in {dirs['vae']}; "
                            "expect poor tracking")
    return {"vae": vae, "autoencoder": model, "device": device,
            "num_latents": int(card.get("num_latents") or vae.config["num_latents"]),
            "surface_points": int(card.get("surface_points") or default_surface_points or DEFAULT_SURFACE_POINTS),
            "warnings": warnings}


def _register_learned(ctx: JobContext, method: str, dirs: dict, device: str, ref, frames, report,
                      default_surface_points: Optional[int] = None):
    from ..registration.learned import register_learned_optimize, register_learned
    from .reconstruct import resolve_device

    dev = resolve_device(device)
    ctx.check_cancel()
    models = load_learned(dirs, dev, default_surface_points)
    warnings = models.pop("warnings")
    common = dict(models, progress=report, should_cancel=ctx.should_cancel)
    extra = {"device": dev, "weights": str(dirs["stage2"].parent), "num_latents": models["num_latents"],
             "surface_points": models["surface_points"]}
    if method == "learned":
        fits = []
        offsets = register_learned(ref.vertices, ref.faces, frames, fit_report=fits, **common)
        extra["frame_fit"] = fits
    else:
        offsets, details = register_learned_optimize(ref.vertices, ref.faces, frames, **common)
        extra["frame_fit"] = details["frames"]
        extra["refined_frames"] = int(sum(details["refined"]))
        extra["surface_error_learned"] = [round(e, 6) for e in details["error_learned"]]
        extra["surface_error"] = [round(e, 6) for e in details["error"]]
    extra["warnings"] = warnings
    return offsets, extra


def fit_warnings(fit: dict) -> list[str]:
    """Warnings naming the frames whose result, or rigid pre-alignment, was held back (`fit`: the
    job result's report, backend.pipelines.fit_report)."""
    out = []
    held = fit["held_frames"]
    if held:
        out.append(f"frame{'s' if len(held) > 1 else ''} {_frame_list(held)}: the registration did not fit the "
                   "frame's surface better than the pose it started from, so that pose was kept; check "
                   f"{'these frames' if len(held) > 1 else 'this frame'} (is the mesh the same object?)")
    rigid = [e["frame"] for e in fit["per_frame"] if e.get("rigid_held")]
    if rigid:
        out.append(f"rigid pre-alignment skipped at frame{'s' if len(rigid) > 1 else ''} {_frame_list(rigid)}: "
                   "it did not bring the surfaces closer")
    return out


def _frame_list(frames: list, limit: int = 12) -> str:
    shown = ", ".join(str(f) for f in frames[:limit])
    return shown + (f" and {len(frames) - limit} more" if len(frames) > limit else "")


def _alignment_warnings(ref_vertices: np.ndarray, first_frame: np.ndarray, name: str) -> list[str]:
    from scipy.spatial import cKDTree

    diag = float(np.linalg.norm(np.ptp(ref_vertices, axis=0))) or 1.0
    sample = ref_vertices[:: max(1, len(ref_vertices) // 5000)]
    dist, _ = cKDTree(first_frame).query(sample, workers=-1)
    frac = float(dist.mean()) / diag
    if frac > MISALIGNED_FRACTION:
        return [f"the first frame ({name}) lies {frac:.0%} of the reference's size away from it: "
                "check that the sequence and the reference share one coordinate frame (up axis, units)"]
    return []


def _require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise BadInput("device 'cuda' was requested but torch sees no CUDA GPU; use 'auto' or 'cpu'")
