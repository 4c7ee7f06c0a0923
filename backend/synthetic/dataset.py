"""Training/eval samples from the articulated generator, and a resumable on-disk cache.

Everything is deterministic by seed. Coordinates are normalised into [-1, 1]: the shape (or, for
sequences, the union over all frames) is centred on its bounding box and scaled so that its
largest half-extent is a seed-drawn value in [0.9, 0.95]. SDF values are POSITIVE INSIDE.

Shape samples (for the shape VAE): surface points with normals, query points with exact
analytic SDF values and occupancy. Sequence samples (for temporal models and evaluation):
per-frame watertight marching-cubes meshes (each with its own topology), tracked surface points
[T, N, 6] (the same material points every frame) and optional RGBA renders.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes

from ..geometry.normals import face_areas
from .articulated import pose_at, sample_body, sample_motion, sample_pose, track_points

# ---------------------------------------------------------------- meshing / sampling


def mesh_from_sdf(sdf_fn, resolution=96, bounds=((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), narrow_band=True,
                  lipschitz=1.5):
    """Watertight marching-cubes mesh of {sdf_fn > 0} (sdf positive inside) on a grid over `bounds`.

    `resolution` grid points span the box's largest extent. With `narrow_band` the SDF is first
    evaluated on a 4x coarser grid and, on the fine grid, only where the trilinearly upsampled
    coarse value is within a Lipschitz-safe band of zero; elsewhere the upsampled value is kept
    (its sign is right there, and marching cubes only needs signs away from the surface).
    Returns (vertices [V,3] float64, faces [F,3] int64) with outward-facing triangles.
    """
    lo, hi = np.asarray(bounds[0], float), np.asarray(bounds[1], float)
    h = (hi - lo).max() / (resolution - 1)
    n = np.ceil((hi - lo) / h).astype(int) + 1
    if narrow_band:
        m = np.ceil((n - 1) / 4).astype(int)
        n = 4 * m + 1
        cax = [lo[i] + 4 * h * np.arange(m[i] + 1) for i in range(3)]
        cg = np.stack(np.meshgrid(*cax, indexing="ij"), -1).reshape(-1, 3)
        coarse = sdf_fn(cg).reshape(m + 1)
        vol = ndimage.zoom(coarse, n / (m + 1), order=1, grid_mode=False)
        assert vol.shape == tuple(n)
        band = np.abs(vol) < lipschitz * np.sqrt(3) * 5 * h
        idx = np.nonzero(band)
        pts = lo + np.stack(idx, 1) * h
        vol[idx] = sdf_fn(pts)
    else:
        ax = [lo[i] + h * np.arange(n[i]) for i in range(3)]
        g = np.stack(np.meshgrid(*ax, indexing="ij"), -1).reshape(-1, 3)
        vol = sdf_fn(g).reshape(n)
    # A closed surface needs the object strictly inside the grid: clamp the border to "outside".
    border = np.ones_like(vol, bool)
    border[1:-1, 1:-1, 1:-1] = False
    vol[border] = np.minimum(vol[border], -h)
    if vol.max() <= 0:
        raise ValueError("empty shape: no positive sdf inside the bounds")
    v, f, _, _ = marching_cubes(vol.astype(np.float32), level=0.0, spacing=(h, h, h))
    # skimage's winding is clockwise seen from outside for a positive-inside field: flip it.
    return v.astype(np.float64) + lo, f[:, ::-1].astype(np.int64)


def sample_on_mesh(vertices, faces, n, rng):
    """Area-weighted uniform points on a triangle mesh: (points [n,3], face index [n])."""
    tri = vertices[faces]
    cdf = np.cumsum(face_areas(vertices, faces))
    fi = np.minimum(np.searchsorted(cdf, rng.uniform(0, cdf[-1], n)), len(faces) - 1)
    r1, r2 = np.sqrt(rng.uniform(size=n)), rng.uniform(size=n)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    return (tri[fi] * w[:, :, None]).sum(1), fi


def _normaliser(points, rng):
    lo, hi = points.min(0), points.max(0)
    centre = 0.5 * (lo + hi)
    target = rng.uniform(0.9, 0.95)
    scale = target / (0.5 * (hi - lo).max())
    return centre, scale


# ---------------------------------------------------------------- samples


def make_shape_sample(seed, n_surface=8192, n_query=8192, mesh_resolution=64, near_sigmas=(0.01, 0.05)):
    """One random body in one random pose, normalised into [-1, 1].

    Returns float32 arrays: "surface" [n_surface,6] (xyz + outward unit normal, exactly on the
    zero level set up to Newton tolerance), "query" [n_query,3] (half near the surface with
    Gaussian offsets at two scales, half uniform in [-1.05, 1.05]^3), "sdf" [n_query] (analytic,
    positive inside, in normalised units), "occupancy" [n_query] (bool, sdf > 0); plus "centre",
    "scale" (world -> normalised: (x - centre) * scale), "seed" and "archetype".
    """
    rng = np.random.default_rng(seed)
    body = sample_body(rng)
    pose = sample_pose(body, rng)
    sdf_w = lambda p: body.sdf(p, pose)  # noqa: E731
    v, f = mesh_from_sdf(sdf_w, mesh_resolution, body.bounds(pose))
    centre, scale = _normaliser(v, rng)
    pts, _ = sample_on_mesh(v, f, n_surface, rng)
    pts, nrm = body.project(pts, pose, steps=3)
    surface = np.concatenate([(pts - centre) * scale, nrm], 1)
    n_near = n_query // 2
    base = surface[rng.integers(0, n_surface, n_near), :3]
    sig = np.where(rng.random(n_near) < 0.5, near_sigmas[0], near_sigmas[1])
    near = base + rng.normal(size=(n_near, 3)) * sig[:, None]
    uni = rng.uniform(-1.05, 1.05, (n_query - n_near, 3))
    query = np.concatenate([near, uni])
    sdf = sdf_w(query / scale + centre) * scale
    return {
        "surface": surface.astype(np.float32),
        "query": query.astype(np.float32),
        "sdf": sdf.astype(np.float32),
        "occupancy": sdf > 0,
        "centre": centre.astype(np.float32),
        "scale": np.float32(scale),
        "seed": np.int64(seed),
        "archetype": np.array(body.archetype),
    }


def make_sequence_sample(seed, n_frames=16, n_tracked=4096, mesh_resolution=96, render_size=0, rest_resolution=64,
                         max_correction=0.04, return_body=False):
    """A random body in a random motion, normalised into [-1, 1] over the whole sequence.

    Returns "vertices"/"faces" (lists of per-frame arrays: watertight marching-cubes meshes, each
    with its own topology), "vertex_part" (part index per vertex, for colours/analysis),
    "tracked" [T, n_tracked, 6] float32 (same material points every frame: xyz + outward normal),
    "tracked_part" [n_tracked], "rest_points" [n_tracked,3] (the material points on the rest
    surface, normalised like the frames), "renders" [T, S, S, 4] uint8 when render_size > 0, "camera"
    (dict), "centre"/"scale" (world -> normalised), "seed", "archetype", "fps".
    """
    from .render import look_at_camera, render_mesh

    if n_frames < 2:
        raise ValueError("n_frames must be >= 2")
    rng = np.random.default_rng(seed)
    body = sample_body(rng)
    poses = sample_motion(body, rng, n_frames)
    rest = body.rest_pose()
    # material points: uniform on the rest surface
    rv, rf = mesh_from_sdf(lambda p: body.sdf(p, rest), rest_resolution, body.bounds(rest))
    # Oversample, then drop the candidates whose re-projection had to move them far from their
    # skinned position in some frame (points caught between touching parts can snap to the
    # other part's surface): their "ground truth" would be an artefact of the approximation.
    n_cand = int(np.ceil(n_tracked * 1.25))
    rp, _ = sample_on_mesh(rv, rf, n_cand, rng)
    rp, _ = body.project(rp, rest, steps=3)
    xs, ns, corr = track_points(body, rp, poses, return_correction=True)
    worst = corr.max(0) / body.scale
    good = np.nonzero(worst < max_correction)[0]
    if len(good) >= n_tracked:
        keep = np.sort(rng.choice(good, n_tracked, replace=False))
    else:
        keep = np.sort(np.argsort(worst, kind="stable")[:n_tracked])
    rp, xs, ns = rp[keep], xs[:, keep], ns[:, keep]
    _, tracked_part = body.sdf(rp, rest, return_part=True)
    # one grid for all frames (union of per-frame bounds)
    los, his = zip(*(body.bounds(pose_at(poses, t)) for t in range(n_frames)))
    box = (np.min(los, 0), np.max(his, 0))
    verts, faces, vparts = [], [], []
    for t in range(n_frames):
        pose = pose_at(poses, t)
        v, f = mesh_from_sdf(lambda p, pose=pose: body.sdf(p, pose), mesh_resolution, box)
        verts.append(v)
        faces.append(f)
        vparts.append(body.sdf(v, pose, return_part=True)[1])
    centre, scale = _normaliser(np.concatenate(verts), rng)
    verts = [((v - centre) * scale).astype(np.float32) for v in verts]
    tracked = np.concatenate([(xs - centre) * scale, ns], -1).astype(np.float32)
    cam = look_at_camera(azimuth=rng.uniform(-1.2, 1.2), elevation=rng.uniform(0.05, 0.5),
                         distance=rng.uniform(3.6, 4.0), fov_deg=40.0)
    out = {
        "vertices": verts, "faces": [f.astype(np.int32) for f in faces],
        "vertex_part": [p.astype(np.int16) for p in vparts],
        "tracked": tracked, "tracked_part": tracked_part.astype(np.int16),
        "rest_points": ((rp - centre) * scale).astype(np.float32),
        "camera": cam, "centre": centre.astype(np.float32), "scale": np.float32(scale),
        "seed": np.int64(seed), "archetype": np.array(body.archetype), "fps": np.int64(24),
        "part_colors": body.colors.astype(np.float32),
    }
    if render_size:
        cols = body.colors
        out["renders"] = np.stack([render_mesh(v, f, size=render_size, camera=cam, vertex_colors=cols[p])
                                   for v, f, p in zip(verts, faces, vparts)])
    if return_body:
        out["body"], out["poses"] = body, poses
    return out


# ---------------------------------------------------------------- disk cache


def _flatten_sequence(s):
    d = {k: v for k, v in s.items() if k not in ("vertices", "faces", "vertex_part", "camera", "body", "poses")}
    d["vertices"] = np.concatenate(s["vertices"])
    d["faces"] = np.concatenate(s["faces"])
    d["vertex_part"] = np.concatenate(s["vertex_part"])
    d["vertex_counts"] = np.array([len(v) for v in s["vertices"]], np.int64)
    d["face_counts"] = np.array([len(f) for f in s["faces"]], np.int64)
    for k, v in s["camera"].items():
        d["camera_" + k] = np.asarray(v)
    return d


def unflatten_sequence(d):
    """Inverse of the cache layout: per-frame lists of vertices/faces/vertex_part, camera dict."""
    d = dict(d)
    vs = np.cumsum(d.pop("vertex_counts"))[:-1]
    fs = np.cumsum(d.pop("face_counts"))[:-1]
    d["vertices"] = np.split(d["vertices"], vs)
    d["faces"] = np.split(d["faces"], fs)
    d["vertex_part"] = np.split(d["vertex_part"], vs)
    d["camera"] = {k[7:]: d.pop(k) for k in list(d) if k.startswith("camera_")}
    return d


def cache_path(out_dir, kind, seed) -> Path:
    return Path(out_dir) / f"{kind}_{int(seed):08d}.npz"


def _build_one(args):
    out_dir, kind, seed, kwargs = args
    path = cache_path(out_dir, kind, seed)
    if path.exists():
        return str(path), False, 0.0
    t0 = time.perf_counter()
    if kind == "shape":
        arrays = make_shape_sample(seed, **kwargs)
    else:
        arrays = _flatten_sequence(make_sequence_sample(seed, **kwargs))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)  # atomic: readers never see a partial file
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path), True, time.perf_counter() - t0


def build_cache(out_dir, kind="shape", start_seed=0, count=100, workers=2, **kwargs):
    """Write one .npz per seed in [start_seed, start_seed + count); existing files are skipped.

    Deterministic by seed, atomic writes, so an interrupted build can simply be rerun. Extra
    keyword arguments go to `make_shape_sample` / `make_sequence_sample`. Returns a summary dict
    (paths, built, skipped, seconds, samples_per_s for the built ones).
    """
    if kind not in ("shape", "sequence"):
        raise ValueError(f"kind must be 'shape' or 'sequence', not {kind!r}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(str(out_dir), kind, s, kwargs) for s in range(start_seed, start_seed + count)]
    todo = [j for j in jobs if not cache_path(out_dir, kind, j[2]).exists()]
    t0 = time.perf_counter()
    if workers <= 1 or len(todo) <= 1:
        results = [_build_one(j) for j in todo]
    else:
        import multiprocessing as mp

        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            results = list(pool.imap_unordered(_build_one, todo, chunksize=1))
    dt = time.perf_counter() - t0
    built = sum(1 for r in results if r[1])
    return {"paths": [str(cache_path(out_dir, kind, j[2])) for j in jobs], "built": built,
            "skipped": len(jobs) - built, "seconds": dt, "samples_per_s": built / dt if built and dt > 0 else 0.0}


class CachedShapes:
    """Shape samples from a cache directory (numpy only). Item i: dict of arrays.

    `subsample(i, n_surface, n_query, rng)` draws random subsets (e.g. per training step).
    """

    def __init__(self, directory, kind="shape"):
        self.directory = Path(directory)
        self.kind = kind
        self.paths = sorted(self.directory.glob(f"{kind}_*.npz"))

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with np.load(self.paths[i], allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        return unflatten_sequence(d) if self.kind == "sequence" else d

    def subsample(self, i, n_surface=2048, n_query=2048, rng=None):
        rng = np.random.default_rng() if rng is None else rng
        d = self[i]
        si = rng.choice(len(d["surface"]), n_surface, replace=n_surface > len(d["surface"]))
        qi = rng.choice(len(d["query"]), n_query, replace=n_query > len(d["query"]))
        return {"surface": d["surface"][si], "query": d["query"][qi], "sdf": d["sdf"][qi],
                "occupancy": d["occupancy"][qi]}
