"""An example on disk for the demo and for people trying the CLI: reference, frames, ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_creature_example(out_dir, n_frames: int = 16, seed: int = 0) -> dict:
    import trimesh

    from .deforming import make_creature_sequence

    out_dir = Path(out_dir)
    seq_dir = out_dir / "sequence"
    seq_dir.mkdir(parents=True, exist_ok=True)
    for stale in seq_dir.glob("frame_*.ply"):
        stale.unlink()
    data = make_creature_sequence(n_frames=n_frames, seed=seed)
    reference = out_dir / "reference.obj"
    trimesh.Trimesh(data["ref_vertices"], data["ref_faces"], process=False).export(reference)
    for t, (vertices, faces) in enumerate(data["frames"]):
        trimesh.Trimesh(vertices, faces, process=False).export(seq_dir / f"frame_{t:03d}.ply")
    np.savez(out_dir / "ground_truth.npz", vertices=data["gt_vertices"].astype(np.float32), fps=data["fps"])
    return {"reference": str(reference), "sequence": str(seq_dir), "ground_truth": str(out_dir / "ground_truth.npz"),
            "frames": n_frames, "reference_vertices": int(len(data["ref_vertices"])),
            "frame_vertices": int(len(data["frames"][0][0]))}
