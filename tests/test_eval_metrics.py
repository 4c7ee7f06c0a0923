"""ActionBench metrics (backend/eval): known answers, alignment, CD-M vs Chamfer, and the CLI.

Sample counts are kept small so the file runs in well under a minute on two cores; the
point-level tests feed exact point clouds so their expected values are exact.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial.distance import cdist

from backend.eval import AlignSettings, canonical_rotations, evaluate, evaluate_points
from backend.eval.cli import main as eval_main

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(n_samples=20_000, n_icp=1_000, n_chamfer=2_000)


def _rotation(axis, degrees):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _lumpy_mesh():
    """An asymmetric closed-ish shape (box + offset ball), so the best alignment is unique."""
    box = trimesh.creation.box(extents=(1.0, 0.6, 0.3))
    ball = trimesh.creation.icosphere(subdivisions=2, radius=0.25)
    ball.apply_translation((0.45, 0.25, 0.1))
    mesh = trimesh.util.concatenate([box.subdivide().subdivide(), ball])
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def _tracked_points(frames, faces, n, seed=7):
    """GT-style tracked points: one (face, barycentric) draw on frame 0 carried through the frames."""
    rng = np.random.default_rng(seed)
    tri0 = frames[0][faces]
    area = 0.5 * np.linalg.norm(np.cross(tri0[:, 1] - tri0[:, 0], tri0[:, 2] - tri0[:, 0]), axis=1)
    fi = rng.choice(len(faces), n, p=area / area.sum())
    u = rng.random((n, 2))
    r = np.sqrt(u[:, 0])
    bary = np.stack([1 - r, r * (1 - u[:, 1]), r * u[:, 1]], axis=1)
    xyz = np.stack([np.einsum("nk,nkc->nc", bary, f[faces[fi]]) for f in frames])
    return np.concatenate([xyz, np.zeros_like(xyz)], axis=-1)  # normals unused by the metrics


def _brute_chamfer(a, b):
    d = cdist(a, b)
    return d.min(axis=1).mean() + d.min(axis=0).mean()


# --------------------------------------------------------------------------------------------


def test_canonical_rotations_are_the_cube_group():
    rots = canonical_rotations()
    assert rots.shape == (24, 3, 3)
    assert np.allclose(rots @ rots.transpose(0, 2, 1), np.eye(3))
    assert np.allclose(np.linalg.det(rots), 1.0)
    assert len({tuple(np.round(r).astype(int).ravel()) for r in rots}) == 24
    assert np.allclose(rots[0], np.eye(3))


@pytest.fixture(scope="module")
def lumpy_gt():
    v, f = _lumpy_mesh()
    return v, f, _tracked_points(np.stack([v, v, v]), f, 20_000)


@pytest.fixture(scope="module")
def identical_result(lumpy_gt):
    v, f, gt = lumpy_gt
    return evaluate(v, f, np.zeros((3,) + v.shape), gt, **FAST)


def test_identical_prediction_scores_near_zero(identical_result):
    r = identical_result
    # Two independent 20k samplings of a ~2.9 m^2 surface: the Chamfer floor is about 0.01.
    assert r["cd_3d"] < 0.02 and r["cd_4d"] < 0.02 and r["cd_m"] < 0.02, r
    assert np.allclose(r["alignment_frame0"]["rotation"], np.eye(3), atol=0.02)


def test_rotated_scaled_shifted_mesh_is_aligned_away(lumpy_gt, identical_result):
    v, f, gt = lumpy_gt
    rot = _rotation((1, 2, 0.5), 30)
    scale = np.array([1.25, 0.8, 1.1])
    shift = np.array([0.3, -0.2, 0.15])
    # The prediction is the ground truth seen through the inverse of a transform in the family.
    pred_v = ((v - shift) @ rot.T) / scale
    r = evaluate(pred_v, f, np.zeros((3,) + v.shape), gt, **FAST)
    floor = identical_result
    for key in ("cd_3d", "cd_4d", "cd_m"):
        assert r[key] < floor[key] * 1.5 + 0.003, (key, r[key], floor[key])
    assert np.allclose(r["alignment_frame0"]["scale"], scale, atol=0.03)


def test_exact_points_rotation_scale_offset():
    """Exact correspondences: after alignment all three metrics are ~0 (a 30 degree turn is not
    one of the 24 starts, so the optimiser has to find it)."""
    v, f = _lumpy_mesh()
    gt = _tracked_points(np.stack([v, v]), f, 1_500)[..., :3]
    rot = _rotation((0, 0, 1), 30)
    pred = ((gt - np.array([0.2, 0.1, -0.3])) @ rot.T) / np.array([1.2, 0.9, 1.1])
    r = evaluate_points(pred, pred, gt, n_icp=1_500, n_chamfer=1_500)
    assert r["cd_3d"] < 0.004 and r["cd_4d"] < 0.004 and r["cd_m"] < 0.004, r


def test_known_answer_when_alignment_cannot_help():
    """Frame 0 is exact (so the frame-0 alignment is the identity) and later frames bend
    non-rigidly and drift: CD-4D and CD-M follow from the offsets alone."""
    v, f = _lumpy_mesh()
    base = _tracked_points(np.stack([v]), f, 1_200)[0, :, :3]
    gt = np.stack([base, base, base])
    pred = gt.copy()
    pred[1, :, 2] += 0.3 * base[:, 0] ** 2  # a bend: not in the transform family
    pred[2, :, 1] += 0.2 * base[:, 0] ** 2 + 0.05
    r = evaluate_points(pred, pred, gt, n_icp=1_200, n_chamfer=1_200)  # all points: brute force is exact
    expected_4d = np.mean([_brute_chamfer(pred[t], gt[t]) for t in range(3)])
    expected_m = 2 * np.linalg.norm(pred - gt, axis=-1).mean()
    assert np.allclose(r["alignment_frame0"]["translation"], 0.0, atol=1e-9)
    assert np.allclose(r["alignment_frame0"]["rotation"], np.eye(3), atol=1e-9)
    assert r["cd_4d"] == pytest.approx(expected_4d, rel=1e-9)
    assert r["cd_m"] == pytest.approx(expected_m, rel=1e-9)
    assert r["cd_3d_per_frame"][0] < 1e-9
    # per-frame alignment can reduce a bend, not remove it
    assert 0.2 * r["cd_4d_per_frame"][1] < r["cd_3d_per_frame"][1] <= r["cd_4d_per_frame"][1] + 1e-6


def test_constant_offset_is_removed_but_drift_is_not():
    """A constant offset (every frame) is removed by both alignments; a per-frame drift only by
    the per-frame one, and CD-M then equals twice the mean drift."""
    v, f = _lumpy_mesh()
    base = _tracked_points(np.stack([v]), f, 1_000)[0, :, :3]
    gt = np.stack([base] * 3)
    const = gt + np.array([0.25, -0.1, 0.05])
    r = evaluate_points(const, const, gt, n_icp=1_000, n_chamfer=1_000)
    assert r["cd_3d"] < 0.004 and r["cd_4d"] < 0.004 and r["cd_m"] < 0.004, r

    drift = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.08, 0.06]])
    moving = gt + drift[:, None, :]
    r = evaluate_points(moving, moving, gt, n_icp=1_000, n_chamfer=1_000)
    assert r["cd_3d"] < 0.004, r
    assert r["cd_4d"] == pytest.approx(np.mean([_brute_chamfer(moving[t], gt[t]) for t in range(3)]), rel=1e-9)
    assert r["cd_m"] == pytest.approx(2 * np.linalg.norm(drift, axis=1).mean(), rel=1e-9)


def test_cd_m_sees_sliding_that_chamfer_cannot():
    """A sphere whose surface points turn about z: every frame is the same sphere (Chamfer ~0),
    but the tracked points move (CD-M > 0). The prediction is a static sphere."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    angles = [0, 30, 60, 90]
    gt_frames = np.stack([v @ _rotation((0, 0, 1), a).T for a in angles])
    gt = _tracked_points(gt_frames, f, 20_000)
    r = evaluate(v, f, np.zeros((len(angles),) + v.shape), gt, **FAST)
    # 20k samples on a 12.6 m^2 sphere: a Chamfer floor of about 0.026
    assert r["cd_3d"] < 0.04 and r["cd_4d"] < 0.04, r
    # each point moves 2 r_xy sin(a/2); E[r_xy] = pi/4 on the unit sphere; both directions summed
    expected = 2 * np.mean([2 * (np.pi / 4) * np.sin(np.radians(a) / 2) for a in angles])
    assert r["cd_m"] > 20 * r["cd_4d"]
    assert r["cd_m"] == pytest.approx(expected, rel=0.15)


# --------------------------------------------------------------------------------------------
# CLI


def _write_case(tmp_path, n_frames_pred=2, n_frames_gt=2, gt_mutate=None):
    v, f = _lumpy_mesh()
    offsets = np.zeros((n_frames_pred,) + v.shape, dtype=np.float32)
    offsets[:, :, 0] += np.linspace(0, 0.1, n_frames_pred)[:, None]
    out = tmp_path / "out"
    out.mkdir()
    np.savez(out / "animation.npz", vertices=v.astype(np.float32), faces=f, offsets=offsets, fps=np.float32(24))
    gt = _tracked_points(np.stack([v] * n_frames_gt), f, 3_000).astype(np.float32)
    if gt_mutate:
        gt = gt_mutate(gt)
    np.savez(tmp_path / "gt.npz", points=gt)
    return out, tmp_path / "gt.npz"


SMALL = ["--samples", "3000", "--icp-points", "500", "--chamfer-points", "1000", "--iterations", "60"]


def test_cli_json_line(tmp_path, capsys):
    out, gt = _write_case(tmp_path)
    assert eval_main(["--pred", str(out), "--gt", str(gt), "--json", *SMALL]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert list(data) == ["cd_3d", "cd_4d", "cd_m"]
    assert all(isinstance(x, float) and np.isfinite(x) and x >= 0 for x in data.values())
    assert data["cd_m"] > 0.05  # the prediction drifts 0.1 along x, the ground truth does not


@pytest.mark.parametrize("case, needle", [
    ("missing_pred", "no animation.npz"),
    ("missing_gt", "ground truth not found"),
    ("frames", "3 frames but the ground truth has 2"),
    ("nan", "NaN"),
    ("shape", "[T, N, 6]"),
])
def test_cli_bad_input_exit_2(tmp_path, capsys, case, needle):
    mutate = {"nan": lambda g: np.where(np.arange(g.shape[1])[None, :, None] == 5, np.nan, g),
              "shape": lambda g: g[0]}.get(case)
    out, gt = _write_case(tmp_path, n_frames_pred=3 if case == "frames" else 2, gt_mutate=mutate)
    if case == "missing_pred":
        (out / "animation.npz").unlink()
    if case == "missing_gt":
        gt.unlink()
    assert eval_main(["--pred", str(out), "--gt", str(gt), *SMALL]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err


def test_module_entry_point_reports_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backend.eval.cli", "--pred", str(tmp_path / "nope"),
                           "--gt", str(tmp_path / "gt.npz"), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "prediction not found" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
