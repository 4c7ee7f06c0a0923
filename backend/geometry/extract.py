"""Surface extraction from any signed field: coarse-to-fine banded refinement + marching cubes.

`sdf_fn(points [N, 3] float32) -> values [N]` is any callable (an analytic SDF in tests, a closure
over the VAE's decoded memory in reconstruction). Values are POSITIVE INSIDE, as the VAE's are;
the surface is where value == level. Only the points near the surface are queried.

The grid has `resolution` cells per axis over [-bounds, bounds]^3, i.e. (resolution + 1)^3 points,
the same points `dense_extract` queries. Coarse-to-fine:

1. query every point of a coarse grid (resolution / 2^k cells per axis, about `coarse_resolution`);
2. at each level, a cell is ACTIVE when its 8 corner values change sign, or when the smallest
   |value - level| at its corners is below the band: band * h * max(1, s) (h = the cell's edge,
   s = the field's measured steepness, below);
3. each active cell is split in 8 (the next level's grid points inside and on it are queried);
   cells that are not active are never queried again: their points take the trilinear
   interpolation of the coarser values, which have the same sign at all 8 corners;
4. at full resolution, `skimage.measure.marching_cubes` runs on the filled array.

The assumption that keeps thin parts (the classic failure of coarse-to-fine) is a bound on how
fast the field changes: if |f(p) - f(q)| <= L * |p - q| (L = 1 for a true SDF) then every cell
that contains surface has all corners within L * sqrt(3) * h of the level, so it is active
whenever the band is at least L * sqrt(3) * h; and a cell that is not active has no zero inside
(its corners are further than that from the level), so its sign fill is exact. Under that bound
the result is IDENTICAL to `dense_extract` at the same resolution, however thin a part is (down
to what the fine grid itself resolves). The default band of 3 cells covers L <= 1.73 in the
field's own units: a true SDF with slack for a learned field that is only roughly one.

Steepness: a learned field's units are not a distance's. TripoSG's decoder gives unscaled logits
(TripoSG issue #46: of the order of 100x a distance near the surface; the official flash
extraction's value band, |f| < 0.95 dilated by two grid points, is only narrow for such a field).
With a band fixed in field units a field k times steeper than a distance gets a band k times
narrower in space. `python -m backend bench extract` measured the loss at the release's 512
(coarse 32^3), band fixed: at k = 32 a 0.5 %-thick plate lost pieces 15 cells wide and a
1 %-radius rod fell into 3 pieces; at k = 100 both fell into 5 (on its scale model of that grid,
nothing was lost up to k = 8). So each level measures s = `_steepness` (the 90th percentile of
|f(a) - f(b)| / |a - b| over the grid edges that cross the level; 0.92-0.97 for a true distance),
keeps the largest so far, and scales the band by it: about the same cells are active for k * f as
for f, and those meshes are the dense ones again. s never narrows the band below band * h
(max(1, s)): the tiny VAE's field is 10x flatter than a distance across its surface (s = 0.05-0.14)
but up to 1.8x steeper a coarse cell's diagonal away from it. What s cannot see is a field that
is flat near its surface and much steeper further out; such a field can still lose parts thinner
than a coarse cell (2 * bounds / coarse_resolution): raise `band` for it. A field that saturates
within a coarse cell (a truncated distance) makes the band cover the saturated values:
refinement is then as costly as the dense grid, never wrong.

Memory: the full-resolution value array is dense float32 ((resolution + 1)^3 * 4 bytes, 68 MB at
256) and the indices of the points still to query are int64; the queries themselves go to
sdf_fn in chunks of at most `chunk_size` points, so the model's activations stay bounded.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import numpy as np

from ..errors import Cancelled

DEFAULT_CHUNK_SIZE = 65536
DEFAULT_BAND = 3.0  # in cell sizes of each level; see the module docstring
DEFAULT_COARSE_RESOLUTION = 32

Progress = Callable[[int, int, str], None]


def _as_numpy_values(values, n: int) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor; torch is not imported for analytic fields
        values = values.detach().float().cpu().numpy()
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.shape[0] != n:
        raise ValueError(f"sdf_fn returned {values.shape[0]} values for {n} points")
    return values


class _Querier:
    """Calls sdf_fn on grid points given by flat indices, in chunks; counts everything."""

    def __init__(self, sdf_fn, resolution: int, bounds: float, chunk_size: int,
                 progress: Optional[Progress], should_cancel: Optional[Callable[[], bool]]):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.sdf_fn = sdf_fn
        self.n = resolution + 1
        self.step = 2.0 * bounds / resolution
        self.bounds = bounds
        self.chunk_size = int(chunk_size)
        self.progress = progress
        self.should_cancel = should_cancel
        self.queries = 0
        self.calls = 0
        self.max_batch = 0
        self.seconds = 0.0

    def points(self, flat: np.ndarray) -> np.ndarray:
        i, j, k = np.unravel_index(flat, (self.n, self.n, self.n))
        xyz = np.stack([i, j, k], axis=-1).astype(np.float32)
        return xyz * np.float32(self.step) - np.float32(self.bounds)

    def __call__(self, flat: np.ndarray, label: str = "") -> np.ndarray:
        out = np.empty(len(flat), dtype=np.float32)
        total = len(flat)
        for start in range(0, total, self.chunk_size):
            if self.should_cancel is not None and self.should_cancel():
                raise Cancelled()
            idx = flat[start:start + self.chunk_size]
            t0 = time.perf_counter()
            out[start:start + len(idx)] = _as_numpy_values(self.sdf_fn(self.points(idx)), len(idx))
            self.seconds += time.perf_counter() - t0
            self.queries += len(idx)
            self.calls += 1
            self.max_batch = max(self.max_batch, len(idx))
            if self.progress is not None:
                self.progress(start + len(idx), total, label)
        return out


def _upsample(values: np.ndarray) -> np.ndarray:
    """(r+1)^3 -> (2r+1)^3 by trilinear interpolation (exact at the coarse points)."""
    for axis in range(3):
        shape = list(values.shape)
        shape[axis] = 2 * shape[axis] - 1
        up = np.empty(shape, dtype=np.float32)
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis] = slice(0, None, 2)
        odd[axis] = slice(1, None, 2)
        up[tuple(even)] = values
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        up[tuple(odd)] = 0.5 * (values[tuple(lo)] + values[tuple(hi)])
        values = up
    return values


def _cell_min_max(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell min and max over the 8 corners: (r+1)^3 points -> r^3 cells."""
    lo = np.minimum(values[:-1], values[1:])
    hi = np.maximum(values[:-1], values[1:])
    lo = np.minimum(lo[:, :-1], lo[:, 1:])
    hi = np.maximum(hi[:, :-1], hi[:, 1:])
    lo = np.minimum(lo[:, :, :-1], lo[:, :, 1:])
    hi = np.maximum(hi[:, :, :-1], hi[:, :, 1:])
    return lo, hi


def _active_cells(values: np.ndarray, level: float, band_value: float) -> np.ndarray:
    lo, hi = _cell_min_max(values)
    crossing = (lo <= level) & (hi >= level)
    near = np.minimum(np.abs(lo - level), np.abs(hi - level)) < band_value
    return crossing | near


def _steepness(values: np.ndarray, level: float, step: float) -> float:
    """The field's slope across its surface, a distance's being 1: the 90th percentile of
    |f(a) - f(b)| / step over the grid edges whose ends lie on either side of `level`.

    Edges meet the surface at all angles, so an exact distance gives 0.92-0.97 (the thin shapes of
    `bench extract`), and a field k times steeper about 0.95 k. The percentile, not the maximum:
    one wild edge of a learned field would widen the band everywhere."""
    steps = _crossing_steps(values, level)
    if len(steps) == 0:
        # No edge crosses: all of the surface lies between grid points (every part is thinner than
        # a cell), where only the band can find it. The edges at the points nearest the level
        # stand in, or a field 100x a distance would get a band 100x too narrow and lose it all.
        steps = _steps_near_level(values, level)
    return float(np.percentile(steps, 90)) / step if len(steps) else 0.0


def _crossing_steps(values: np.ndarray, level: float) -> np.ndarray:
    """|f(a) - f(b)| over the grid edges with one end above `level` and the other not."""
    inside = values > level
    steps = []
    for axis in range(3):
        a, m = np.moveaxis(values, axis, 0), np.moveaxis(inside, axis, 0)
        crossing = m[:-1] != m[1:]
        steps.append(np.abs(a[1:][crossing] - a[:-1][crossing]))
    return np.concatenate(steps)


def _steps_near_level(values: np.ndarray, level: float) -> np.ndarray:
    """|f(a) - f(b)| over the grid edges that touch the 1 % of grid points (at least 8) nearest
    `level`."""
    gap = np.abs(values - level).ravel()
    k = min(gap.size, max(8, gap.size // 100))
    near = np.zeros(gap.size, dtype=bool)
    near[np.argpartition(gap, k - 1)[:k]] = True
    near = near.reshape(values.shape)
    steps = []
    for axis in range(3):
        a, m = np.moveaxis(values, axis, 0), np.moveaxis(near, axis, 0)
        touching = m[:-1] | m[1:]
        steps.append(np.abs(a[1:][touching] - a[:-1][touching]))
    return np.concatenate(steps)


def _level_plan(resolution: int, coarse_resolution: int) -> list[int]:
    """Resolutions from coarse to fine, each doubling, ending at `resolution`."""
    levels = [resolution]
    while levels[0] % 2 == 0 and levels[0] // 2 >= coarse_resolution:
        levels.insert(0, levels[0] // 2)
    return levels


def _marching_cubes(values: np.ndarray, resolution: int, bounds: float, level: float):
    from skimage.measure import marching_cubes

    if not (values.min() < level < values.max()):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    step = 2.0 * bounds / resolution
    verts, faces, _, _ = marching_cubes(values, level=level, spacing=(step, step, step),
                                        allow_degenerate=False)
    verts = (verts - bounds).astype(np.float32)
    # With a field that is larger inside, skimage's default winding faces inwards; swapping two
    # corners makes it counter-clockwise seen from outside (outward normals, positive volume).
    return verts, faces[:, ::-1].astype(np.int64)


def extract_mesh(sdf_fn, *, resolution: int = 256, bounds: float = 1.005, level: float = 0.0,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, coarse_resolution: int = DEFAULT_COARSE_RESOLUTION,
                 band: float = DEFAULT_BAND, progress: Optional[Progress] = None,
                 should_cancel: Optional[Callable[[], bool]] = None):
    """Coarse-to-fine extraction -> (vertices [V,3] float32, faces [F,3] int64, stats dict).

    Empty arrays when the field has no crossing of `level` in the box. `progress(step, total,
    message)` is called after each chunk (step/total count the current level's queries);
    `should_cancel()` is polled before each chunk and raises `Cancelled`.
    """
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    started = time.perf_counter()
    query = _Querier(sdf_fn, resolution, bounds, chunk_size, progress, should_cancel)
    plan = _level_plan(int(resolution), int(coarse_resolution))
    n_fine = resolution + 1

    def to_flat(ijk: np.ndarray, res: int) -> np.ndarray:
        s = resolution // res
        return np.ravel_multi_index(tuple((ijk * s).T), (n_fine, n_fine, n_fine))

    # Level 0: the whole coarse grid.
    coarse = np.stack(np.meshgrid(*[np.arange(plan[0] + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    values = query(to_flat(coarse, plan[0]), f"level 1/{len(plan)} ({plan[0]}^3, all points)")
    values = values.reshape((plan[0] + 1,) * 3)
    del coarse
    level_stats = [dict(resolution=plan[0], queries=int(values.size), active_cells=None)]
    candidates = np.ones((plan[0],) * 3, dtype=bool)  # cells whose corners are all exact
    steepness = 0.0

    for li, res in enumerate(plan[1:], start=2):
        prev = res // 2
        h_prev = 2.0 * bounds / prev
        steepness = max(steepness, _steepness(values, level, h_prev))
        band_value = band * h_prev * max(1.0, steepness)
        active = candidates & _active_cells(values, level, band_value)
        cells = np.argwhere(active)  # [K, 3] at resolution prev
        values = _upsample(values)
        # Points of the new grid inside or on an active cell: 2*c + {0,1,2}^3; the even ones
        # (the old corners) are exact already.
        need = np.zeros(values.shape, dtype=bool)
        for d in np.ndindex(3, 3, 3):
            if d[0] % 2 == 0 and d[1] % 2 == 0 and d[2] % 2 == 0:
                continue
            c = 2 * cells + np.asarray(d)
            need[c[:, 0], c[:, 1], c[:, 2]] = True
        ijk = np.argwhere(need)
        del need
        if len(ijk):
            new = query(to_flat(ijk, res), f"level {li}/{len(plan)} ({res}^3, {len(cells)} active cells)")
            values[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = new
        level_stats[-1].update(active_cells=int(len(cells)), band_value=float(band_value))
        level_stats.append(dict(resolution=res, queries=int(len(ijk)), active_cells=None))
        # Children of active cells are the next level's candidates.
        candidates = np.zeros((res,) * 3, dtype=bool)
        for d in np.ndindex(2, 2, 2):
            c = 2 * cells + np.asarray(d)
            candidates[c[:, 0], c[:, 1], c[:, 2]] = True
        del cells, ijk

    verts, faces = _marching_cubes(values, resolution, bounds, level)
    dense = n_fine ** 3
    stats = dict(
        method="coarse_to_fine", resolution=int(resolution), coarse_resolution=int(plan[0]), band=float(band),
        steepness=float(steepness),
        levels=level_stats, queries=int(query.queries), dense_queries=int(dense),
        query_ratio=query.queries / dense, calls=int(query.calls), max_batch=int(query.max_batch),
        query_seconds=query.seconds, seconds=time.perf_counter() - started,
        vertices=int(len(verts)), faces=int(len(faces)),
    )
    return verts, faces, stats


def dense_extract(sdf_fn, resolution: int = 256, *, bounds: float = 1.005, level: float = 0.0,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Optional[Progress] = None,
                  should_cancel: Optional[Callable[[], bool]] = None):
    """The baseline: every one of the (resolution + 1)^3 grid points queried, in chunks."""
    started = time.perf_counter()
    query = _Querier(sdf_fn, resolution, bounds, chunk_size, progress, should_cancel)
    n = resolution + 1
    values = query(np.arange(n ** 3, dtype=np.int64), f"dense {resolution}^3").reshape(n, n, n)
    verts, faces = _marching_cubes(values, resolution, bounds, level)
    stats = dict(
        method="dense", resolution=int(resolution), queries=int(query.queries), dense_queries=int(n ** 3),
        query_ratio=1.0, calls=int(query.calls), max_batch=int(query.max_batch),
        query_seconds=query.seconds, seconds=time.perf_counter() - started,
        vertices=int(len(verts)), faces=int(len(faces)),
    )
    return verts, faces, stats


def band_for_lipschitz(lipschitz: float) -> float:
    """The smallest band (in cell sizes) that keeps extraction exact for an L-Lipschitz field."""
    return float(lipschitz) * math.sqrt(3.0)
