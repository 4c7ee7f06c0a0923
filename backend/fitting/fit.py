"""Fit a mesh to a video: per-frame vertex offsets from silhouettes and optical flow.

The mesh is taken to be close to frame 0's pose (as in ActionMesh's mesh + video mode). A camera
comes from the caller or is estimated against frame 0's mask (camera.py), then refined with the
rest mesh held rigid. The mesh deforms through an embedded deformation graph (graph.py); the fit
runs on points spread evenly over its faces (each blended from its corners' graph nodes). Frame 0
is fitted first, to its silhouette alone, so a mesh whose pose differs a little from the video's
first frame is corrected there rather than carried into every frame. Then frame after frame, each
frame starting from the last one's solution carried on at constant velocity across the view, the
fit minimises, with torch autograd:

  inside    projected points should fall in the mask (the mask's distance field, sampled),
            weighted most: the mask is the evidence least often wrong;
  coverage  the mask's contour should be reached by the projection (contour -> nearest point);
  flow      points visible in the previous frame should land where the optical flow carried
            their pixels (forward-backward checked, DIS); frame 0's visible points where the
            flow chained from frame 0 carried them (long tracks); then both measured again as
            corrections to the motion fitted so far, and the frame fitted again (a Cauchy
            penalty, so tracks that slipped onto another surface stop pulling);
  rigidity  neighbouring graph nodes agree about each other (as-rigid-as-possible);
  stillness the motion departs little from that constant-velocity guess (across the view) and
            from the last frame's depth (toward and away from the camera, weighted most, since
            one view cannot see depth).

A joint pass over the whole clip then smooths the motion in time (velocity and acceleration)
against the same evidence.

Then the verdict (FitSettings.second_opinion): the clip is fitted again through another
deformation graph, from the same camera. One view leaves motion toward or away from the camera
to the fit's guess, and two guesses that explain the frames alike can part in 3D: the fit whose
silhouettes agree better is kept, each frame reports how far the two part against the motion
found, a frame where they part by more than its motion is held back toward the still pose (or
the caller's starting poses), and warnings name the frames to check.
Distances in the image are measured in units of the image's larger side; in the mesh, in units
of its bounding-box diagonal.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from backend.errors import BadInput, Cancelled
from backend.geometry.weld import weld as weld_vertices

from .camera import Camera, camera_candidates, project
from .evidence import (dense_flow, frame_evidence, guided_flow, masks_from_frames, silhouette_iou, splat_field,
                       visible_points)
from .graph import DeformationGraph


@dataclass
class FitSettings:
    iterations: int = 60  # per frame
    joint_iterations: int = 40  # over the whole clip
    lr: float = 0.01
    # 96 nodes: stiffer parts, whose visible side carries the hidden side and whose
    # foreshortening says more about depth (bench fit, with the rest of these defaults: 192 gave
    # 0.70-0.77x the still error, 96 0.63-0.71x, 64 worse again).
    nodes: int = 96
    use_flow: bool = True
    # The silhouette outweighs the rest: where tracks drift (shading on a turning surface, blank
    # texture) the mask is still exact, and a point outside it is certainly wrong. bench fit,
    # vertex error / still's over the four cases: inside 1 and coverage 1 gave 0.61-0.68x; inside 10,
    # 0.56-0.64x; inside 40 with coverage 3, 0.55-0.60x. Much stronger (inside 100 and more, or
    # coverage 5) and a running character's legs swap where they cross (sydney-run 0.65-0.69x).
    w_inside: float = 40.0
    w_coverage: float = 3.0
    w_flow: float = 1.0
    w_track: float = 1.0  # long tracks: frame 0's visible points carried by the chained flow
    w_rigid: float = 1.0
    w_still: float = 0.05
    depth_still: float = 4.0  # extra stillness along the view direction
    w_accel: float = 0.1  # joint pass: second differences of the motion
    # Frame after frame: start from, and hold still at, where the last step's motion across the
    # view would carry on to (constant velocity; 0 = the last frame's pose). Along the view one
    # camera does not see the motion, so it is not carried on there.
    predict: float = 1.0
    # Joint pass: stillness against the joint solution's own previous frame (a velocity penalty);
    # False holds each frame near the frame-after-frame solution of the frame before.
    joint_self_still: bool = True
    # After each frame's fit, the flow is measured again as a correction to the motion just
    # fitted (evidence.guided_flow), from frame 0 and from the frame before, and the frame is
    # fitted again against it: this many rounds, refine_iterations steps each. The tracks from
    # frame 0 are taken up again for every point the fit shows, not only those the chained
    # flow kept (on the running characters only a third survived chaining to mid-clip).
    refine_rounds: int = 1
    refine_iterations: int = 40
    # Flow and track residuals count through a Cauchy penalty whose pull fades beyond this
    # fraction of the image's larger side (5 px at 512), so a block of tracks that slipped, such
    # as on the panda's turning white head, stops dragging the fit (Huber, whose pull stays,
    # gave 0.74x the still error on panda-bend against 0.65x).
    robust_scale: float = 0.01
    # The fit runs on this many surface points (spread evenly by area over the faces, so a mesh
    # of a few hundred vertices is covered as densely as one of thousands): a smooth field of a
    # few hundred nodes needs no more evidence than that, and every iteration costs in proportion.
    fit_points: int = 2500
    surface_points: bool = True  # False: a random subset of the vertices instead
    camera_iterations: int = 80
    camera_candidates: int = 12  # estimated camera: this many of the grid search's best are refined
    seed: int = 0
    # Fit frame 0 too (to its silhouette), so the output's frame 0 is where the video shows the
    # object, not necessarily the mesh as given: a mesh a little off the first frame's pose
    # (panda-sway's motion is under way at frame 0) otherwise starts every track from the wrong
    # pixels (bench fit panda-sway: 0.61x the still error without, 0.60x with; on the cases whose
    # mesh is frame 0 exactly, frame 0 moves by 0.001 of the diagonal on average). False keeps it.
    fit_first: bool = True
    # The verdict (issue 20): the clip is fitted a second time through another deformation graph
    # (another seed, SECOND_OPINION_NODES nodes) from the same evidence and camera; the fit whose
    # silhouettes agree better is kept. Where the two part in 3D, the video does not pin the
    # motion down (mostly: it runs along the line of sight): warned, and held back beyond
    # hold_from. Doubles the fit's time. False: one fit, no verdict, nothing held.
    second_opinion: bool = True
    # A frame whose two fits part by hold_from of the motion found (mean vertex distance between
    # them over the kept fit's mean distance moved since frame 0) starts to be held toward the
    # still pose (or the caller's init_offsets); by hold_to it is held entirely: a frame whose
    # fits part by more than all of its motion does not know even which way it moved. On the
    # tuning set one frame reaches it, sydney-run's last, which barely moves (1.36).
    hold_from: float = 1.0
    hold_to: float = 2.0
    # A clip whose fits part by more than this share of the motion, on average over its frames,
    # is warned about: beyond anything the tuning set shows, where the fit is known to be good
    # (panda-bend 0.18, panda-sway 0.18, faerie-run 0.25, sydney-run 0.354).
    uncertain: float = 0.36
    # A frame whose fitted points miss the flow's targets by more than this fraction of the
    # image's larger side on average (10 px at 512; the tuning set's worst frame: 6.3 px) did not
    # follow the video there: warned, not held (a fast limb can leave it and still beat the still mesh).
    flow_warning: float = 0.02


# The second opinion's graph: coarser than FitSettings.nodes' 96 (see its comment), so the two fits
# differ in how they bend as well as in where their nodes and points fall.
SECOND_OPINION_NODES = 64
# Motion under this share of the mesh's diagonal (2-3 px of an object that fills a 512 px frame)
# is below what the frames resolve: a frame that barely moved is judged as if it moved this much,
# so two fits parting by a pixel there are not "150% apart" (the real panda clip's first frames).
MIN_JUDGED_MOTION = 0.005


@dataclass
class FitResult:
    offsets: np.ndarray  # [T, V, 3] float32 in the mesh's own units and vertex order
    camera: Camera
    report: list = field(default_factory=list)  # one dict per frame
    camera_estimated: bool = False
    camera_iou: float = 0.0
    seconds: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)  # what the verdict asks the user to check
    held: list = field(default_factory=list)  # frames held back, wholly or in part


def _check_mesh(vertices, faces):
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4:
        raise BadInput(f"mesh: expected at least 4 vertices [V, 3], got shape {v.shape}")
    if not np.isfinite(v).all():
        raise BadInput("mesh: contains NaN or infinite coordinates")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise BadInput("mesh: has no faces; fitting needs a surface")
    if f.min() < 0 or f.max() >= len(v):
        raise BadInput("mesh: face index out of range")
    if not float(np.linalg.norm(np.ptp(v, axis=0))) > 0:
        raise BadInput("mesh: all vertices at one point")
    return v, f


def _sample(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of image [H, W] (or [H, W, C]) at pixel coordinates uv [N, 2] (pixel
    centres at integers, as camera.py's convention)."""
    h, w = image.shape[:2]
    grid = torch.stack([(uv[:, 0] + 0.5) / w * 2 - 1, (uv[:, 1] + 0.5) / h * 2 - 1], -1)[None, None]
    img = image[None, None] if image.ndim == 2 else image.permute(2, 0, 1)[None]
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T if image.ndim == 3 else out[0, 0, 0]


class _Frame:
    """One frame's evidence as tensors."""

    def __init__(self, ev, scale: float):
        self.ev = ev
        self.outside = torch.from_numpy(ev.outside_distance) * scale
        self.contour = torch.from_numpy(ev.contour)


def _silhouette_terms(uv, frame: _Frame, scale: float):
    inside = (_sample(frame.outside, uv) ** 2).mean()
    # Each contour pixel's nearest projected point, found without gradients (a k-d tree: the full
    # distance matrix and its backward pass cost more than the rest of an iteration together);
    # the distance to it then carries the gradient, exactly as the minimum would.
    nearest = torch.as_tensor(cKDTree(uv.detach().numpy()).query(frame.contour.numpy())[1])
    coverage = (((frame.contour - uv[nearest]) * scale) ** 2).sum(-1).mean()
    return inside, coverage


def _fit_points(rest: np.ndarray, faces: np.ndarray, s, rng):
    """The points the fit runs on, as (corners [P, 3], barycentric weights [P, 3]) over the welded
    mesh: evenly spread surface points (area-weighted draws thinned by farthest-point sampling),
    or with s.surface_points off, a random subset of the vertices."""
    from backend.geometry.normals import face_normals_and_areas
    from backend.geometry.sampling import farthest_point_sampling

    area = face_normals_and_areas(rest, faces)[1]
    if not s.surface_points or not area.sum() > 0:
        idx = np.sort(rng.choice(len(rest), min(s.fit_points, len(rest)), replace=False))
        return np.repeat(idx[:, None], 3, 1), np.tile([1.0, 0.0, 0.0], (len(idx), 1))
    tri = rest[faces]

    n = int(s.fit_points)
    face_idx = rng.choice(len(faces), 4 * n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(4 * n)), rng.random(4 * n)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    pts = np.einsum("pk,pkc->pc", bary, tri[face_idx])
    keep = farthest_point_sampling(pts, n, start_index=0)
    return faces[face_idx[keep]], bary[keep]


def _graph_pose(graph, init_offsets, weld, n_welded, centre, scale, rest_t, points, binding, s, check):
    """Node rotations and translations [T, N, 3] whose deformation best matches the poses
    vertices + init_offsets (in the normalised, welded frame the fit works in): translations
    start as the weighted mean displacement around each node, then a few Adam steps on the
    position error plus the graph's own regulariser (so an unsmooth start is smoothed)."""
    counts = np.bincount(weld, minlength=n_welded).astype(np.float64)
    per_welded = np.stack([np.stack([np.bincount(weld, init_offsets[t, :, c], n_welded) for c in range(3)], -1)
                           for t in range(len(init_offsets))]) / np.maximum(counts, 1)[None, :, None]
    corners, bary = points
    per_point = np.einsum("pk,tpkc->tpc", bary, per_welded[:, corners])
    disp = torch.as_tensor(per_point * scale, dtype=torch.float32)  # [T, P, 3] normalised units
    vn, vw = binding[0], binding[1].float()
    # Weighted mean displacement of the points each node moves.
    weight = torch.zeros(graph.n_nodes).index_add_(0, vn.reshape(-1), vw.reshape(-1)).clamp_min(1e-9)
    rvecs = torch.zeros(len(disp), graph.n_nodes, 3)
    trans = torch.stack([torch.zeros(graph.n_nodes, 3).index_add_(
        0, vn.reshape(-1), (vw[..., None] * d[:, None, :]).reshape(-1, 3)) / weight[:, None] for d in disp])
    for t in range(1, len(disp)):
        rv = rvecs[t].clone().requires_grad_(True)
        tr = trans[t].clone().requires_grad_(True)
        target = rest_t + disp[t]
        opt = torch.optim.Adam([rv, tr], lr=s.lr)
        for _ in range(max(1, s.iterations)):
            opt.zero_grad()
            pos = graph.deform(rest_t, rv, tr, binding=binding)
            loss = ((pos - target) ** 2).sum(-1).mean() + s.w_rigid * graph.regularity(rv, tr)
            loss.backward()
            opt.step()
            check()
        rvecs[t], trans[t] = rv.detach(), tr.detach()
    return rvecs, trans


def _depth_share(positions: torch.Tensor, camera) -> list:
    """Per frame, how much of the motion since frame 0 runs along the view: the sum over vertices
    of |motion . line of sight| over the sum of |motion| (0: all across the picture, 1: all toward
    or away from the camera). One view sees motion across it; motion along it is the fit's guess
    (rigidity, stillness), so a frame whose motion is mostly along the view is mostly guessed."""
    rotation, translation = camera[1].detach(), camera[2].detach()
    centre = -(rotation.T @ translation)  # the camera's position in the mesh frame
    sight = torch.nn.functional.normalize(positions[0] - centre, dim=-1)
    shares = []
    for frame in positions:
        motion = frame - positions[0]
        size = motion.norm(dim=-1).sum()
        shares.append(float((motion * sight).sum(-1).abs().sum() / size) if size > 0 else 0.0)
    return shares


def canonical_rotation(vertices: np.ndarray) -> np.ndarray:
    """A proper rotation [3, 3] that turns the mesh into a frame of its own: its longest box side
    along x, the next along y, each pointing where its vertices lie further out (the sign of the
    third moment), z completing a right-handed frame.

    Files call different axes up (Y for glTF and OBJ, Z for Blender and many scans), and the same
    mesh under another convention gave another fit (the camera search meets equally good views in
    another order; bench fit's winged clips: 1.85x vs 1.32x the still mesh's error). A signed
    permutation of the axes is exact in floating point, so the same mesh in any convention gets
    this same frame bit for bit, and the fit the same result."""
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    centred = v - 0.5 * (lo + hi)
    second, third = (centred ** 2).sum(axis=0), (centred ** 3).sum(axis=0)
    order = sorted(range(3), key=lambda a: (-(hi[a] - lo[a]), -second[a], a))
    rows = []
    for axis in order[:2]:
        row = np.zeros(3)
        row[axis] = -1.0 if third[axis] < 0 else 1.0
        rows.append(row)
    rows.append(np.cross(rows[0], rows[1]))
    return np.stack(rows)


def fit_video(vertices, faces, frames, *, camera: Camera | None = None, settings: FitSettings | None = None,
              progress=None, should_cancel=None, init_offsets=None) -> FitResult:
    """Per-frame offsets that make (vertices, faces) follow the object in RGBA `frames` [T, H, W, 4].

    init_offsets [T, V, 3] (optional, the mesh's units and vertex order, e.g. a learned
    prediction): each frame's fit starts from that pose instead of the previous frame's solution
    (the graph's node motions are first fitted to it); the terms minimised are the same.

    progress(step, total, message) after the camera and after every frame of each pass;
    should_cancel() is polled between iterations (raises Cancelled). BadInput on empty masks,
    a broken mesh or a camera that does not see the object.
    """
    # The tensors here are small (thousands of points, hundreds of nodes): splitting each op over
    # threads costs more than it saves, and 15x more when other work shares the cores (measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[-1] != 3 or not len(v) or not np.isfinite(v).all():
        _check_mesh(v, faces)  # says what is wrong
    # Fitted in the mesh's own frame (canonical_rotation): p' = rot p; a camera seeing p as R p + t
    # sees p' as (R rot^T) p' + t; offsets and the camera come back by the inverse.
    rot = canonical_rotation(v)
    if camera is not None:
        camera = dataclasses.replace(camera, rotation=np.asarray(camera.rotation) @ rot.T)
    if init_offsets is not None:
        init_offsets = np.asarray(init_offsets, dtype=np.float64) @ rot.T
    s = settings or FitSettings()
    try:
        if not s.second_opinion:
            result, _ = _fit(v @ rot.T, faces, frames, camera, s, progress, should_cancel, init_offsets)
        else:
            result, masks = _fit(v @ rot.T, faces, frames, camera, s, _half(progress, 0), should_cancel,
                                 init_offsets)
            other = dataclasses.replace(s, seed=s.seed + 1, nodes=SECOND_OPINION_NODES)
            second, _ = _fit(v @ rot.T, faces, frames, result.camera, other, _half(progress, 1), should_cancel,
                             init_offsets)
            result = _verdict(result, second, v @ rot.T, faces, masks, s, init_offsets)
    finally:
        torch.set_num_threads(threads)
    result.offsets = (result.offsets.astype(np.float64) @ rot).astype(np.float32)
    result.camera = dataclasses.replace(result.camera, rotation=result.camera.rotation @ rot)
    return result


def _half(progress, which: int):
    """progress for one of the two fits: the first fills the bar's first half, the second the rest."""
    if progress is None:
        return None

    def report(step, total, message):
        progress(step + which * total, 2 * total, message + (" (second opinion)" if which else ""))

    return report


def _frame_ranges(frames) -> str:
    """[4, 5, 6, 9] -> "4-6, 9"."""
    out, frames = [], sorted(frames)
    start = prev = frames[0]
    for f in frames[1:] + [None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
        if f is not None:
            start = prev = f
    return ", ".join(out)


def _mean_iou(fit: FitResult) -> float:
    return float(np.mean([r["iou_after"] for r in fit.report[1:]] or [0.0]))


def _verdict(first: FitResult, second: FitResult, vertices: np.ndarray, faces, masks: np.ndarray, s: FitSettings,
             init_offsets) -> FitResult:
    """The fit to keep, and how far to trust each of its frames.

    Kept: of the two fits, the one whose silhouettes agree better with the frames' (mean IoU over
    the frames after 0; the first on a tie): the frames are the only evidence, and a fit that went
    wrong in 3D mostly leaves a limb where the object is not. Then per frame, how far the two part
    against how far the kept one moved the mesh since frame 0 (the report's disagreement): from
    s.hold_from of it the frame is held back toward the still pose (or init_offsets), wholly from
    s.hold_to (trust, 1 to 0). Warnings: frames held, a clip whose fits part by s.uncertain of the
    motion on average, frames off the optical flow. -> the kept FitResult, its report, offsets,
    held and warnings written."""
    keep, other = (first, second) if _mean_iou(first) >= _mean_iou(second) else (second, first)
    keep.camera_estimated = first.camera_estimated  # the second fit took the first's camera as given
    keep.seconds = {k: keep.seconds.get(k, 0.0) + other.seconds.get(k, 0.0) for k in keep.seconds}
    v = np.asarray(vertices, dtype=np.float64)
    diag = float(np.linalg.norm(v.max(axis=0) - v.min(axis=0))) or 1.0
    a, b = keep.offsets.astype(np.float64), other.offsets.astype(np.float64)
    apart = np.linalg.norm(a - b, axis=2).mean(axis=1) / diag
    moved = np.linalg.norm(a - a[:1], axis=2).mean(axis=1) / diag
    ratio = apart / np.maximum(moved, MIN_JUDGED_MOTION)
    ratio[0] = 0.0  # frame 0 is the given pose, fitted to its own silhouette: nothing to hold
    trust = np.clip((s.hold_to - ratio) / (s.hold_to - s.hold_from), 0.0, 1.0)
    fallback = np.broadcast_to(a[:1], a.shape) if init_offsets is None else np.asarray(init_offsets, np.float64)
    keep.offsets = (fallback + trust[:, None, None] * (a - fallback)).astype(np.float32)
    keep.held = [int(t) for t in np.flatnonzero(trust < 1.0)]
    width = max(keep.camera.width, keep.camera.height)
    params = keep.camera.torch_params()
    off_flow = []
    for t, entry in enumerate(keep.report):
        entry["disagreement"] = round(float(ratio[t]), 4)
        entry["trust"] = round(float(trust[t]), 4)
        if t in keep.held:
            uv = project(torch.as_tensor(v + keep.offsets[t], dtype=torch.float32), params)[0].numpy()
            entry["iou_after"] = round(silhouette_iou(uv, np.asarray(faces), masks[t]), 4)
        if entry.get("flow_residual_after", 0.0) > s.flow_warning * width:
            off_flow.append(t)
    towards = "the still pose" if init_offsets is None else "the learned guess"
    if keep.held:
        keep.warnings.append(
            f"frame(s) {_frame_ranges(keep.held)} held toward {towards}: two fits of the same frames part "
            f"there by up to {100 * ratio[keep.held].max():.0f}% of the motion found (the video does not "
            f"pin that motion down, mostly toward or away from the camera); check those frames")
    clip_ratio = float(ratio[1:].mean()) if len(ratio) > 1 else 0.0
    if clip_ratio >= s.uncertain and not keep.held:
        keep.warnings.append(
            f"two fits of this clip part by {100 * clip_ratio:.0f}% of the motion found, on average: much of "
            "it is not pinned down by the video (mostly toward or away from the camera); check the result "
            "from another view")
    if off_flow:
        keep.warnings.append(
            f"frame(s) {_frame_ranges(off_flow)}: the fit does not follow the video's motion (its points land "
            f"over {s.flow_warning * width:.0f} px from where the optical flow carries them); check them")
    return keep


# ---------------------------------------------------------------- one fit, in named parts

# The estimated camera's grid search looks at this many surface points of the rest mesh.
CAMERA_SEARCH_POINTS = 20_000
# Fewer points than this seen by the flow or the tracks in a frame: no targets from them there.
MIN_TARGET_POINTS = 10
# The predicted flow that guided_flow corrects is splatted from the fitted points with a Gaussian
# of this many times their spacing in the mask, within these bounds in pixels.
GUIDE_SIGMA_SPACINGS, GUIDE_SIGMA_PX = 1.5, (2.0, 20.0)
# The joint pass starts from a solved clip, so it takes smaller steps than the per-frame fits.
JOINT_LR_FACTOR = 0.5
# Of the estimated camera's refinement, this share of the steps ranks the candidates.
CAMERA_RANKING_SHARE = 4  # 1/4; a given camera is only touched up, with as many steps


def _fit(vertices, faces, frames, camera, settings, progress, should_cancel, init_offsets=None):
    """One fit of the mesh to the frames (fit_video's docstring); the verdict runs two. -> (the
    FitResult, the frames' masks it was fitted to: the verdict measures held frames on them)."""
    fitter = _Fitter(vertices, faces, frames, settings or FitSettings(), progress, should_cancel, init_offsets)
    return fitter.run(camera), fitter.masks


class _Fitter:
    """One fit: the evidence, the normalised mesh and its graph, the camera, then the passes.

    Shared state lives on the instance: the camera once fixed (`cam_fixed`), the node motions
    per frame (`rvecs`, `trans`), the fitted points per frame (`positions`), the flow and track
    targets per frame (`flow_cache`, `track_cache`) and the long tracks' state (`tracks`)."""

    def __init__(self, vertices, faces, frames, s: FitSettings, progress, should_cancel, init_offsets):
        self.s, self.progress, self.should_cancel = s, progress, should_cancel
        self.started = time.monotonic()
        self.secs = {}
        v, f = _check_mesh(vertices, faces)
        frames = np.asarray(frames)
        if frames.ndim != 4 or len(frames) < 2:
            raise BadInput(f"fitting needs at least 2 RGBA frames [T, H, W, 4], got shape {frames.shape}")
        self.masks = masks_from_frames(frames)
        self.n_frames, self.height, self.width = self.masks.shape
        if init_offsets is not None:
            init_offsets = np.asarray(init_offsets, dtype=np.float64)
            if init_offsets.shape != (self.n_frames,) + v.shape:
                raise BadInput(f"init_offsets: expected [T, V, 3] = {(self.n_frames,) + v.shape}, "
                               f"got {init_offsets.shape}")
            if not np.isfinite(init_offsets).all():
                raise BadInput("init_offsets: contains NaN or infinite values")
        self.init_offsets = init_offsets
        self.px = 1.0 / max(self.height, self.width)  # image distances in units of the larger side
        self.rng = np.random.default_rng(s.seed)
        self.evidence = [frame_evidence(frames[t], self.masks[t], self.rng) for t in range(self.n_frames)]
        self.check()
        self.vw, self.fw, self.weld = weld_vertices(v, f)  # seams move as one
        lo, hi = self.vw.min(axis=0), self.vw.max(axis=0)
        self.centre, self.scale = 0.5 * (lo + hi), 1.0 / float(np.linalg.norm(hi - lo))
        self.rest = (self.vw - self.centre) * self.scale
        self.total_steps = 1 + 2 * (self.n_frames - 1)
        self.flow_raw, self.flow_cache, self.track_cache, self.tracks = {}, {}, {}, {}

    def check(self):
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled()

    def step(self, i: int, message: str):
        if self.progress:
            self.progress(i, self.total_steps, message)

    def run(self, camera) -> FitResult:
        self.step(0, "camera")
        starts = self.camera_starts(camera)
        self.rest_all = torch.as_tensor(self.rest, dtype=torch.float32)
        self.points = _fit_points(self.rest, self.fw, self.s, self.rng)
        corners, weights = self.points
        self.rest_t = torch.as_tensor(np.einsum("pk,pkc->pc", weights, self.rest[corners]), dtype=torch.float32)
        self.frames_t = [_Frame(ev, self.px) for ev in self.evidence]
        iou_before, iou_after = self.fix_camera(starts, estimated=camera is None)
        self.view_dir = self.cam_fixed[1][2]  # camera z axis in mesh coordinates
        self.secs["camera"] = time.monotonic() - self.started
        self.step(1, f"camera ({'estimated' if camera is None else 'given'}), silhouette IoU "
                     f"{max(iou_before, iou_after):.2f}")
        self.build_graph()
        self.fit_first_frame()
        t0 = time.monotonic()
        for t in range(1, self.n_frames):
            self.fit_frame(t)
            self.step(1 + t, f"fitted frame {t}/{self.n_frames - 1}")
        self.secs["frames"] = time.monotonic() - t0
        t0 = time.monotonic()
        self.joint_pass()
        self.secs["joint"] = time.monotonic() - t0
        return self.result(camera is None, float(max(iou_before, iou_after)))

    # ------------------------------------------------------------ the camera

    def camera_starts(self, camera) -> list:
        """Where the camera refinement starts: the grid search's best few for an estimate, the
        given camera (in the normalised mesh frame: p_cam' = R p_n + s (R c + t), a scaled
        camera frame projects the same) otherwise. Sets self.cam (the intrinsics' source)."""
        if camera is None:
            from backend.geometry.sampling import sample_surface

            pts, _ = sample_surface(self.rest, self.fw, CAMERA_SEARCH_POINTS, seed=self.s.seed)
            candidates = [c for c, _ in camera_candidates(pts.astype(np.float64), self.masks[0], check=self.check,
                                                          keep=max(1, self.s.camera_candidates))]
            self.cam = candidates[0]
            return [(c.rotation, c.translation) for c in candidates]
        if (camera.width, camera.height) != (self.width, self.height):
            camera = camera.scaled(self.width, self.height)
        self.cam = camera
        return [(camera.rotation, self.scale * (camera.rotation @ self.centre + camera.translation))]

    def refine_camera(self, rotation, translation, iterations):
        """Refine the camera with the rest mesh rigid against frame 0 (an estimate needs it; a
        given camera may not match a mesh that is slightly off the frame's object): (camera
        params, IoU before, IoU after), keeping the start when refining fitted worse."""
        from .graph import axis_angle_to_matrix

        k = torch.tensor([self.cam.fx, self.cam.fy, self.cam.cx, self.cam.cy], dtype=torch.float32)
        dcam_r = torch.zeros(3, requires_grad=True)
        dcam_t = torch.zeros(3, requires_grad=True)
        rot0 = torch.as_tensor(rotation, dtype=torch.float32)
        trans0 = torch.as_tensor(translation, dtype=torch.float32)

        def camera_params():
            return k, axis_angle_to_matrix(dcam_r) @ rot0, trans0 + dcam_t

        def iou():
            return silhouette_iou(project(self.rest_all, camera_params())[0].detach().numpy(), self.fw, self.masks[0])

        before = iou()
        opt = torch.optim.Adam([dcam_r, dcam_t], lr=self.s.lr)
        for _ in range(iterations):
            opt.zero_grad()
            uv, _ = project(self.rest_t, camera_params())
            inside, coverage = _silhouette_terms(uv, self.frames_t[0], self.px)
            (inside + coverage).backward()
            opt.step()
            self.check()
        after = iou()
        if after < before:  # keep what fitted better
            with torch.no_grad():
                dcam_r.zero_()
                dcam_t.zero_()
        return tuple(x.detach() for x in camera_params()), before, after

    def fix_camera(self, starts, estimated: bool):
        """An estimate: the grid's best few, each refined briefly, the best silhouette refined on
        (a coarse grid can rank a wrong view first; a view and its mirror image stay alike, see
        camera.py). A given camera: touched up. Sets self.cam_fixed; -> (IoU before, after)."""
        s = self.s
        quick = max(1, s.camera_iterations // CAMERA_RANKING_SHARE)
        if estimated and len(starts) > 1:
            ranked = [self.refine_camera(r, t, quick) for r, t in starts]
            params, iou_before, first = max(ranked, key=lambda x: max(x[1], x[2]))
            params, _, iou_after = self.refine_camera(params[1].numpy(), params[2].numpy(),
                                                      s.camera_iterations - quick)
            self.cam_fixed = params
            return iou_before, max(iou_after, first)
        self.cam_fixed, iou_before, iou_after = self.refine_camera(
            *starts[0], s.camera_iterations if estimated else s.camera_iterations // CAMERA_RANKING_SHARE)
        return iou_before, iou_after

    # ------------------------------------------------------------ targets from flow and tracks

    def flow_targets(self, positions: torch.Tensor, t: int):
        """Where the flow from frame t-1 to t carries the visible points of `positions` (frame t-1)."""
        if not self.s.use_flow:
            return None
        if t not in self.flow_raw:
            self.flow_raw[t] = dense_flow(self.evidence[t - 1], self.evidence[t])
        flow, valid = self.flow_raw[t]
        uv, depth = project(positions, self.cam_fixed)
        uv_np = uv.numpy()
        vis = visible_points(uv_np, depth.numpy(), self.width, self.height)
        ij = np.clip(np.round(uv_np).astype(int), 0, [self.width - 1, self.height - 1])
        ok = vis & valid[ij[:, 1], ij[:, 0]]
        if ok.sum() < MIN_TARGET_POINTS:
            return None
        idx = torch.as_tensor(np.flatnonzero(ok))
        return idx, uv[idx] + _sample(torch.from_numpy(flow), uv[idx])

    def advance_tracks(self, t: int):
        """Frame 0's visible points carried by the flow to frame t (chained, forward-backward
        checked, dropped when they leave the mask): targets that do not drift with the fit."""
        if not self.s.use_flow:
            return None
        state = self.tracks
        if not state:
            uv0, d0 = project(self.positions[0], self.cam_fixed)
            vis = visible_points(uv0.numpy(), d0.numpy(), self.width, self.height)
            state["idx"], state["visible0"] = np.flatnonzero(vis), vis
            state["uv"] = uv0.numpy()[vis].astype(np.float32)
        flow, valid = self.flow_raw[t]
        idx, uv = state["idx"], state["uv"]
        ij = np.round(uv).astype(int)
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < self.width) & (ij[:, 1] >= 0) & (ij[:, 1] < self.height)
        ij = np.clip(ij, 0, [self.width - 1, self.height - 1])
        ok = inside & valid[ij[:, 1], ij[:, 0]]
        moved = uv[ok] + _sample(torch.from_numpy(flow), torch.from_numpy(uv[ok])).numpy()
        ij = np.clip(np.round(moved).astype(int), 0, [self.width - 1, self.height - 1])
        keep = self.evidence[t].mask[ij[:, 1], ij[:, 0]]
        state["idx"], state["uv"] = idx[ok][keep], moved[keep]
        if len(state["idx"]) < MIN_TARGET_POINTS:
            return None
        return torch.as_tensor(state["idx"]), torch.as_tensor(state["uv"])

    def guided_targets(self, src: int, t: int, src_pos: torch.Tensor, pos: torch.Tensor, src_visible=None):
        """Targets in frame t for the points visible in frame src (and, by the fit, in t), from the
        flow src -> t measured as a correction to the motion src_pos -> pos."""
        w, h = self.width, self.height
        uv_s, z_s = project(src_pos, self.cam_fixed)
        uv_t, z_t = project(pos, self.cam_fixed)
        uv_s, uv_t = uv_s.numpy(), uv_t.numpy()
        vis = visible_points(uv_s, z_s.numpy(), w, h) if src_visible is None else src_visible
        vis = vis & visible_points(uv_t, z_t.numpy(), w, h)
        if vis.sum() < MIN_TARGET_POINTS:
            return None
        spacing = np.sqrt(self.evidence[src].mask.sum() / vis.sum())
        sigma = float(np.clip(GUIDE_SIGMA_SPACINGS * spacing, *GUIDE_SIGMA_PX))
        pred = splat_field(uv_s[vis], uv_t[vis] - uv_s[vis], w, h, sigma)
        flow, valid = guided_flow(self.evidence[src], self.evidence[t], pred)
        ij = np.clip(np.round(uv_s).astype(int), 0, [w - 1, h - 1])
        ok = vis & valid[ij[:, 1], ij[:, 0]]
        if ok.sum() < MIN_TARGET_POINTS:
            return None
        idx = torch.as_tensor(np.flatnonzero(ok))
        return idx, torch.from_numpy(uv_s)[idx] + _sample(torch.from_numpy(flow), torch.from_numpy(uv_s)[idx])

    # ------------------------------------------------------------ the loss terms

    def track_loss(self, r_px):
        """Cauchy penalty of pixel residuals [N, 2], quadratic (half the squared distance in
        image units) while small."""
        c2 = self.s.robust_scale ** 2
        return 0.5 * c2 * torch.log1p((r_px * self.px).pow(2).sum(-1) / c2).mean()

    def frame_loss(self, t, rv, tr, prev_pos, targets, tracks=None):
        """The terms of the module docstring for frame t with node motions rv, tr; -> (loss, points)."""
        s = self.s
        pos = self.graph.deform(self.rest_t, rv, tr, binding=self.binding)
        uv, _ = project(pos, self.cam_fixed)
        inside, coverage = _silhouette_terms(uv, self.frames_t[t], self.px)
        loss = s.w_inside * inside + s.w_coverage * coverage + s.w_rigid * self.graph.regularity(rv, tr)
        if targets is not None:
            idx, carried = targets
            loss = loss + s.w_flow * self.track_loss(uv[idx] - carried)
        if tracks is not None:
            idx, carried = tracks
            loss = loss + s.w_track * self.track_loss(uv[idx] - carried)
        step = pos - prev_pos
        along = step @ self.view_dir
        loss = loss + s.w_still * ((step ** 2).sum(-1).mean() + s.depth_still * (along ** 2).mean())
        return loss, pos

    def descend(self, opt, steps, t, rv, tr, anchor, targets, tracks):
        """Steps of one frame's fit (node motions rv, tr in place)."""
        for _ in range(steps):
            opt.zero_grad()
            loss, _ = self.frame_loss(t, rv, tr, anchor, targets, tracks)
            loss.backward()
            opt.step()
            self.check()

    def across(self, x):
        """x without its component along the view direction."""
        return x - (x @ self.view_dir)[..., None] * self.view_dir

    # ------------------------------------------------------------ the passes

    def build_graph(self):
        """The deformation graph over the normalised mesh, its binding to the fit points, and the
        per-frame node motions (from the caller's starting poses where given)."""
        self.graph = DeformationGraph(self.rest, self.s.nodes, seed=self.s.seed, faces=self.fw)
        n = self.graph.n_nodes
        self.rvecs = torch.zeros(self.n_frames, n, 3)
        self.trans = torch.zeros(self.n_frames, n, 3)
        self.binding = self.graph.bind(*self.points)
        self.start_rv = self.start_tr = None
        if self.init_offsets is not None:
            self.start_rv, self.start_tr = _graph_pose(self.graph, self.init_offsets, self.weld, len(self.vw),
                                                       self.centre, self.scale, self.rest_t, self.points,
                                                       self.binding, self.s, self.check)
        self.positions = torch.empty(self.n_frames, len(self.rest_t), 3)
        self.positions[0] = self.rest_t

    def fit_first_frame(self):
        """Frame 0 to its silhouette alone (FitSettings.fit_first), and the still mesh's IoU per frame."""
        if self.s.fit_first:
            n = self.graph.n_nodes
            rv = torch.zeros(n, 3, requires_grad=True)
            tr = torch.zeros(n, 3, requires_grad=True)
            self.descend(torch.optim.Adam([rv, tr], lr=self.s.lr), self.s.iterations, 0, rv, tr, self.rest_t,
                         None, None)
            with torch.no_grad():
                self.rvecs[0], self.trans[0] = rv.detach(), tr.detach()
                self.positions[0] = self.graph.deform(self.rest_t, self.rvecs[0], self.trans[0], binding=self.binding)
        still_uv = project(self.rest_all, self.cam_fixed)[0].numpy()
        self.iou_still = [silhouette_iou(still_uv, self.fw, self.masks[t]) for t in range(self.n_frames)]

    def fit_frame(self, t: int):
        """Frame t from the previous frame's solution (or the caller's starting pose), against the
        flow from t-1 and the tracks from 0, then refined against both measured again."""
        s = self.s
        # From the previous frame's solution, or from the caller's starting pose for this frame.
        start_rv = self.rvecs[t - 1] if self.start_rv is None else self.start_rv[t]
        start_tr = self.trans[t - 1] if self.start_tr is None else self.start_tr[t]
        rv, tr = start_rv.clone().requires_grad_(True), start_tr.clone().requires_grad_(True)
        prev = self.positions[t - 1]
        anchor = prev
        if s.predict and t >= 2 and self.start_rv is None:
            # Constant velocity: start (and hold still) where the last step would carry on to,
            # across the view only (along it nothing in one view says the motion goes on).
            with torch.no_grad():
                tr += s.predict * self.across(self.trans[t - 1] - self.trans[t - 2])
            anchor = prev + s.predict * self.across(prev - self.positions[t - 2])
        targets = self.flow_cache[t] = self.flow_targets(prev, t)
        tracks = self.track_cache[t] = self.advance_tracks(t)
        opt = torch.optim.Adam([rv, tr], lr=s.lr)
        self.descend(opt, s.iterations, t, rv, tr, anchor, targets, tracks)
        for _ in range(s.refine_rounds if s.use_flow else 0):
            with torch.no_grad():
                pos_t = self.graph.deform(self.rest_t, rv, tr, binding=self.binding)
            refined = self.guided_targets(t - 1, t, prev, pos_t)
            if refined is not None:
                targets = self.flow_cache[t] = refined
            if tracks is not None:
                refined = self.guided_targets(0, t, self.positions[0], pos_t, src_visible=self.tracks["visible0"])
                if refined is not None:
                    tracks = self.track_cache[t] = refined
                    self.tracks["idx"] = refined[0].numpy()
                    self.tracks["uv"] = refined[1].numpy().astype(np.float32)
            self.descend(opt, s.refine_iterations, t, rv, tr, anchor, targets, tracks)
        with torch.no_grad():
            self.rvecs[t], self.trans[t] = rv.detach(), tr.detach()
            self.positions[t] = self.graph.deform(self.rest_t, self.rvecs[t], self.trans[t], binding=self.binding)

    def joint_pass(self):
        """All frames together, the flow and track targets kept, plus smooth acceleration."""
        s, n_frames = self.s, self.n_frames
        if not s.joint_iterations or n_frames <= 2:
            return
        rv_all = self.rvecs[1:].clone().requires_grad_(True)
        tr_all = self.trans[1:].clone().requires_grad_(True)
        opt = torch.optim.Adam([rv_all, tr_all], lr=s.lr * JOINT_LR_FACTOR)
        for it in range(s.joint_iterations):
            opt.zero_grad()
            total = 0.0
            pos_all = [self.positions[0]]
            for t in range(1, n_frames):
                anchor = pos_all[t - 1] if s.joint_self_still else self.positions[t - 1]
                loss, pos = self.frame_loss(t, rv_all[t - 1], tr_all[t - 1], anchor, self.flow_cache.get(t),
                                            self.track_cache.get(t))
                pos_all.append(pos)
                total = total + loss
            stacked = torch.stack(pos_all)
            accel = stacked[2:] - 2 * stacked[1:-1] + stacked[:-2]
            total = total + s.w_accel * (accel ** 2).sum(-1).mean() * n_frames
            total.backward()
            opt.step()
            self.check()
            if self.progress and (it + 1) % max(1, s.joint_iterations // (n_frames - 1)) == 0:
                self.step(min(n_frames + (it + 1) * (n_frames - 1) // s.joint_iterations, self.total_steps - 1),
                          f"joint pass {it + 1}/{s.joint_iterations}")
        with torch.no_grad():
            self.rvecs[1:], self.trans[1:] = rv_all.detach(), tr_all.detach()
            for t in range(1, n_frames):
                self.positions[t] = self.graph.deform(self.rest_t, self.rvecs[t], self.trans[t], binding=self.binding)

    def result(self, estimated: bool, camera_iou: float) -> FitResult:
        """Every vertex from the fitted node motions, the per-frame report, the camera in the
        caller's frame."""
        cam_fixed, n_frames = self.cam_fixed, self.n_frames
        full = torch.stack([self.graph.deform(self.rest_all, self.rvecs[t], self.trans[t])
                            for t in range(n_frames)]).detach()
        depth_share = _depth_share(full, cam_fixed)
        report = []
        for t in range(n_frames):
            uv = project(full[t], cam_fixed)[0].numpy()
            entry = {"frame": t, "iou_before": round(self.iou_still[t], 4),
                     "iou_after": round(silhouette_iou(uv, self.fw, self.masks[t]), 4),
                     "depth_share": round(depth_share[t], 4)}
            if t and self.flow_cache.get(t) is not None:
                idx, carried = self.flow_cache[t]
                still_uv = project(self.rest_t, cam_fixed)[0]
                fit_uv = project(self.positions[t], cam_fixed)[0]
                entry["flow_residual_before"] = round(float((still_uv[idx] - carried).norm(dim=-1).mean()), 3)
                entry["flow_residual_after"] = round(float((fit_uv[idx] - carried).norm(dim=-1).mean()), 3)
            report.append(entry)
        self.step(self.total_steps, "done")
        moved = full.numpy().astype(np.float64) / self.scale + self.centre  # [T, Vw, 3] in the mesh's units
        offsets = (moved - self.vw[None])[:, self.weld].astype(np.float32)
        if not self.s.fit_first:
            offsets[0] = 0.0
        _, r_, t_ = cam_fixed
        r_np, t_np = r_.numpy().astype(np.float64), t_.numpy().astype(np.float64)
        # Back to the caller's frame: p_cam = R p + t with t = t_n / s - R c.
        out_cam = Camera(self.cam.fx, self.cam.fy, self.cam.cx, self.cam.cy, self.width, self.height, r_np,
                         t_np / self.scale - r_np @ self.centre)
        self.secs["total"] = time.monotonic() - self.started
        return FitResult(offsets, out_cam, report, estimated, camera_iou, self.secs)
