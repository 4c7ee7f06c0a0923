"""Registration on frames with the defects real files have (issue 9): winding, duplicate
vertices, interior faces, holes, non-manifold edges, several parts, scale, noise; the
orientation pass behind it; and the per-frame safeguard."""

import numpy as np
import pytest
import trimesh

from backend.geometry.orient import orient_faces
from backend.registration import register_optimize
from backend.synthetic.deforming import make_creature_sequence
from backend.synthetic.remesh import punch_holes, scan_noise, set_winding, signed_volume


def _normals_agree(v, faces, reference_faces):
    n = trimesh.Trimesh(v, faces, process=False).face_normals
    m = trimesh.Trimesh(v, reference_faces, process=False).face_normals
    return float((n * m).sum(axis=1).min())


@pytest.fixture(scope="module")
def sphere():
    s = trimesh.creation.icosphere(subdivisions=4)
    return np.asarray(s.vertices) * [0.5, 1.2, 0.4], np.asarray(s.faces)


@pytest.mark.parametrize("winding", ["inward", "mixed"])
def test_orientation_undoes_inward_and_mixed_winding(sphere, winding):
    v, f = sphere
    bad = set_winding(v, f, winding, seed=1)
    assert _normals_agree(v, bad, f) < 0  # some (or all) faces really are turned
    fixed = orient_faces(v, bad)
    assert _normals_agree(v, fixed, f) > 0.99
    assert np.array_equal(np.sort(fixed, axis=1), np.sort(f, axis=1))  # same triangles, same order


def test_orientation_of_holes_parts_duplicates_and_fins(sphere):
    v, f = sphere
    hv, hf = punch_holes(v, f, 3, 0.25, seed=0)
    assert _normals_agree(hv, orient_faces(hv, hf[:, [0, 2, 1]]), hf) > 0.99
    # Two parts, the second an unwelded triangle soup (every corner its own vertex), inward.
    soup_v = (v + [2.0, 0, 0])[f].reshape(-1, 3)
    soup_f = np.arange(len(soup_v)).reshape(-1, 3)[:, [0, 2, 1]]
    all_v, all_f = np.concatenate([v, soup_v]), np.concatenate([f, soup_f + len(v)])
    out = orient_faces(all_v, all_f)
    assert np.array_equal(out[:len(f)], f)
    assert signed_volume(soup_v, out[len(f):] - len(v)) > 0
    # A fin: a third face on an existing edge makes it non-manifold; nothing breaks.
    fin_v = np.concatenate([v, [[0.0, 0.0, 2.0]]])
    fin_f = np.concatenate([f, [[f[0, 0], f[0, 1], len(v)]]])[:, [0, 2, 1]]
    assert _normals_agree(fin_v, orient_faces(fin_v, fin_f)[:len(f)], np.concatenate([f, fin_f[-1:]])[:len(f)]) > 0.99


@pytest.fixture(scope="module")
def creature():
    return make_creature_sequence(n_frames=5, ref_vertices_target=1500, frame_vertices_target=5000, seed=3)


def _defect(kind, v, f, t):
    size = float(np.ptp(v, axis=0).max())
    if kind == "inward":
        return v, set_winding(v, f, "inward")
    if kind == "mixed":
        return v, set_winding(v, f, "mixed", seed=t)
    if kind == "soup":  # duplicate vertices: every triangle its own three corners
        return v[f].reshape(-1, 3), np.arange(3 * len(f)).reshape(-1, 3)
    if kind == "interior":  # an inner shell, wound inward as well
        inner = v.mean(axis=0) + 0.5 * (v - v.mean(axis=0))
        return np.concatenate([v, inner]), np.concatenate([f, (f + len(v))[:, [0, 2, 1]]])
    if kind == "holes":
        return punch_holes(v, f, 6, 0.04 * size, seed=t)
    if kind == "scale":
        return v.mean(axis=0) + 1.03 * (v - v.mean(axis=0)), f
    if kind == "noise":
        return scan_noise(v, 0.003 * size, seed=t), f
    raise ValueError(kind)


# The worst frame's vertex error over that frame's error of leaving the mesh still, measured
# 2026-12-03 (creature seed 3, 5 frames; pytest tests/test_frame_defects.py -k follows_frames -s):
# inward 0.298, mixed 0.298, soup 0.302, interior 0.504, holes 0.302, scale 0.371, noise 0.317,
# each on frame 0, the largest jump from the rest pose (frames 1-4: 0.19-0.32). Bounds: ~1.3x those.
WORST_FRAME = {"interior": 0.65, "scale": 0.48}
WORST_FRAME_DEFAULT = 0.40


@pytest.mark.parametrize("kind", ["inward", "mixed", "soup", "interior", "holes", "scale", "noise"])
def test_registration_follows_frames_with_defects(creature, kind):
    s = creature
    ref, gt = s["ref_vertices"], s["gt_vertices"]
    frames = [_defect(kind, np.asarray(v, float), np.asarray(f), t) for t, (v, f) in enumerate(s["frames"])]
    offsets = register_optimize(ref, s["ref_faces"], frames)
    diag = float(np.linalg.norm(np.ptp(ref, axis=0)))
    per_frame = np.linalg.norm(ref + offsets - gt, axis=-1).mean(axis=1) / diag
    still_per_frame = np.linalg.norm(ref - gt, axis=-1).mean(axis=1) / diag
    err, still = per_frame.mean(), still_per_frame.mean()
    worst = float((per_frame / still_per_frame).max())
    print(f"{kind}: {err:.4f} vs still {still:.4f}; worst frame {worst:.3f}x its still error")
    assert err < 0.45 * still, (kind, err, still)
    # Every frame follows its own motion: none is left near the still pose or sent astray.
    assert worst < WORST_FRAME.get(kind, WORST_FRAME_DEFAULT), (kind, (per_frame / still_per_frame).round(3))


def test_a_result_that_fits_worse_than_its_start_is_held_back(creature, monkeypatch):
    """The safeguard itself: whatever the solver returns, a frame never ends further from its
    surface than the pose it started from. A solver that throws frame 2 far away is caught, and
    a rigid pre-step that turns the body over is skipped."""
    import backend.registration.optimize as opt

    s = creature
    ref, faces = s["ref_vertices"], s["ref_faces"]
    real_frame = opt._register_frame
    calls = []

    def wild_frame(x, rot, *args):
        calls.append(1)
        x, rot, rigid_ok = real_frame(x, rot, *args)
        return (x + 0.5 if len(calls) == 3 else x), rot, rigid_ok

    monkeypatch.setattr(opt, "_register_frame", wild_frame)
    report = []
    offsets = register_optimize(ref, faces, s["frames"], fit_report=report)
    assert [e["accepted"] for e in report] == [True, True, False, True, True]
    np.testing.assert_array_equal(offsets[2], offsets[1])  # kept at its start: frame 1's result
    assert report[2]["fit_after"] == report[2]["fit_before"]
    # Against the truth (vertex error / that frame's error of standing still), measured 2026-12-03
    # (pytest tests/test_frame_defects.py -k held_back -s): frame 2, held at frame 1's result,
    # 0.453 (the thrown result would be 8.1); the frames after it recover (0.266, 0.208) and the
    # others are as without the fault (0.298, 0.233). Bounds: 0.6 and 0.4, ~1.3x those.
    gt = s["gt_vertices"]
    ratios = np.linalg.norm(ref + offsets - gt, axis=-1).mean(axis=1) / np.linalg.norm(ref - gt, axis=-1).mean(axis=1)
    print(f"held frame 2: per frame {np.round(ratios, 3).tolist()}x the still error")
    assert ratios[2] < 0.6 and np.delete(ratios, 2).max() < 0.4, ratios

    monkeypatch.setattr(opt, "_register_frame", real_frame)
    c, si = np.cos(1.0), np.sin(1.0)
    turn = np.array([[c, -si, 0.0], [si, c, 0.0], [0.0, 0.0, 1.0]])  # a 1-radian turn about z, every step
    turned = lambda x, tgt, n, w: (turn, x.mean(axis=0) - turn @ x.mean(axis=0))  # noqa: E731
    monkeypatch.setattr(opt, "_rigid_step", turned)
    report = []
    offsets = register_optimize(ref, faces, s["frames"], fit_report=report)
    assert not any(e["rigid_accepted"] for e in report), report
    err = np.linalg.norm(ref + offsets - gt, axis=-1).mean()
    assert err < 0.45 * np.linalg.norm(ref - gt, axis=-1).mean()
