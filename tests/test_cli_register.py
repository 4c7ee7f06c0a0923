"""`python -m backend register` from a shell: outputs, and clear refusals of bad input."""

import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from blender_harness import REPO
from sequences import make_sequence


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "backend", "register", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def read_glb_json(path):
    data = path.read_bytes()
    magic, version, _ = struct.unpack_from("<III", data, 0)
    assert magic == 0x46546C67 and version == 2
    length, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A
    return json.loads(data[20:20 + length])


@pytest.fixture
def seq(tmp_path):
    return make_sequence(tmp_path, n_frames=4)


def test_register_writes_animation_and_glb(seq, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("--reference", seq["reference"], "--sequence", seq["sequence"], "--out", out, "--fps", 12, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 4 and result["vertices"] == 642
    data = np.load(out / "animation.npz")
    ref = trimesh.load(seq["reference"], process=False, force="mesh")
    np.testing.assert_allclose(data["vertices"], ref.vertices, atol=1e-6)
    assert data["faces"].shape == ref.faces.shape and data["offsets"].dtype == np.float32
    assert data["offsets"].shape == (4, 642, 3) and float(data["fps"]) == 12
    # The registration follows the bend: every frame's vertices lie on that frame's surface
    # (sampled densely), and they are closer to their true positions than standing still.
    from scipy.spatial import cKDTree

    frames = sorted(seq["sequence"].iterdir())
    for t in range(1, 4):
        target = trimesh.load(frames[t], process=False, force="mesh")
        tree = cKDTree(trimesh.sample.sample_surface(target, 100_000, seed=t)[0])
        fitted = tree.query(data["vertices"] + data["offsets"][t])[0].mean()
        still = tree.query(data["vertices"])[0].mean()
        assert fitted < 0.2 * still, (t, fitted, still)
    truth = seq["gt_vertices"] - seq["ref_vertices"]
    err = np.linalg.norm(data["offsets"] - truth, axis=-1).mean()
    still = np.linalg.norm(truth, axis=-1).mean()
    assert err < 0.7 * still, (err, still)
    gltf = read_glb_json(out / "animated.glb")
    prim = gltf["meshes"][0]["primitives"][0]
    assert len(prim["targets"]) == 4 and gltf["meshes"][0]["extras"]["targetNames"][0] == "AM_000"
    assert gltf["animations"][0]["channels"][0]["target"]["path"] == "weights"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"


def _expect_refusal(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_refuses_missing_reference(seq, tmp_path):
    _expect_refusal(run_cli("--reference", tmp_path / "nope.obj", "--sequence", seq["sequence"], "--out", tmp_path / "o"),
                    "reference file not found", "nope.obj")


def test_refuses_empty_and_single_frame_folders(seq, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_refusal(run_cli("--reference", seq["reference"], "--sequence", empty, "--out", tmp_path / "o"), "no mesh files")
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.ply").write_bytes((seq["sequence"] / "frame_000.ply").read_bytes())
    _expect_refusal(run_cli("--reference", seq["reference"], "--sequence", one, "--out", tmp_path / "o"), "only 1 frame")


def test_refuses_corrupt_frame_and_names_it(seq, tmp_path):
    (seq["sequence"] / "frame_002.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\ngarbage\x00\x01")
    _expect_refusal(run_cli("--reference", seq["reference"], "--sequence", seq["sequence"], "--out", tmp_path / "o"),
                    "frame 2", "frame_002.ply")
    assert not (tmp_path / "o" / "animation.npz").exists()


def test_refuses_nan_vertices(seq, tmp_path):
    (seq["sequence"] / "frame_001.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    _expect_refusal(run_cli("--reference", seq["reference"], "--sequence", seq["sequence"], "--out", tmp_path / "o"),
                    "NaN")


@pytest.fixture
def panda_sequence(tmp_path_factory, shared_examples):
    """panda.glb under a smooth bend + twist + sway, 16 frames re-meshed by subdivision."""
    from backend.synthetic.deforming import deform_mesh_sequence

    root = tmp_path_factory.mktemp("panda")
    panda = shared_examples / "panda" / "panda.glb"
    mesh = trimesh.load(panda, process=False, force="mesh")
    truth = deform_mesh_sequence(mesh.vertices, mesh.faces, 16, seed=0)
    (root / "frames").mkdir()
    for t, v in enumerate(truth):
        sv, sf = trimesh.remesh.subdivide(v, mesh.faces)
        trimesh.Trimesh(sv, sf, process=False).export(root / "frames" / f"panda_{t:02d}.ply")
    return {"reference": panda, "sequence": root / "frames", "truth": truth, "vertices": np.asarray(mesh.vertices)}


STAGE2_SHIPPED = (REPO / "backend" / "weights" / "tiny" / "stage2" / "model.safetensors").is_file()
# Vertex error against the truth / error of leaving the panda at rest, on the 16-frame panda
# sequence below (seed 0), measured 2026-12-03 with the shipped tiny weights
# (pytest tests/test_cli_register.py -k learned_methods -s; optimize: `python -m backend register
# --method optimize` on the same frames). Mean over the frames:
#   learned 0.969 (the raw model 1.08: the safeguard holds 11 of its 15 moving frames at rest),
#   learned-optimize 0.563, optimize 0.604.
# With the learned_weights fixture's untrained Stage II instead (seed 0, passed as --weights to the
# same command): learned 1.000 (every frame held), learned-optimize 0.573.
# Bounds: learned 0.99, between its 0.969 and doing nothing (1.0), so it fails if the learned
# frames it keeps stop helping; learned-optimize and optimize about 1.25x theirs; untrained learned 1.05.
PANDA_BOUNDS = {"learned": 0.99, "learned-optimize": 0.72, "optimize": 0.75, "learned-untrained": 1.05}
# The worst single frame (1-15; frame 0 is the reference's pose for the model), measured as above:
# learned 1.000 (its held frames are the rest pose; the raw model's frames reach 1.06-2.34),
# learned-optimize 0.618 (untrained Stage II: 0.618), optimize 0.690, untrained learned 1.000. Bounds:
# learned 1.05, below what the raw model does on the frames it gets wrong; learned-optimize and optimize
# 1.25-1.3x theirs.
PANDA_WORST_FRAME = {"learned": 1.05, "learned-optimize": 0.80, "optimize": 0.86, "learned-untrained": 1.05}


def _check_panda_truth(method, panda_sequence, offsets):
    """The result's vertex error against the true positions, over the error of leaving the panda
    at rest, under PANDA_BOUNDS (mean over the frames) and PANDA_WORST_FRAME (every moving frame)."""
    truth = panda_sequence["truth"] - panda_sequence["vertices"][None]
    err = np.linalg.norm(offsets - truth, axis=-1).mean(axis=1)
    still = np.linalg.norm(truth, axis=-1).mean(axis=1)
    ratio, per_frame = err.mean() / still.mean(), err[1:] / still[1:]
    print(f"{method}: {err.mean():.5f} vs still {still.mean():.5f} = {ratio:.3f}x; worst frame "
          f"{per_frame.max():.3f}x")
    assert ratio < PANDA_BOUNDS[method], (method, err.mean(), still.mean())
    assert per_frame.max() < PANDA_WORST_FRAME[method], (method, per_frame.round(3))


@pytest.mark.parametrize("method", ["learned", "learned-optimize"])
def test_learned_methods_on_the_panda_from_the_cli(panda_sequence, tmp_path, method):
    out = tmp_path / method
    args = ("--reference", panda_sequence["reference"], "--sequence", panda_sequence["sequence"],
            "--out", out, "--method", method, "--device", "cpu", "--json")
    proc = run_cli(*args)
    if not STAGE2_SHIPPED and method == "learned":
        # Until the Stage II weights ship, "learned" says so and writes nothing.
        _expect_refusal(proc, "not installed", "stage2")
        assert not (out / "animation.npz").exists()
        return
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 16
    if STAGE2_SHIPPED:
        assert result["method"] == method and result["num_latents"] == 32
    else:
        # The default must work on any install: learned-optimize falls back to optimize, and says so.
        assert result["method"] == "optimize"
        assert any("ran 'optimize' alone" in w for w in result["warnings"]), result["warnings"]
    data = np.load(out / "animation.npz")
    offsets = data["offsets"]
    assert offsets.shape == (16,) + panda_sequence["vertices"].shape and np.isfinite(offsets).all()
    # It tracks the motion: closer to the true positions than leaving the panda at rest, by the
    # measured margins (PANDA_BOUNDS; the twist in this motion slides the surface along itself,
    # which surface fitting cannot see), on the whole and on every frame.
    _check_panda_truth(result["method"], panda_sequence, offsets)


@pytest.mark.parametrize("method", ["learned", "learned-optimize"])
def test_learned_methods_with_a_weights_folder(panda_sequence, tmp_path, method, learned_weights):
    out = tmp_path / method
    proc = run_cli("--reference", panda_sequence["reference"], "--sequence", panda_sequence["sequence"],
                   "--out", out, "--method", method, "--weights-dir", learned_weights, "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["method"] == method and result["frames"] == 16
    # The only warnings are the safeguard's, naming the frames it held back (the tiny model
    # alone fits some panda frames worse than standing still: README benchmark).
    from backend.pipelines.register import fit_warnings

    fit = result["fit"]
    assert fit["measure"] == "surface_distance" and len(fit["per_frame"]) == 16
    assert result["warnings"] == fit_warnings(fit)
    assert fit["held_frames"] == [e["frame"] for e in fit["per_frame"] if e["held"]]
    offsets = np.load(out / "animation.npz")["offsets"]
    assert offsets.shape == (16,) + panda_sequence["vertices"].shape and np.isfinite(offsets).all()
    # Against the truth: the shipped weights' bounds (the fixture's weights are the shipped ones
    # where they exist); an untrained Stage II's learned frames are all held at rest.
    _check_panda_truth(method if STAGE2_SHIPPED or method == "learned-optimize" else "learned-untrained", panda_sequence,
                       offsets)


def test_missing_weights_folder_is_refused(panda_sequence, tmp_path):
    proc = run_cli("--reference", panda_sequence["reference"], "--sequence", panda_sequence["sequence"],
                   "--out", tmp_path / "out", "--weights-dir", tmp_path / "nowhere", "--device", "cpu")
    _expect_refusal(proc, "weights folder not found", "nowhere")
    assert not (tmp_path / "out" / "animation.npz").exists()
