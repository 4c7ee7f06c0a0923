"""Mesh -> VAE latents -> mesh: the shape autoencoder's round trip, as a job.

Normalise the input into the VAE's [-1, 1] box, sample surface points with normals, encode
(posterior mode), decode the latents once, extract the zero level set coarse-to-fine (only points
near the surface are queried), clean up, put the result back where the input lay, write it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInput
from ..jobs import JobContext

WEIGHTS_ROOT = Path(__file__).resolve().parents[1] / "weights"
OUTPUT_SUFFIXES = (".obj", ".ply", ".glb")
# The tiny VAE was trained on shapes whose largest half-extent is 0.90-0.95 (backend.synthetic);
# inputs are placed in the middle of that range. (The official pipeline uses [-1, 1].)
NORMALIZE_MARGIN = 0.075
DEFAULT_SURFACE_POINTS = 16384  # as the official mesh + video pipeline encodes its input
DEFAULT_RESOLUTION = 256
EXTRACT_BOUNDS = 1.005
QUERY_CHUNK = 65536


def default_weights_dir(profile: str) -> Path:
    return WEIGHTS_ROOT / profile / "vae"


def resolve_device(device: str) -> str:
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise BadInput(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInput("device 'cuda' was requested but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    return device


def vae_sdf_fn(model, memory):
    """A `sdf_fn(points [N,3]) -> values [N]` for backend.geometry over one decoded shape."""
    import torch

    def sdf(points):
        xyz = torch.as_tensor(points, dtype=torch.float32).to(memory.device)[None]
        with torch.inference_mode():
            return model.query(memory, xyz)[0].float().cpu().numpy()

    return sdf


def load_vae(profile: str, weights_dir: Optional[str], device: str):
    from ..models.vae import ShapeVAE

    if weights_dir is None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", profile):
            raise BadInput(f"profile {profile!r} is not a valid profile name")
        directory = default_weights_dir(profile)
        if not directory.is_dir():
            raise BadInput(f"no VAE weights for profile {profile!r}: {directory} does not exist. "
                           f"The {profile} VAE has not been trained or shipped yet; pass weights_dir "
                           "pointing at a folder with config.json and model.safetensors")
    else:
        directory = Path(weights_dir)
        if not directory.is_dir():
            raise BadInput(f"VAE weights folder not found: {directory}")
    return ShapeVAE.from_pretrained(directory, device=device), directory


def run_reconstruct(ctx: JobContext, *, input: str, out: str, profile: str = "tiny",
                    resolution: int = DEFAULT_RESOLUTION, device: str = "auto", weights_dir: Optional[str] = None,
                    num_points: int = DEFAULT_SURFACE_POINTS, target_faces: Optional[int] = None,
                    min_component_fraction: float = 0.02, seed: int = 0) -> dict:
    import torch

    from ..geometry import extract_mesh, normalization_for, postprocess_mesh, sample_surface
    from ..io.mesh import load_mesh, write_mesh

    started = time.monotonic()
    out_path = Path(out)
    if out_path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise BadInput(f"output {out_path.name}: unsupported format {out_path.suffix!r}; "
                       f"use one of {', '.join(OUTPUT_SUFFIXES)}")
    if not (isinstance(resolution, int) and 16 <= resolution <= 1024):
        raise BadInput(f"resolution must be an integer in [16, 1024], got {resolution!r}")
    if num_points < 1:
        raise BadInput(f"num_points must be positive, got {num_points}")
    if target_faces is not None and target_faces < 4:
        raise BadInput(f"target_faces must be at least 4, got {target_faces}")
    dev = resolve_device(device)

    ctx.progress("load", 0, 2, f"reading {Path(input).name}")
    mesh = load_mesh(input, role="input")
    ctx.progress("load", 1, 2, f"loading the {profile} VAE")
    model, used_dir = load_vae(profile, weights_dir, dev)

    ctx.progress("encode", 0, 1, f"sampling {num_points} surface points")
    try:
        transform = normalization_for(mesh.vertices, margin=NORMALIZE_MARGIN)
        normalized = transform.apply(mesh.vertices)
        points, normals = sample_surface(normalized, mesh.faces, num_points, seed=seed)
    except ValueError as exc:
        raise BadInput(f"input {Path(input).name}: {exc}") from exc
    x = torch.from_numpy(np.concatenate([points, normals], axis=1))[None].to(dev)
    generator = torch.Generator(device=dev).manual_seed(seed)
    with torch.inference_mode():
        z = model.encode(x, generator=generator).mode()
        memory = model.decode_latents(z)
    ctx.progress("encode", 1, 1, f"{z.shape[1]} latent tokens")

    vertices, faces, stats = extract_mesh(
        vae_sdf_fn(model, memory), resolution=resolution, bounds=EXTRACT_BOUNDS, chunk_size=QUERY_CHUNK,
        progress=lambda step, total, msg: ctx.progress("extract", step, total, msg),
        should_cancel=ctx.should_cancel)
    if len(faces) == 0:
        raise BadInput(f"the VAE in {used_dir} produced no surface for {Path(input).name} (its field does not "
                       "cross zero inside the box): the weights are untrained or do not match this profile")

    ctx.progress("clean", 0, 1, f"{len(faces):,} faces from marching cubes")
    vertices, faces = postprocess_mesh(vertices, faces, min_component_fraction=min_component_fraction,
                                       target_faces=target_faces)
    ctx.progress("clean", 1, 1, f"{len(faces):,} faces")
    vertices = transform.invert(vertices)

    ctx.progress("write", 0, 1, f"writing {out_path.name}")
    write_mesh(out_path, vertices, faces)
    ctx.progress("write", 1, 1, "done")
    return {"out": str(out_path), "vertices": int(len(vertices)), "faces": int(len(faces)),
            "profile": profile, "weights": str(used_dir), "device": dev, "resolution": resolution,
            "queries": stats["queries"], "dense_queries": stats["dense_queries"],
            "transform": transform.to_dict(), "seconds": round(time.monotonic() - started, 3)}
