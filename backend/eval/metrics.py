"""ActionBench metrics: CD-3D, CD-4D and CD-M between an animated mesh and tracked ground-truth points.

Conventions follow the upstream evaluation (facebookresearch/actionmesh, actionbench/benchmark.py,
chamfer.py, sample_mesh.py, sample_point_cloud.py); the code here is our own:

* Prediction frame t is sampled with ``n_samples`` (100k) area-weighted surface points, seed
  ``seed + t`` (trimesh's sampler, as upstream).
* Alignment subsets: one permutation from ``np.random.RandomState(seed)`` picks the same
  ``n_icp`` (10k) indices in every frame, separately for the prediction and the ground truth.
* Alignment maps the prediction onto the ground truth (see ``alignment.py``). CD-3D aligns each
  frame on its own; CD-4D and CD-M use the alignment of frame 0 for every frame. (Upstream runs the
  frame-0 alignment twice, once for CD-3D and once "unified"; the inputs are identical, so here it
  is run once and reused.)
* Chamfer (``chamfer_distance``): KD-trees over the whole clouds, queried with up to ``n``
  (10k) points of the other cloud, chosen by ``RandomState(seed)`` for the prediction and
  ``RandomState(seed + 1)`` for the ground truth (the same choice in every frame); the mean
  unsquared nearest-neighbour distance each way, summed. Averaged over frames.
* CD-M (``motion_chamfer_distance``): ``n_samples`` points are placed once on prediction frame 0
  (faces drawn by area, uniform barycentric coordinates; torch's generator seeded with ``seed``
  as upstream does) and carried by the same (face, barycentric) through every frame. Points are
  matched to the ground truth by nearest neighbour at frame 0 only, both ways; the distance between
  matched points is averaged over time and points, and the two directions are summed.
* Only xyz of the ground truth is used; its normals are ignored, as upstream.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from ..errors import BadInput
from ..geometry.normals import face_areas
from .alignment import Alignment, AlignSettings, align

N_SAMPLES = 100_000
N_ICP = 10_000
N_CHAMFER = 10_000
SEED = 44


# ---------------------------------------------------------------------------------------------
# Sampling


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` area-weighted random points on one frame's surface, [n, 3]."""
    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, dtype=np.float64), faces=faces, process=False)
    points, _ = trimesh.sample.sample_surface(mesh, count=n, seed=seed)
    return np.asarray(points, dtype=np.float64)


def sample_barycentric(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int):
    """Faces drawn by area and uniform barycentric weights for ``n`` points: ([n], [n, 3]).

    Drawn with torch's generator (forked, so the caller's state is untouched) in the order upstream
    draws them: the faces, then one [2, 1, n] uniform block for the barycentric coordinates.
    """
    v = torch.as_tensor(np.asarray(vertices, dtype=np.float32))
    f = torch.as_tensor(np.asarray(faces, dtype=np.int64))
    tri = v[f]
    # Upstream's float32 torch areas, not backend.geometry.normals.face_areas: the faces drawn
    # from them must be upstream's, draw for draw.
    areas = 0.5 * torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1).norm(dim=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        face_idx = areas[None].multinomial(n, replacement=True)[0]
        uv = torch.rand(2, 1, n, dtype=torch.float32)
    root_u = uv[0, 0].sqrt()
    bary = torch.stack((1.0 - root_u, root_u * (1.0 - uv[1, 0]), root_u * uv[1, 0]), dim=-1)
    return face_idx.numpy(), bary.double().numpy()


def apply_barycentric(frames: np.ndarray, faces: np.ndarray, face_idx: np.ndarray,
                      bary: np.ndarray) -> np.ndarray:
    """The same surface points on every frame of one topology: [T, V, 3] -> [T, n, 3]."""
    corners = faces[face_idx]  # [n, 3]
    out = np.empty((len(frames), len(face_idx), 3))
    for t, frame in enumerate(frames):
        out[t] = np.einsum("nk,nkc->nc", bary, frame[corners])
    return out


def subset_indices(n_total: int, n: int, seed: int) -> np.ndarray:
    """The first ``n`` of one seeded permutation, or everything when there are no more than ``n``."""
    if 0 < n < n_total:
        return np.random.RandomState(seed).permutation(n_total)[:n]
    return np.arange(n_total)


# ---------------------------------------------------------------------------------------------
# Distances


def chamfer_distance(pred: np.ndarray, gt: np.ndarray, n: int = N_CHAMFER, seed: int = SEED, *,
                     pred_tree: cKDTree | None = None, gt_tree: cKDTree | None = None) -> float:
    """Symmetric Chamfer distance: mean unsquared NN distance each way on up to ``n`` points, summed."""
    pred_tree = pred_tree if pred_tree is not None else cKDTree(pred)
    gt_tree = gt_tree if gt_tree is not None else cKDTree(gt)
    gt_query = gt[subset_indices(len(gt), n, seed + 1)]
    pred_query = pred[subset_indices(len(pred), n, seed)]
    gt_to_pred = pred_tree.query(gt_query, workers=-1)[0].mean()
    pred_to_gt = gt_tree.query(pred_query, workers=-1)[0].mean()
    return float(gt_to_pred + pred_to_gt)


def motion_chamfer_distance(preds: np.ndarray, gts: np.ndarray) -> float:
    """CD-M for tracked clouds preds [T, P, 3] and gts [T, Q, 3]: matching at frame 0 only."""
    if len(preds) != len(gts):
        raise BadInput(f"motion Chamfer needs the same number of frames: {len(preds)} vs {len(gts)}")
    _, gt_match = cKDTree(preds[0]).query(gts[0], workers=-1)  # for each GT point, a pred point
    _, pred_match = cKDTree(gts[0]).query(preds[0], workers=-1)  # for each pred point, a GT point
    d_gt = np.linalg.norm(preds[:, gt_match] - gts, axis=-1).mean()
    d_pred = np.linalg.norm(gts[:, pred_match] - preds, axis=-1).mean()
    return float(d_gt + d_pred)


# ---------------------------------------------------------------------------------------------
# Metrics


def evaluate_points(pred_frames: np.ndarray, pred_tracked: np.ndarray, gt: np.ndarray, *,
                    n_icp: int = N_ICP, n_chamfer: int = N_CHAMFER, seed: int = SEED,
                    align_settings: AlignSettings = AlignSettings(),
                    progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The three metrics from already-sampled prediction points.

    pred_frames [T, P, 3]: independent samples of each predicted frame (for CD-3D / CD-4D).
    pred_tracked [T, P', 3]: the same surface points carried through the frames (for CD-M).
    gt [T, N, 3]: tracked ground-truth points.
    """
    pred_frames = np.asarray(pred_frames, dtype=np.float64)
    pred_tracked = np.asarray(pred_tracked, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)[..., :3]
    n_frames = len(gt)
    if len(pred_frames) != n_frames or len(pred_tracked) != n_frames:
        raise BadInput(f"the prediction has {len(pred_frames)} frames but the ground truth has {n_frames}")

    pred_icp = pred_frames[:, subset_indices(pred_frames.shape[1], n_icp, seed)]
    gt_icp = gt[:, subset_indices(gt.shape[1], n_icp, seed)]

    alignments: list[Alignment] = []
    for t in range(n_frames):
        if progress:
            progress("align", t, n_frames)
        alignments.append(align(pred_icp[t], gt_icp[t], align_settings))
    unified = alignments[0]

    cd_3d, cd_4d = [], []
    for t in range(n_frames):
        if progress:
            progress("chamfer", t, n_frames)
        gt_tree = cKDTree(gt[t])
        aligned = alignments[t].apply(pred_frames[t])
        tree = cKDTree(aligned)
        cd_3d.append(chamfer_distance(aligned, gt[t], n_chamfer, seed, pred_tree=tree, gt_tree=gt_tree))
        if t > 0:
            aligned = unified.apply(pred_frames[t])
            tree = cKDTree(aligned)
        cd_4d.append(chamfer_distance(aligned, gt[t], n_chamfer, seed, pred_tree=tree, gt_tree=gt_tree))

    if progress:
        progress("motion", 0, 1)
    cd_m = motion_chamfer_distance(unified.apply(pred_tracked), gt)
    return {
        "cd_3d": float(np.mean(cd_3d)),
        "cd_4d": float(np.mean(cd_4d)),
        "cd_m": cd_m,
        "cd_3d_per_frame": [float(x) for x in cd_3d],
        "cd_4d_per_frame": [float(x) for x in cd_4d],
        "alignment_frame0": {"scale": unified.scale.tolist(), "rotation": unified.rotation.tolist(),
                             "translation": unified.translation.tolist()},
    }


def check_prediction(vertices, faces, offsets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 vertices [V, 3], int64 faces [F, 3], offsets [T, V, 3]; BadInput otherwise."""
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    offsets = np.asarray(offsets)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise BadInput(f"prediction vertices must have shape [V, 3], got {list(vertices.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise BadInput(f"prediction faces must have shape [F, 3] (triangles), got {list(faces.shape)}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise BadInput(f"prediction faces must be integers, got {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise BadInput(f"prediction faces index vertices 0..{len(vertices) - 1}, "
                       f"but range {faces.min()}..{faces.max()}")
    if offsets.ndim != 3 or offsets.shape[1:] != vertices.shape or len(offsets) == 0:
        raise BadInput(f"prediction offsets must have shape [T, {len(vertices)}, 3], got {list(offsets.shape)}")
    if not np.isfinite(vertices).all():
        raise BadInput("prediction vertices contain NaN or infinite values")
    if not np.isfinite(offsets).all():
        bad = np.unique(np.nonzero(~np.isfinite(offsets))[0])
        raise BadInput(f"prediction offsets contain NaN or infinite values (frame {int(bad[0])})")
    return vertices.astype(np.float64), faces.astype(np.int64), offsets.astype(np.float64)


def check_ground_truth(points) -> np.ndarray:
    """Validated ground-truth xyz [T, N, 3] from [T, N, 3 or 6]; BadInput otherwise."""
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] not in (3, 6) or points.shape[0] == 0 or points.shape[1] == 0:
        raise BadInput(f"ground-truth points must have shape [T, N, 6] (xyz + normal), got {list(points.shape)}")
    if not np.issubdtype(points.dtype, np.number):
        raise BadInput(f"ground-truth points must be numbers, got {points.dtype}")
    xyz = points[..., :3].astype(np.float64)
    if not np.isfinite(xyz).all():
        bad = np.unique(np.nonzero(~np.isfinite(xyz))[0])
        raise BadInput(f"ground-truth points contain NaN or infinite values (frame {int(bad[0])})")
    return xyz


def evaluate(vertices, faces, offsets, gt_points, *, n_samples: int = N_SAMPLES, n_icp: int = N_ICP,
             n_chamfer: int = N_CHAMFER, seed: int = SEED, align_settings: AlignSettings = AlignSettings(),
             progress: Callable[[str, int, int], None] | None = None) -> dict:
    """CD-3D, CD-4D and CD-M of an animated mesh (frame t = vertices + offsets[t]) against tracked
    ground-truth points [T, N, 6]; returns a dict with those keys, per-frame values and timing."""
    started = time.perf_counter()
    vertices, faces, offsets = check_prediction(vertices, faces, offsets)
    gt = check_ground_truth(gt_points)
    if len(offsets) != len(gt):
        raise BadInput(f"the prediction has {len(offsets)} frames but the ground truth has {len(gt)}")
    frames = vertices[None] + offsets
    for t, frame in enumerate(frames):
        if not face_areas(frame, faces).sum() > 0:
            raise BadInput(f"prediction frame {t} has no surface area (all faces degenerate)")

    if progress:
        progress("sample", 0, 1)
    pred_frames = np.stack([sample_surface(frame, faces, n_samples, seed + t) for t, frame in enumerate(frames)])
    face_idx, bary = sample_barycentric(frames[0], faces, n_samples, seed)
    pred_tracked = apply_barycentric(frames, faces, face_idx, bary)

    result = evaluate_points(pred_frames, pred_tracked, gt, n_icp=n_icp, n_chamfer=n_chamfer, seed=seed,
                             align_settings=align_settings, progress=progress)
    result.update(frames=len(gt), gt_points=int(gt.shape[1]), n_samples=n_samples,
                  seconds=time.perf_counter() - started)
    return result
