"""Extraction you can trust: coarse-to-fine (backend.geometry.extract) against the dense grid, on thin parts.

    python -m backend bench extract [--shapes plate,rod,handle,creature,vae-spider,vae-panda]
        [--resolutions 128 256] [--vae-resolutions 64 128] [--scale-model 128] [--steep 4 100]
        [--weights-dir DIR] [--panda PATH] [--json PATH]

Shapes, as signed fields POSITIVE INSIDE (the VAE's convention) in the VAE's box [-1, 1]^3. The box
is 2 wide, so "x %" of it is x/100 * 2:
  plate     a 0.5 %-thick plate (thickness 0.01), 1.4 x 1.0, tilted off the grid's axes
  rod       a 1 %-radius rod (radius 0.02), 1.7 long, tilted
  handle    a torus (tube radius 0.12) with a thin handle: a ring of tube radius 0.01 (0.5 %) fused to
            its outer rim, as a mug's
  creature  body, head, four legs, a tail and a free thin ring (the earlier reference shape)
  vae-*     the tiny VAE's field (backend/weights/tiny/vae) for real shapes: a spider from
            backend.synthetic (seed 0, thin legs) and the panda mesh (../shared/examples)
The analytic fields are exact distances (so 1-Lipschitz), where extract.py's docstring proves the
coarse-to-fine mesh identical to the dense one; the table checks it. --steep k adds each thin
shape's field times k: the same surface, k times steeper than a distance, as a learned field's
unscaled logits are (TripoSG's: of the order of 100x); the band's steepness calibration is what
keeps those rows identical too.

A thin part of thickness t is RESOLVED by a grid of cell c when t >= sqrt(3) * c: a slab that thick
holds a face-connected set of grid points whatever its tilt. Thinner ones break up in the dense grid
too (then both meshes must still agree). The release extracts at 512 (c = 0.0039; plate 2.5 cells,
rod 5.1 cells in radius, handle 2.5 cells); the plate needs 349 or more. A dense 512^3 grid is 135M
queries, so --scale-model R runs the release's grid at R: resolution R and coarse resolution
32 * R / 512 (as many levels, same band), thin sizes x 512 / R, so every thin part is as many fine
and coarse cells across as at 512.

Columns per shape and resolution: queries and seconds of each extractor; connected components of
each and how many of the dense mesh's components have their own counterpart in ours (Chamfer
between the two components within one cell); Chamfer (mean unsquared nearest-neighbour distance
between the meshes' vertices, each way, averaged) and the worst vertex distance (Hausdorff), both
in cells (2 * bounds / resolution). 0 means the coarse-to-fine mesh is the dense one.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from ..synthetic.sdf import HANDLE_TUBE, PLATE_THICKNESS, ROD_RADIUS, creature_sdf, handle_sdf, plate_sdf, rod_sdf
from .common import choices, write_json

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PANDA = REPO.parent / "shared" / "examples" / "panda" / "panda.glb"
BOUNDS = 1.005  # the extraction box's half-side (backend.pipelines.generate.anchor.EXTRACT_BOUNDS)
RELEASE_RESOLUTION = 512  # backend.pipelines.generate.anchor.EXTRACT_RESOLUTION
ANALYTIC = ("plate", "rod", "handle", "creature")
VAE_SHAPES = ("vae-spider", "vae-panda")
SHAPES = ANALYTIC + VAE_SHAPES
THIN = ("plate", "rod", "handle")  # the shapes --steep and --scale-model apply to


@dataclass
class Shape:
    name: str
    sdf: Callable  # points [N, 3] -> values [N], positive inside
    thinnest: Optional[float]  # the thinnest part's thickness (a rod's diameter), box units; None: unknown


def thin_shapes(thin_scale: float = 1.0, steepness: float = 1.0) -> Dict[str, Shape]:
    """The analytic shapes, their thin sizes times `thin_scale`, their fields times `steepness`."""
    s, k = float(thin_scale), float(steepness)
    suffix = "" if k == 1.0 else f" x{k:g}"
    shapes = [
        Shape("plate", lambda p: k * plate_sdf(p, PLATE_THICKNESS * s), PLATE_THICKNESS * s),
        Shape("rod", lambda p: k * rod_sdf(p, ROD_RADIUS * s), 2 * ROD_RADIUS * s),
        Shape("handle", lambda p: k * handle_sdf(p, HANDLE_TUBE * s), 2 * HANDLE_TUBE * s),
    ]
    return {sh.name + suffix: Shape(sh.name + suffix, sh.sdf, sh.thinnest) for sh in shapes}


def cell_size(resolution: int, bounds: float = BOUNDS) -> float:
    return 2.0 * bounds / resolution


def resolves(thickness: float, resolution: int, bounds: float = BOUNDS) -> bool:
    """Whether a part `thickness` thick keeps a face-connected set of inside grid points at any tilt."""
    return thickness >= math.sqrt(3.0) * cell_size(resolution, bounds)


def scale_model(resolution: int) -> tuple[float, int]:
    """(thin_scale, coarse_resolution) that make a `resolution` grid see the thin shapes as the
    release's 512 grid with the default coarse resolution sees the real ones (module docstring)."""
    from ..geometry.extract import DEFAULT_COARSE_RESOLUTION

    factor = RELEASE_RESOLUTION / resolution
    coarse = DEFAULT_COARSE_RESOLUTION * resolution / RELEASE_RESOLUTION
    if factor < 1 or coarse != int(coarse) or coarse < 2:
        raise ValueError(f"--scale-model {resolution}: needs R <= 512 and 32 * R / 512 a whole number >= 2")
    return factor, int(coarse)


# ---------------------------------------------------------------- the VAE's field for real shapes


def vae_field(model, points_normals: np.ndarray):
    """The VAE's field for one shape given as surface points + outward normals [N, 6] in its box
    (posterior mode, decoded once; as `python -m backend reconstruct` queries it)."""
    import torch

    from ..pipelines.reconstruct import vae_sdf_fn

    x = torch.from_numpy(np.asarray(points_normals, np.float32))[None]
    with torch.inference_mode():
        memory = model.decode_latents(model.encode(x, generator=torch.Generator().manual_seed(0)).mode())
    return vae_sdf_fn(model, memory)


def spider_surface(points: int = 16384) -> np.ndarray:
    """Surface samples of backend.synthetic's seed-0 body (a spider: eight thin legs), in [-1, 1]."""
    from ..synthetic.dataset import make_shape_sample

    return make_shape_sample(0, n_surface=points)["surface"]


def mesh_surface(path, points: int = 16384) -> np.ndarray:
    """Surface samples of a mesh file placed in the box as `reconstruct` places its input."""
    from ..geometry import normalization_for, sample_surface
    from ..geometry.orient import orient_faces
    from ..io.mesh import load_mesh
    from ..pipelines.reconstruct import NORMALIZE_MARGIN

    mesh = load_mesh(str(path), role="input")
    vertices = normalization_for(mesh.vertices, margin=NORMALIZE_MARGIN).apply(mesh.vertices)
    # The VAE was trained on outward normals; files often mix windings.
    faces = orient_faces(vertices, mesh.faces)
    pts, nrm = sample_surface(vertices, faces, points, seed=0)
    return np.concatenate([pts, nrm], axis=1)


def vae_shapes(weights, names, panda=DEFAULT_PANDA) -> Dict[str, Shape]:
    """The tiny VAE's fields for the asked `names` among VAE_SHAPES that can be made here."""
    from ..models.vae import ShapeVAE

    model = ShapeVAE.from_pretrained(weights, device="cpu")
    surfaces = {"vae-spider": spider_surface}
    if Path(panda).is_file():
        surfaces["vae-panda"] = lambda: mesh_surface(panda)
    return {name: Shape(name, vae_field(model, surfaces[name]()), None) for name in names if name in surfaces}


# ---------------------------------------------------------------- comparison


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Mean unsquared nearest-neighbour distance between two point sets, each way, averaged."""
    return _distances(a, b)[0]


def _distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Chamfer, Hausdorff) between two point sets; inf when only one is empty."""
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        return (float("inf"),) * 2 if len(a) != len(b) else (0.0, 0.0)
    da, _ = cKDTree(b).query(a)
    db, _ = cKDTree(a).query(b)
    return float(0.5 * (da.mean() + db.mean())), float(max(da.max(), db.max()))


def _component_vertices(vertices: np.ndarray, faces: np.ndarray) -> list[np.ndarray]:
    from ..geometry import connected_components

    if len(faces) == 0:
        return []
    labels = connected_components(len(vertices), faces)
    return [vertices[np.unique(faces[labels == c])] for c in np.unique(labels)]


def match_components(reference, ours, cell: float) -> dict:
    """Each of the reference mesh's components paired with one of ours: the one most of its vertices
    are nearest to; matched when that pair's Chamfer is within one cell and no other reference
    component took it. `reference` and `ours` are (vertices, faces)."""
    from scipy.spatial import cKDTree

    ref_parts, our_parts = _component_vertices(*reference), _component_vertices(*ours)
    result = dict(dense_components=len(ref_parts), c2f_components=len(our_parts), matched=0, worst_cells=0.0)
    if not ref_parts or not our_parts:
        result["worst_cells"] = 0.0 if len(ref_parts) == len(our_parts) else float("inf")
        return result
    owner = np.concatenate([np.full(len(v), i) for i, v in enumerate(our_parts)])
    tree = cKDTree(np.concatenate(our_parts))
    taken = set()
    for part in ref_parts:
        pick = int(np.bincount(owner[tree.query(part)[1]]).argmax())
        cells = chamfer(part, our_parts[pick]) / cell
        result["worst_cells"] = max(result["worst_cells"], cells)
        if cells <= 1.0 and pick not in taken:
            result["matched"] += 1
        taken.add(pick)
    return result


def compare(name: str, sdf_fn, resolution: int, chunk_size: int = 65536, *, coarse_resolution: Optional[int] = None,
            band: Optional[float] = None, thinnest: Optional[float] = None) -> dict:
    """One row: both extractors on one field at one resolution (defaults: extract_mesh's own)."""
    from ..geometry import dense_extract, extract_mesh

    options = {k: v for k, v in dict(coarse_resolution=coarse_resolution, band=band).items() if v is not None}
    v1, f1, s1 = extract_mesh(sdf_fn, resolution=resolution, bounds=BOUNDS, chunk_size=chunk_size, **options)
    v0, f0, s0 = dense_extract(sdf_fn, resolution, bounds=BOUNDS, chunk_size=chunk_size)
    cell = cell_size(resolution)
    cham, haus = _distances(v0, v1)
    components = match_components((v0, f0), (v1, f1), cell)
    return dict(
        field=name, resolution=resolution, coarse_resolution=s1["coarse_resolution"], band=s1["band"],
        thinnest_cells=None if thinnest is None else thinnest / cell,
        resolved=None if thinnest is None else resolves(thinnest, resolution),
        dense_queries=s0["queries"], c2f_queries=s1["queries"], query_ratio=s1["queries"] / s0["queries"],
        dense_seconds=s0["seconds"], c2f_seconds=s1["seconds"], time_ratio=s1["seconds"] / s0["seconds"],
        **components, chamfer=cham, chamfer_cells=cham / cell, hausdorff_cells=haus / cell,
        identical=bool(np.array_equal(f0, f1) and np.allclose(v0, v1, atol=1e-6 * cell)),
        faces=len(f1), dense_faces=len(f0), levels=s1["levels"])


def trustworthy(row: dict) -> bool:
    """The same components, each matched, Chamfer AND the worst vertex distance within one cell.

    The mean alone averages a lost piece away: the release-scale plate in a field 32x steeper than
    a distance loses pieces 15 cells wide and still scores a Chamfer of 0.52 cells."""
    return (row["dense_components"] == row["c2f_components"] == row["matched"]
            and row["chamfer_cells"] <= 1.0 and row["hausdorff_cells"] <= 1.0)


# ---------------------------------------------------------------- command line


def _table_line(r: dict) -> str:
    thin = "-" if r["thinnest_cells"] is None else f"{r['thinnest_cells']:.1f}{'' if r['resolved'] else '!'}"
    comps = f"{r['dense_components']}/{r['c2f_components']}/{r['matched']}"
    return (f"{r['field']:<16} {r['resolution']:>4} {r['coarse_resolution']:>6} {thin:>5} "
            f"{r['dense_queries']:>11,} {r['c2f_queries']:>10,} {r['query_ratio']:>7.3f} "
            f"{r['dense_seconds']:>7.2f} {r['c2f_seconds']:>6.2f} {comps:>17} {r['chamfer_cells']:>7.3f} "
            f"{r['hausdorff_cells']:>6.2f} {'yes' if r['identical'] else 'no':>4}")


def format_table(rows: list[dict]) -> str:
    head = (f"{'field':<16} {'res':>4} {'coarse':>6} {'thin':>5} {'dense q':>11} {'c2f q':>10} {'q ratio':>7} "
            f"{'dense s':>7} {'c2f s':>6} {'comps d/c2f/match':>17} {'chamfer':>7} {'worst':>6} {'same':>4}")
    lines = [head, "-" * len(head)] + [_table_line(r) for r in rows]
    lines.append("thin: the thinnest part in cells of that grid (! = under sqrt(3) cells: the dense grid breaks "
                 "it up too); chamfer, worst: in cells; comps: dense / coarse-to-fine / dense ones matched")
    return "\n".join(lines)


def _rows_for(shapes: Dict[str, Shape], resolutions, chunk_size, **options):
    for shape in shapes.values():
        for res in resolutions:
            row = compare(shape.name, shape.sdf, res, chunk_size, thinnest=shape.thinnest, **options)
            print(f"{shape.name} {res}: {'ok' if trustworthy(row) else 'DIFFERS'}", file=sys.stderr, flush=True)
            yield row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend bench extract", description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, from {', '.join(SHAPES)}")
    p.add_argument("--resolutions", type=int, nargs="+", default=[128, 256], help="for the analytic shapes")
    p.add_argument("--scale-model", type=int, nargs="*", default=[128], metavar="R",
                   help="also the thin shapes at the release's 512 grid scaled to R (module docstring); none: off")
    p.add_argument("--steep", type=float, nargs="*", default=[4.0, 100.0], metavar="K",
                   help="also the thin shapes' fields times K on the scale model (a steeper learned field)")
    p.add_argument("--vae-resolutions", type=int, nargs="+", default=[64, 128],
                   help="for the VAE's fields (dense is slow on a CPU: 2.1M queries, ~1 min, at 128)")
    p.add_argument("--weights-dir", default=None, help="VAE folder (default backend/weights/tiny/vae, if present)")
    p.add_argument("--panda", default=str(DEFAULT_PANDA), help="the panda mesh (../shared/examples)")
    p.add_argument("--chunk-size", type=int, default=65536)
    p.add_argument("--json", default=None, help="also save the figures to this JSON file")
    args = p.parse_args(argv)
    names = choices(p, shapes=(args.shapes, SHAPES))["shapes"]
    try:
        scaled = {res: scale_model(res) for res in args.scale_model or []}
    except ValueError as exc:
        p.error(str(exc))

    analytic = {**thin_shapes(), "creature": Shape("creature", creature_sdf, 2 * 0.025)}
    rows = list(_rows_for({n: s for n, s in analytic.items() if n in names}, args.resolutions, args.chunk_size))
    for res, (scale, coarse) in scaled.items():
        for k in [1.0] + list(args.steep or []):
            shapes = {n: s for n, s in thin_shapes(scale, k).items() if n.split()[0] in names}
            for row in _rows_for(shapes, [res], args.chunk_size, coarse_resolution=coarse):
                rows.append(dict(row, field=f"{row['field']} @512"))
    rows.extend(_vae_rows(args, [n for n in names if n in VAE_SHAPES]))

    print(format_table(rows))
    if args.json:
        write_json(args.json, rows)
    return 0


def _vae_rows(args, names):
    from ..pipelines.reconstruct import default_weights_dir

    if not names:
        return []
    weights = Path(args.weights_dir) if args.weights_dir else default_weights_dir("tiny")
    if not weights.is_dir():
        print(f"(no VAE weights at {weights}: analytic fields only)", file=sys.stderr)
        return []
    shapes = vae_shapes(weights, names, args.panda)
    for name in set(names) - set(shapes):
        print(f"({name}: its mesh is not at {args.panda}; left out)", file=sys.stderr)
    return list(_rows_for(shapes, args.vae_resolutions, args.chunk_size))


if __name__ == "__main__":
    sys.exit(main())
