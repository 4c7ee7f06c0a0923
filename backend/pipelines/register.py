"""Mesh sequence -> the reference mesh's per-frame offsets (the contract of the method's Stage II)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import BadInput, Unsupported
from ..gltf_export import write_animated_glb
from ..jobs import JobContext
from ..meshio import MAX_REFERENCE_VERTICES, list_sequence, load_mesh, write_animation_npz

METHODS = ("optimize",)
# A first frame further than this (mean distance / bounding-box diagonal) from the reference
# almost always means a different coordinate frame (Y-up vs Z-up, units), not motion.
MISALIGNED_FRACTION = 0.2


def run_register(ctx: JobContext, *, reference: str, sequence: str, out: str, method: str = "optimize",
                 device: str = "auto", fps: float = 24.0) -> dict:
    started = time.monotonic()
    if method not in METHODS:
        if method in ("learned", "auto"):
            raise Unsupported(f"method {method!r} needs the learned Stage II model, which is not built yet; "
                              "use method 'optimize'")
        raise BadInput(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if device not in ("auto", "cpu", "cuda"):
        raise BadInput(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "cuda":
        _require_cuda()
    if not (np.isfinite(fps) and fps > 0):
        raise BadInput(f"fps must be a positive number, got {fps}")

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

    from ..registration.optimize import register_optimize

    offsets = register_optimize(
        ref.vertices, ref.faces, frames,
        progress=lambda step, total, msg: ctx.progress("register", step, total, msg),
        should_cancel=ctx.should_cancel)
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
            "seconds": round(time.monotonic() - started, 3), "warnings": warnings}


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
