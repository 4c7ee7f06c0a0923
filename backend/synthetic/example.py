"""An example on disk for the demo and for people trying the CLI: reference, frames, ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Marching cubes leaves near-zero-area slivers; a few collapses remove most of them (192 -> 19 on
# the default creature). Left in, any motion flips some and they shade as dark specks.
SLIVER_CLEANUP_KEEP = 0.9


def write_creature_example(out_dir, n_frames: int = 16, seed: int = 0) -> dict:
    """reference.obj, sequence/frame_XXX.ply (each re-meshed) and ground_truth.npz with `points`
    [T,N,6]: tracked surface points + normals in the format `python -m backend eval --gt` reads."""
    import trimesh

    from ..geometry.postprocess import decimate
    from .deforming import make_creature_sequence

    out_dir = Path(out_dir)
    seq_dir = out_dir / "sequence"
    seq_dir.mkdir(parents=True, exist_ok=True)
    for stale in seq_dir.glob("frame_*.ply"):
        stale.unlink()
    data = make_creature_sequence(n_frames=n_frames, seed=seed)
    ref_v, ref_f = decimate(data["ref_vertices"], data["ref_faces"], int(len(data["ref_faces"]) * SLIVER_CLEANUP_KEEP))
    reference = out_dir / "reference.obj"
    trimesh.Trimesh(ref_v, ref_f, process=False).export(reference)
    for t, (vertices, faces) in enumerate(data["frames"]):
        trimesh.Trimesh(vertices, faces, process=False).export(seq_dir / f"frame_{t:03d}.ply")
    # The generator's own reference vertices, moved by the true deformation, are the tracked points.
    points = np.stack([np.concatenate([gt, trimesh.Trimesh(gt, data["ref_faces"], process=False).vertex_normals], 1)
                       for gt in data["gt_vertices"]]).astype(np.float32)
    np.savez(out_dir / "ground_truth.npz", points=points, fps=data["fps"])
    return {"reference": str(reference), "sequence": str(seq_dir), "ground_truth": str(out_dir / "ground_truth.npz"),
            "frames": n_frames, "reference_vertices": int(len(ref_v)),
            "frame_vertices": int(len(data["frames"][0][0]))}
