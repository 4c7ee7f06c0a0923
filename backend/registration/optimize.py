"""Frame-to-frame non-rigid registration: ARAP-regularised two-way ICP ("optimize" method).

One reference mesh is deformed to follow a sequence of meshes whose topology may differ from
it and from each other. Each frame starts from the previous frame's result, so motion between
frames stays small enough for closest-point matching; the ARAP rest shape is always the
reference itself, so errors do not accumulate as shape drift. Given `init_offsets` (e.g. the
learned Stage II prediction), each frame starts from that guess instead, which makes it a
refinement.

Safeguards: frame normals come from outward re-wound faces (backend.geometry.orient), so inward
or mixed winding does not turn every normal test around; and each frame's result, and its rigid
pre-alignment, is kept only if it fits the frame's surface (two-way mean distance on samples) at
least as well as the pose it started from. No frame ends further from its surface than where it
started, and the per-frame report says which frames were held back.
"""

from __future__ import annotations

import numpy as np

from backend.errors import BadInput, Cancelled
from backend.geometry.normals import vertex_normals
from backend.geometry.orient import orient_faces
from backend.geometry.weld import weld_map

from .arap import ArapSolver, cotangent_graph, knn_edges
from .correspond import TargetSurface, correspondences
from .proxy import Blender, pick_nodes, proxy_graph, surface_area
from .quality import SurfaceSampler, frame_fit_entry, two_way_distance

# Data weights (per unit area, reference normalised to a unit bounding-box diagonal), stiff
# to soft: the stiff pass follows the large motion without tearing, the soft one fits detail.
DEFAULT_LEVELS = (1e2, 1e3)
DEFAULT_ITERATIONS = (5, 5)
# Correspondences farther than this (fraction of the diagonal) are outliers, per level.
DEFAULT_MAX_DIST = (0.12, 0.05)


def _as_points(a, what):
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{what}: not a numeric array ({exc})") from None
    if a.ndim != 2 or a.shape[1] != 3 or len(a) == 0:
        raise BadInput(f"{what}: expected a non-empty [N,3] array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise BadInput(f"{what}: contains NaN or infinite coordinates")
    return a


def _as_faces(f, n_vertices, what, allow_empty):
    f = np.asarray(f if f is not None else np.zeros((0, 3)))
    if f.size == 0 and allow_empty:
        return np.zeros((0, 3), np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise BadInput(f"{what}: expected a non-empty [F,3] triangle array, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        if not np.all(np.isfinite(f)) or np.any(f != np.round(f)):
            raise BadInput(f"{what}: face indices must be integers")
    f = f.astype(np.int64)
    if f.min() < 0 or f.max() >= n_vertices:
        raise BadInput(f"{what}: face index out of range for {n_vertices} vertices")
    return f


def check_inputs(ref_vertices, ref_faces, frames, check=None):
    """Validated (reference vertices, reference faces, [(vertices, faces) per frame]) or BadInput.

    `check` is called after each frame (a cancellation poll while large inputs are validated).
    """
    ref_v = _as_points(ref_vertices, "reference vertices")
    ref_f = _as_faces(ref_faces, len(ref_v), "reference faces", allow_empty=True)
    try:
        frames = list(frames)
    except TypeError:
        raise BadInput("frames: expected a sequence of (vertices, faces) pairs") from None
    if not frames:
        raise BadInput("frames: the sequence is empty")
    checked = []
    for t, frame in enumerate(frames):
        try:
            fv, ff = frame
        except (TypeError, ValueError):
            raise BadInput(f"frame {t}: expected a (vertices, faces) pair") from None
        fv = _as_points(fv, f"frame {t} vertices")
        checked.append((fv, _as_faces(ff, len(fv), f"frame {t} faces", allow_empty=False)))
        if check is not None:
            check()
    return ref_v, ref_f, checked


class _Canceller:
    def __init__(self, should_cancel):
        self.should_cancel = should_cancel

    def check(self):
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled()


_RIGID_POINT_WEIGHT = 1.0


def _rigid_step(x, tgt, normals, w):
    """One linearised point-to-plane rigid ICP step (rotation, translation).

    Point-to-plane rather than point-to-point: it lets the surfaces slide into place instead
    of being held back by where the samples happen to lie, so it converges in a few steps.
    """
    c = (w @ x) / w.sum()
    p = x - c
    a = np.hstack([np.cross(p, normals), normals])
    b = np.einsum("ij,ij->i", tgt - x, normals)
    aw = a * w[:, None]
    h, g = aw.T @ a, aw.T @ b
    # A light point-to-point term: sliding along a smooth body (a twist, say) is invisible to
    # the planes alone, and the samples' positions are the only hint of where to stop.
    d = tgt - x
    ws = _RIGID_POINT_WEIGHT * w.sum()
    pp = (p * w[:, None]).T @ p / w.sum()
    h_pp = np.zeros((6, 6))
    h_pp[:3, :3] = np.trace(pp) * np.eye(3) - pp
    h_pp[3:, 3:] = np.eye(3)
    g_pp = np.concatenate([np.cross(p, d).T @ w, d.T @ w]) / w.sum()
    h, g = h + ws * h_pp, g + ws * g_pp
    sol = np.linalg.solve(h + 1e-9 * np.trace(h) * np.eye(6), g)
    omega, shift = sol[:3], sol[3:]
    angle = float(np.linalg.norm(omega))
    r = np.eye(3)
    if angle > 1e-12:
        k = omega / angle
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        r = np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * (kx @ kx)
    return r, c + shift - r @ c


def register_optimize(
    ref_vertices,
    ref_faces,
    frames,
    *,
    progress=None,
    should_cancel=None,
    iterations=DEFAULT_ITERATIONS,
    stiffness=DEFAULT_LEVELS,
    max_dist=DEFAULT_MAX_DIST,
    rigid_iterations=2,
    first_frame_factor=2,
    min_normal_cos=0.3,
    max_vertices=50_000,
    proxy_nodes=10_000,
    seed=0,
    back_plane=0.0,
    back_ratio=2.0,
    init_offsets=None,
    init_mode="fixed",
    fit_samples=4000,
    fit_report=None,
) -> np.ndarray:
    """Offsets [T,V,3] (float32) such that ref_vertices + offsets[t] follows frames[t].

    frames: sequence of (vertices [Vi,3], faces [Fi,3]) with any topology. References with more
    than `max_vertices` vertices are registered through a `proxy_nodes`-node stand-in and the
    motion is blended onto every vertex, keeping time and memory bounded.

    progress(step, total, message) is called after each frame; should_cancel() is polled
    between steps of a few tens of milliseconds and raises Cancelled when it returns True.
    Tuning: `stiffness` (data weight per level, lower = stiffer), `iterations` per level
    (`first_frame_factor` times as many for frame 0, which starts from the rest pose),
    `max_dist` (outlier distance per level, fraction of the diagonal), `min_normal_cos`,
    `back_ratio` (reverse-direction samples per node), `back_plane` (0: reverse matches
    pull point-to-point, 1: only along the target normal).
    init_offsets: optional [T,V,3]; frame t then starts from ref_vertices + init_offsets[t]
    (its ARAP rotations estimated from that pose) instead of from the previous frame's result,
    so every frame is a refinement of that guess. None (default) leaves the method unchanged.
    init_mode: "fixed" starts every frame from its guess; "better" starts it from whichever of
    {its guess, the previous frame's result} lies closer to the frame's surface (two-way mean
    distance), so a poor guess costs no more than plain frame-to-frame registration.
    fit_report: optional list; one dict per frame is appended (frame_fit_entry: the two-way surface
    distance of the starting pose and of the kept result, as fractions of the reference's
    bounding-box diagonal, measured on `fit_samples` fixed points of the reference surface;
    whether the result was accepted, and whether the rigid pre-step was).
    Raises BadInput for malformed or non-finite input.
    """
    cancel = _Canceller(should_cancel)
    ref_v, ref_f, checked = check_inputs(ref_vertices, ref_faces, frames, cancel.check)
    if len(iterations) != len(stiffness) or len(max_dist) != len(stiffness):
        raise ValueError("iterations, stiffness and max_dist need one entry per level")
    if init_mode not in ("fixed", "better"):
        raise ValueError(f"init_mode must be 'fixed' or 'better', not {init_mode!r}")
    if init_offsets is not None:
        init_offsets = np.asarray(init_offsets, dtype=np.float64)
        if init_offsets.shape != (len(checked),) + ref_v.shape or not np.isfinite(init_offsets).all():
            raise BadInput(f"init_offsets: expected finite [{len(checked)},{len(ref_v)},3], "
                           f"got shape {init_offsets.shape}")

    # Work in a frame where the reference's bounding-box diagonal is 1, so every threshold
    # and weight above means the same thing for any model size.
    lo, hi = ref_v.min(axis=0), ref_v.max(axis=0)
    diag = float(np.linalg.norm(hi - lo))
    if not diag > 0:
        raise BadInput("reference vertices: all at one point, nothing to register")
    centre, scale = 0.5 * (lo + hi), 1.0 / diag
    # Solve on welded positions (seams would open otherwise; backend.geometry.weld).
    first, weld = weld_map(ref_v)
    cancel.check()
    rest_all = (ref_v[first] - centre) * scale
    ref_f = weld[ref_f] if len(ref_f) else ref_f
    # Normals from outward-wound faces, whatever winding the reference came with.
    ref_f = orient_faces(rest_all, ref_f) if len(ref_f) else ref_f
    rng = np.random.default_rng(seed)

    if len(rest_all) > max_vertices:
        nodes = pick_nodes(rest_all, proxy_nodes, rng, cancel.check)
        rest = rest_all[nodes]
        cancel.check()
        normals = vertex_normals(rest_all, ref_f, cancel.check)[nodes] if len(ref_f) else np.zeros_like(rest)
        cancel.check()
        ei, ej, ew, mass = proxy_graph(rest, surface_area(rest_all, ref_f))
        cancel.check()
        blender = Blender(rest_all, rest, cancel.check)
    else:
        rest, blender = rest_all, None
        normals = vertex_normals(rest, ref_f) if len(ref_f) else np.zeros_like(rest)
        ei, ej, ew, mass = cotangent_graph(rest, ref_f)
        # Loose vertices (in no face) have no ring: tie them to nearby surface vertices so
        # they move with it, and give them a typical vertex area as data weight.
        loose = np.flatnonzero(mass <= 0)
        if len(loose):
            attached = np.flatnonzero(mass > 0)
            li, lj, lw = knn_edges(rest, loose, attached if len(attached) >= 2 else np.arange(len(rest)))
            ei, ej, ew = np.concatenate([ei, li]), np.concatenate([ej, lj]), np.concatenate([ew, lw])
            mass = mass.copy()
            mass[loose] = np.median(mass[attached]) if len(attached) else 1.0 / len(rest)
    # Degenerate-only vertices would otherwise get no data weight and a singular system.
    mass = np.maximum(mass, 1e-3 * max(float(np.median(mass)), 1e-30))
    cancel.check()
    solver = ArapSolver(rest, ei, ej, ew, mass, stiffness)
    # Fixed points on the reference surface for the fit safeguard (the nodes themselves when the
    # solve runs on a proxy, whose nodes carry no faces).
    sampler = SurfaceSampler(rest, ref_f if blender is None else None, fit_samples, seed)
    cancel.check()

    n_frames = len(checked)
    offsets = np.empty((n_frames, len(ref_v), 3), dtype=np.float32)
    x = rest.copy()
    rot = np.broadcast_to(np.eye(3), (len(rest), 3, 3)).copy()
    for t, (fv, ff) in enumerate(checked):
        target = TargetSurface((fv - centre) * scale, ff, len(rest), rng, back_ratio=back_ratio)
        cancel.check()
        if init_offsets is not None:
            guess = (ref_v[first] + init_offsets[t][first] - centre) * scale
            guess = guess if blender is None else guess[nodes]
            if init_mode == "fixed" or _fit_distance(guess, target) <= _fit_distance(x, target):
                x = guess
                rot = solver.rotations(x, np.broadcast_to(np.eye(3), (len(rest), 3, 3)).copy(), normals)
        # Frame 0 starts from the rest pose, usually the largest jump of the sequence.
        iters = [n * (first_frame_factor if t == 0 else 1) for n in iterations]
        # The reverse direction on as many target samples as the candidate has (target.back is a
        # random subset, so its head is one too): enough to compare two poses, at a third the cost.
        back = target.points[target.back[:fit_samples]]
        fit = lambda pose: two_way_distance(sampler.points(pose), target.points, target.tree, back)  # noqa: E731
        start_x, start_rot, start_fit = x, rot, fit(x)
        x, rot, rigid_ok = _register_frame(x, rot, normals, solver, target, iters, max_dist,
                                           rigid_iterations * (first_frame_factor if t == 0 else 1), min_normal_cos,
                                           cancel, back_plane, fit, start_fit)
        end_fit = fit(x)
        accepted = end_fit <= start_fit
        if not accepted:
            x, rot, end_fit = start_x, start_rot, start_fit
        if fit_report is not None:
            fit_report.append(frame_fit_entry(t, start_fit, end_fit, accepted, rigid_ok))
        if blender is None:
            moved = x
        else:
            moved = blender.apply(x, rot, np.empty_like(rest_all), cancel.check)
        offsets[t] = moved[weld] / scale + centre - ref_v
        if progress is not None:
            progress(t + 1, n_frames, f"registered frame {t + 1}/{n_frames}")
    return offsets


def _fit_distance(x, target) -> float:
    """Two-way mean distance between node positions and a frame's samples (a cheap fit score)."""
    from scipy.spatial import cKDTree

    forward = target.tree.query(x, workers=-1)[0].mean()
    backward = cKDTree(x).query(target.points[target.back], workers=-1)[0].mean()
    return float(forward + backward)


def _register_frame(x, rot, normals, solver, target, iterations, max_dist, rigid_iterations,
                    min_cos, cancel, back_plane, fit, start_fit):
    """-> (x, rot, whether the rigid pre-step was kept)."""
    # Rigid pre-alignment takes out whole-body motion, leaving ARAP only the articulation; it is
    # kept only if it brought the surfaces closer (a wrong rigid jump is the hardest to undo).
    x0, rot0 = x, rot
    for _ in range(rigid_iterations):
        nx = np.einsum("nab,nb->na", rot, normals)
        tgt, conf, tn = correspondences(x, nx, target, max_dist[0], min_cos, backward=False)
        if conf.sum() < 6:
            break
        r, tr = _rigid_step(x, tgt, tn, conf)
        x = x @ r.T + tr
        rot = r @ rot
        cancel.check()
    rigid_ok = x is x0 or fit(x) <= start_fit
    if not rigid_ok:
        x, rot = x0, rot0
    for level, n_iter in enumerate(iterations):
        for _ in range(n_iter):
            nx = np.einsum("nab,nb->na", rot, normals)
            tgt, conf = correspondences(x, nx, target, max_dist[level], min_cos, back_plane)
            cancel.check()
            goal = x + conf[:, None] * (tgt - x)
            rot = solver.rotations(x, rot, normals)
            x_new = solver.solve(level, rot, goal)
            step = float(np.abs(x_new - x).mean())
            x = x_new
            cancel.check()
            if step < 2e-5:
                break
    return x, rot, rigid_ok
