"""Add round-trip figures on real meshes to a shipped VAE's model card and render its README.

    python -m backend.train.card backend/weights/tiny/vae --mesh ../shared/examples/panda/panda.glb

training.json (written by the training script) is the machine-readable card the tests check
against; README.md is the same for people.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def render_readme(card: dict) -> str:
    h = card["heldout"]
    lines = [
        f"# {card['model']} `{card['profile']}` weights",
        "",
        "Our own weights, trained from scratch on procedurally generated articulated bodies",
        "(`backend/synthetic/`), no external data. Licence: GPL-3.0-or-later, like the code.",
        "",
        "## Training",
        f"- command: `{card['command']}`",
        f"- steps: {card['steps']}, batch {card['batch']}, {card['surface_points']} surface points and "
        f"{card['query_points']} SDF queries per shape, lr {card['lr']}, KL weight {card['kl_weight']}, seed {card['seed']}",
        f"- data: {card['train_shapes']} synthetic shapes (seeds {card['train_seeds'][0]}–{card['train_seeds'][1]})",
        f"- time: {card['train_seconds'] / 60:.0f} min on 2 CPU cores",
    ]
    prev = card.get("continues_from")
    while prev:  # earlier runs this one continued (--init-from), newest first
        lines += [f"- continues {prev['steps']} steps ({prev['train_seconds'] / 60:.0f} min) of: `{prev['command']}`"]
        prev = prev.get("continues_from")
    if "total_steps" in card:
        lines += [f"- in all: {card['total_steps']} steps, {card['total_train_seconds'] / 60:.0f} min"]
    lines += [
        "",
        "## Held-out quality",
        f"{h['shapes']} synthetic shapes never seen in training (seeds {card['heldout_seeds'][0]}–"
        f"{card['heldout_seeds'][1]}), shapes in [-1, 1], extraction at {h['resolution']}³:",
        "",
        "| metric | mean | worst |",
        "|---|---|---|",
        f"| Chamfer (mean unsquared NN distance, both ways summed) | {h['chamfer_mean']:.4f} | {h['chamfer_max']:.4f} |",
        f"| volume IoU | {h['iou_mean']:.3f} | {h['iou_min']:.3f} |",
    ]
    target = card.get("target")
    if target:
        met = target.get("reached")
        lines += ["", f"Target: Chamfer below {target['chamfer_mean_below']} and IoU above {target['iou_mean_above']}: "
                      + ("reached." if met else "**not reached** - these weights reconstruct coarse blobs, not "
                         "shapes. They are shipped because the Stage II model is trained on their encoder's "
                         "latents; better weights need far more training than 2 CPU cores give.")]
    for name, fig in card.get("real_meshes", {}).items():
        lines += ["", f"Round trip of the real mesh `{name}` (normalised to [-1, 1], extraction at "
                      f"{fig['resolution']}³): Chamfer {fig['chamfer']:.4f}."]
    lines += ["", "`tests/test_shipped_weights.py` checks these figures against the shipped file."]
    return "\n".join(lines) + "\n"


def mesh_roundtrip_chamfer(input_path, *, weights_dir, resolution: int = 128, out_dir=None) -> dict:
    """Reconstruct a mesh file through the VAE (the `reconstruct` pipeline) and measure the Chamfer
    between input and output in the input's normalised [-1, 1] frame."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import trimesh

    from ..eval.shape import CHAMFER_POINTS, chamfer
    from ..geometry import normalization_for, sample_surface
    from ..jobs import JobContext
    from ..io.mesh import load_mesh
    from ..pipelines.reconstruct import run_reconstruct

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(out_dir or tmp) / "roundtrip.ply"
        result = run_reconstruct(JobContext(), input=str(input_path), out=str(out), weights_dir=str(weights_dir),
                                 resolution=resolution)
        source = load_mesh(input_path)
        output = trimesh.load(out, process=False, force="mesh")
        transform = normalization_for(source.vertices)
        a = sample_surface(transform.apply(source.vertices), source.faces, CHAMFER_POINTS, seed=0)[0]
        b = sample_surface(transform.apply(np.asarray(output.vertices)), np.asarray(output.faces),
                           CHAMFER_POINTS, seed=1)[0]
    return {"chamfer": chamfer(a, b), "resolution": resolution, "faces": result["faces"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights")
    p.add_argument("--mesh", action="append", default=[], help="a real mesh to round-trip (repeatable)")
    p.add_argument("--resolution", type=int, default=128)
    args = p.parse_args(argv)
    weights = Path(args.weights)
    card = json.loads((weights / "training.json").read_text())
    for mesh in args.mesh:
        figures = mesh_roundtrip_chamfer(mesh, weights_dir=weights, resolution=args.resolution)
        card.setdefault("real_meshes", {})[Path(mesh).name] = figures
        print(Path(mesh).name, json.dumps(figures))
    (weights / "training.json").write_text(json.dumps(card, indent=2))
    (weights / "README.md").write_text(render_readme(card))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
