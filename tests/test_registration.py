"""Non-rigid registration ("optimize") and the procedural sequences it is measured on."""

import time

import numpy as np
import pytest

from backend.errors import BadInput, Cancelled
from backend.registration import register_optimize
from backend.synthetic.deforming import deform_mesh_sequence, make_creature_sequence


def _diag(v):
    return float(np.linalg.norm(v.max(axis=0) - v.min(axis=0)))


def _mean_error(ref, gt, positions):
    return float(np.linalg.norm(positions - gt, axis=-1).mean() / _diag(ref))


@pytest.fixture(scope="module")
def small_seq():
    return make_creature_sequence(n_frames=6, ref_vertices_target=1500, frame_vertices_target=5000, seed=3)


def test_follows_creature_with_different_topology(small_seq):
    s = small_seq
    ref, gt = s["ref_vertices"], s["gt_vertices"]
    offsets = register_optimize(ref, s["ref_faces"], s["frames"])
    assert offsets.shape == gt.shape and offsets.dtype == np.float32
    before = _mean_error(ref, gt, np.broadcast_to(ref, gt.shape))
    after = _mean_error(ref, gt, ref + offsets)
    assert after < 0.4 * before, (before, after)


def test_identical_frames_give_near_zero_offsets(small_seq):
    s = small_seq
    ref, faces = s["ref_vertices"], s["ref_faces"]
    offsets = register_optimize(ref, faces, [(ref, faces)] * 2)
    moved = np.linalg.norm(offsets, axis=-1) / _diag(ref)
    # Sampling the target at face centroids lets vertices settle a little along the surface.
    assert moved.mean() < 2e-3 and moved.max() < 2e-2


def test_rigid_translation_is_recovered(small_seq):
    s = small_seq
    ref = s["ref_vertices"]
    shift = np.array([0.06, -0.03, 0.02]) * _diag(ref)
    fine_v, fine_f = s["frames"][0]
    rest_fine = fine_v - (s["gt_vertices"][0].mean(axis=0) - ref.mean(axis=0))  # any frame, moved
    frames = [(rest_fine + k * shift / 2, fine_f) for k in (1, 2)]
    offsets = register_optimize(ref, s["ref_faces"], frames)
    mean_offset = offsets[-1].mean(axis=0)
    assert np.linalg.norm(mean_offset - (frames[-1][0].mean(axis=0) - ref.mean(axis=0))) < 0.01 * _diag(ref)


def test_pure_translation_of_reference_topology():
    s = make_creature_sequence(n_frames=1, ref_vertices_target=1500, frame_vertices_target=1500, seed=1)
    ref, faces = s["ref_vertices"], s["ref_faces"]
    shift = np.array([0.05, 0.02, -0.03]) * _diag(ref)
    offsets = register_optimize(ref, faces, [(ref + shift, faces)])
    err = np.linalg.norm(offsets - shift, axis=-1) / _diag(ref)
    assert err.mean() < 3e-3


def test_cancel_after_first_frame(small_seq):
    s = small_seq
    calls = []

    def progress(step, total, message):
        calls.append((step, total, message))

    start = time.perf_counter()
    with pytest.raises(Cancelled):
        register_optimize(s["ref_vertices"], s["ref_faces"], s["frames"], progress=progress,
                          should_cancel=lambda: len(calls) >= 1)
    assert len(calls) == 1 and calls[0][:2] == (1, 6)
    assert time.perf_counter() - start < 5.0


def test_progress_once_per_frame(small_seq):
    s = small_seq
    calls = []
    register_optimize(s["ref_vertices"], s["ref_faces"], s["frames"][:3], progress=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]


def test_bad_input(small_seq):
    s = small_seq
    ref, faces = s["ref_vertices"], s["ref_faces"]
    fv, ff = s["frames"][0]
    nan_v = fv.copy()
    nan_v[10, 1] = np.nan
    with pytest.raises(BadInput, match="frame 1"):
        register_optimize(ref, faces, [(fv, ff), (nan_v, ff)])
    with pytest.raises(BadInput):
        register_optimize(ref, faces, [(np.zeros((0, 3)), np.zeros((0, 3), int))])
    with pytest.raises(BadInput):
        register_optimize(ref, faces, [(fv, np.zeros((0, 3), int))])
    with pytest.raises(BadInput):
        register_optimize(ref, faces, [])
    bad_ref = ref.copy()
    bad_ref[0, 0] = np.inf
    with pytest.raises(BadInput):
        register_optimize(bad_ref, faces, [(fv, ff)])
    with pytest.raises(BadInput):
        register_optimize(ref, faces + len(ref), [(fv, ff)])


def test_loose_vertices_degenerate_faces_and_components(small_seq):
    s = small_seq
    ref, faces = s["ref_vertices"], s["ref_faces"]
    far = ref + np.array([3.0, 0.0, 0.0])  # a second, separate copy
    loose = ref[:3] + np.array([0.0, 0.3, 0.0])  # points in no face
    v = np.vstack([ref, far, loose])
    f = np.vstack([faces, faces + len(ref), [[0, 0, 1], [2, 3, 2]]])
    frame = (np.vstack([s["frames"][0][0], s["frames"][0][0] + [3.0, 0, 0]]),
             np.vstack([s["frames"][0][1], s["frames"][0][1] + len(s["frames"][0][0])]))
    offsets = register_optimize(v, f, [frame])
    assert offsets.shape == (1, len(v), 3) and np.isfinite(offsets).all()
    gt0 = s["gt_vertices"][0]
    before = _mean_error(ref, gt0, ref)
    assert _mean_error(ref, gt0, ref + offsets[0, :len(ref)]) < 0.6 * before
    assert _mean_error(ref, gt0 + [3.0, 0, 0], far + offsets[0, len(ref):2 * len(ref)]) < 0.6 * before


def test_large_reference_goes_through_a_proxy(small_seq):
    s = small_seq
    ref, gt = s["ref_vertices"], s["gt_vertices"][:2]
    # A low limit exercises the proxy path without building a million-vertex mesh.
    offsets = register_optimize(ref, s["ref_faces"], s["frames"][:2], max_vertices=500, proxy_nodes=400)
    before = _mean_error(ref, gt, np.broadcast_to(ref, gt.shape))
    assert _mean_error(ref, gt, ref + offsets) < 0.6 * before


def test_generator_is_deterministic_and_topologies_differ():
    a = make_creature_sequence(n_frames=3, ref_vertices_target=800, frame_vertices_target=2000, seed=5)
    b = make_creature_sequence(n_frames=3, ref_vertices_target=800, frame_vertices_target=2000, seed=5)
    c = make_creature_sequence(n_frames=3, ref_vertices_target=800, frame_vertices_target=2000, seed=6)
    assert np.array_equal(a["ref_vertices"], b["ref_vertices"])
    assert np.array_equal(a["gt_vertices"], b["gt_vertices"])
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a["frames"], b["frames"]))
    assert not np.array_equal(a["gt_vertices"], c["gt_vertices"][: len(a["gt_vertices"])]) or \
        a["ref_vertices"].shape != c["ref_vertices"].shape
    fv, ff = a["frames"][0]
    assert len(fv) > 1.5 * len(a["ref_vertices"]) and len(ff) != len(a["ref_faces"])
    assert a["gt_vertices"].shape == (3,) + a["ref_vertices"].shape
    assert 600 < len(a["ref_vertices"]) < 1000
    assert a["fps"] == 24


def test_real_mesh_sequence(shared_examples):
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.load(shared_examples / "panda" / "panda.glb", process=False, force="mesh")
    v, f = np.asarray(mesh.vertices, float), np.asarray(mesh.faces)
    gt = deform_mesh_sequence(v, f, 4, seed=0)
    assert gt.shape == (4,) + v.shape
    assert np.array_equal(gt, deform_mesh_sequence(v, f, 4, seed=0))
    offsets = register_optimize(v, f, [(g, f) for g in gt])
    before = _mean_error(v, gt, np.broadcast_to(v, gt.shape))
    assert _mean_error(v, gt, v + offsets) < 0.7 * before
