"""Registration on per-frame meshes as other tools make them (issue 9), through the CLI.

panda.glb under a bend + hinge + squash, every frame re-meshed by voxel fill + marching cubes
and then wound inward, wound half and half, made scan-like (noise + holes) or holed; and two
real game characters (MD2 files of Debian's assimp-testmodels) running, each frame voxel
re-meshed, against their own inward-wound, open, multi-part meshes. Each must come out below
leaving the mesh still, and below the bound measured when the safeguards were written.
The Blender side of the same input is in test_addon.py.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from blender_harness import REPO, missing_data

N_FRAMES = 8
# Vertex error / error of leaving the mesh still, measured 2026-11-30 (8 frames, seed 0; a
# running cycle in 8 frames moves more per frame than the benchmark's 16): optimize 0.67 / 0.67 /
# 0.69 / 0.67 / 0.62 / 0.50, learned-optimize 0.67 (panda-mc-inward) / 0.61 (sydney). Bounds: those + 0.08.
BOUNDS = {"panda-mc-inward": 0.75, "panda-mc-mixed": 0.75, "panda-scan": 0.77, "panda-holes": 0.75,
          "sydney": 0.70, "faerie": 0.58}
# The worst moving frame's vertex error / that frame's error of leaving the mesh still (frame 0
# is the reference's own pose), measured 2026-12-03 as above (pytest tests/test_real_world_frames.py
# -s): optimize 0.676 / 0.676 / 0.686 / 0.678 / 0.780 / 0.648, learned-optimize 0.676 (panda-mc-inward) /
# 0.779 (sydney); every other frame is lower. Bounds: those + 0.10, still below 1 (doing nothing).
WORST_FRAME = {"panda-mc-inward": 0.78, "panda-mc-mixed": 0.78, "panda-scan": 0.79, "panda-holes": 0.78,
               "sydney": 0.88, "faerie": 0.75}


def _md2_or_skip():
    from backend.synthetic.md2 import md2_folder

    folder = md2_folder()
    if folder is None:
        missing_data("the MD2 characters are not installed (python3 build.py setup unpacks them from assimp-testmodels)")
    return folder


def write_sequence(root, seq):
    """reference.ply + frames/frame_XXX.ply + truth.npy on disk, as a user would hand them over."""
    root.mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(seq["ref_vertices"], seq["ref_faces"], process=False).export(root / "reference.ply")
    (root / "frames").mkdir()
    for t, (v, f) in enumerate(seq["frames"]):
        trimesh.Trimesh(v, f, process=False).export(root / "frames" / f"frame_{t:03d}.ply")
    np.save(root / "truth.npy", seq["gt_vertices"])
    return root


def build(kind, root, shared_examples=None):
    from backend.bench.register import character_sequence, remeshed_panda_sequence

    if kind.startswith("panda"):
        seq = remeshed_panda_sequence(kind, N_FRAMES, 0, shared_examples / "panda" / "panda.glb")
    else:
        seq = character_sequence(kind, N_FRAMES, 0, _md2_or_skip())
    return write_sequence(root, seq)


def run_register(root, out, *args):
    proc = subprocess.run([sys.executable, "-m", "backend", "register", "--reference", root / "reference.ply",
                           "--sequence", root / "frames", "--out", out, "--json", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out / "animation.npz")


def errors(root, data):
    truth = np.load(root / "truth.npy")
    ref = truth[0] if not (root / "reference.ply").is_file() else \
        np.asarray(trimesh.load(root / "reference.ply", process=False).vertices)
    diag = float(np.linalg.norm(np.ptp(ref, axis=0)))
    moved = np.linalg.norm(ref[None] + data["offsets"] - truth, axis=-1).mean(axis=1) / diag
    still = np.linalg.norm(ref[None] - truth, axis=-1).mean(axis=1) / diag
    return moved, still


def _check_every_frame(kind, method, moved, still):
    """No frame is left near the still pose or sent astray: each moving frame's vertex error under
    WORST_FRAME[kind] of its own error of leaving the mesh still."""
    ratios = moved[1:] / still[1:]
    print(f"{kind}: {method} worst frame {ratios.max():.3f}x its still error")
    assert ratios.max() < WORST_FRAME[kind], (kind, method, ratios.round(3))


@pytest.mark.parametrize("kind", list(BOUNDS))
def test_optimize_beats_standing_still_on_real_world_frames(kind, tmp_path, shared_examples):
    root = build(kind, tmp_path / kind, shared_examples)
    result, data = run_register(root, tmp_path / "out", "--method", "optimize")
    moved, still = errors(root, data)
    ratio = moved.mean() / still.mean()
    print(f"{kind}: optimize {moved.mean():.4f} vs still {still.mean():.4f} = {ratio:.2f}x")
    assert ratio < BOUNDS[kind], (kind, moved.mean(), still.mean())
    # Frame 0's surface is the reference's (re-meshed): the result must not wander off it.
    assert moved[0] <= still[0] + 0.01, (moved[0], still[0])
    fits = result["fit"]["per_frame"]
    assert [e["frame"] for e in fits] == list(range(N_FRAMES))
    _check_every_frame(kind, "optimize", moved, still)


@pytest.mark.parametrize("kind", ["panda-mc-inward", "sydney"])
def test_default_method_on_real_world_frames(kind, tmp_path, shared_examples):
    """The default (learned-optimize, with the shipped weights) on the issue's failing case and a character."""
    root = build(kind, tmp_path / kind, shared_examples)
    result, data = run_register(root, tmp_path / "out")
    assert result["method"] == "learned-optimize"
    moved, still = errors(root, data)
    print(f"{kind}: learned-optimize {moved.mean():.4f} vs still {still.mean():.4f} = {moved.mean() / still.mean():.2f}x")
    assert moved.mean() / still.mean() < BOUNDS[kind], (kind, moved.mean(), still.mean())
    _check_every_frame(kind, "learned-optimize", moved, still)
