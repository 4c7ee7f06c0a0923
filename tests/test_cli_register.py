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


def test_learned_method_is_refused_clearly_until_built(seq, tmp_path):
    proc = run_cli("--reference", seq["reference"], "--sequence", seq["sequence"], "--out", tmp_path / "o",
                   "--method", "learned")
    _expect_refusal(proc, "not built yet")
