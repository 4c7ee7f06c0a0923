"""Coarse-to-fine extraction vs the dense baseline: queries, seconds, and the mesh difference.

    python -m backend.bench.extract [--resolutions 128 256] [--json PATH]

Fields: an analytic shape with thin parts (a smooth union of capsules and a thin torus, positive
inside), and the tiny VAE's field for that shape when backend/weights/tiny/vae exists. Chamfer is
the mean unsquared nearest-neighbour distance between the two meshes' vertices, both ways
(shapes in [-1, 1]); 0 means the coarse-to-fine mesh is the dense one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .common import write_json


def _capsule(p, a, b, r):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    ab = b - a
    t = np.clip(((p - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1) - r


def _torus(p, center, major, minor):
    q = p - np.asarray(center, np.float32)
    ring = np.sqrt(q[:, 0] ** 2 + q[:, 2] ** 2) - major
    return np.sqrt(ring ** 2 + q[:, 1] ** 2) - minor


def _smooth_min(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def creature_sdf(points) -> np.ndarray:
    """A body, a head, four thin legs and a thin ring (tube radius 0.025, under half a 32^3 cell).

    Positive inside, 1-Lipschitz (distance functions joined by a polynomial smooth minimum).
    """
    p = np.asarray(points, dtype=np.float32)
    d = _capsule(p, (-0.45, 0.1, 0.0), (0.35, 0.15, 0.0), 0.22)
    d = _smooth_min(d, _capsule(p, (0.45, 0.35, 0.0), (0.6, 0.45, 0.0), 0.14), 0.08)
    for x in (-0.35, 0.25):
        for z in (-0.12, 0.12):
            d = _smooth_min(d, _capsule(p, (x, 0.0, z), (x + 0.05, -0.8, z * 1.5), 0.045), 0.05)
    d = _smooth_min(d, _capsule(p, (-0.6, 0.2, 0.0), (-0.9, 0.6, 0.0), 0.03), 0.04)
    d = np.minimum(d, _torus(p, (0.0, 0.75, 0.0), 0.35, 0.025))
    return -d


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        return float("inf") if len(a) != len(b) else 0.0
    da, _ = cKDTree(b).query(a)
    db, _ = cKDTree(a).query(b)
    return float(0.5 * (da.mean() + db.mean()))


def compare(name: str, sdf_fn, resolution: int, chunk_size: int) -> dict:
    from ..geometry import dense_extract, extract_mesh

    v1, f1, s1 = extract_mesh(sdf_fn, resolution=resolution, chunk_size=chunk_size)
    v0, f0, s0 = dense_extract(sdf_fn, resolution, chunk_size=chunk_size)
    identical = bool(np.array_equal(v0, v1) and np.array_equal(f0, f1))
    return dict(field=name, resolution=resolution,
                dense_queries=s0["queries"], c2f_queries=s1["queries"], query_ratio=s1["queries"] / s0["queries"],
                dense_seconds=s0["seconds"], c2f_seconds=s1["seconds"], time_ratio=s1["seconds"] / s0["seconds"],
                chamfer=chamfer(v0, v1), identical=identical, faces=len(f1), levels=s1["levels"])


def _vae_field(weights: Path):
    """The tiny VAE's field for the analytic creature (encoded from its own dense-extracted surface)."""
    import torch

    from ..geometry import extract_mesh, sample_surface
    from ..models.vae import ShapeVAE
    from ..pipelines.reconstruct import vae_sdf_fn

    model = ShapeVAE.from_pretrained(weights, device="cpu")
    v, f, _ = extract_mesh(creature_sdf, resolution=128)
    pts, nrm = sample_surface(v, f, 16384, seed=0)
    x = torch.from_numpy(np.concatenate([pts, nrm], axis=1))[None]
    with torch.inference_mode():
        memory = model.decode_latents(model.encode(x, generator=torch.Generator().manual_seed(0)).mode())
    return vae_sdf_fn(model, memory)


def format_table(rows: list[dict]) -> str:
    head = (f"{'field':<10} {'res':>4} {'dense q':>11} {'c2f q':>10} {'q ratio':>8} "
            f"{'dense s':>8} {'c2f s':>7} {'t ratio':>8} {'chamfer':>9} {'same':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['field']:<10} {r['resolution']:>4} {r['dense_queries']:>11,} {r['c2f_queries']:>10,} "
                     f"{r['query_ratio']:>8.3f} {r['dense_seconds']:>8.2f} {r['c2f_seconds']:>7.2f} "
                     f"{r['time_ratio']:>8.3f} {r['chamfer']:>9.2e} {'yes' if r['identical'] else 'no':>5}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend bench extract", description=__doc__.splitlines()[0])
    p.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    p.add_argument("--vae-resolutions", type=int, nargs="+", default=[128],
                   help="resolutions for the VAE field (dense is slow on CPU: 2.1M queries at 128)")
    p.add_argument("--weights", default=None, help="VAE folder (default backend/weights/tiny/vae, if present)")
    p.add_argument("--chunk-size", type=int, default=65536)
    p.add_argument("--json", default=None, help="also save the figures to this JSON file")
    args = p.parse_args(argv)

    rows = []
    for res in args.resolutions:
        rows.append(compare("analytic", creature_sdf, res, args.chunk_size))
        print(f"analytic {res}: done", file=sys.stderr, flush=True)
    from ..pipelines.reconstruct import default_weights_dir

    weights = Path(args.weights) if args.weights else default_weights_dir("tiny")
    if weights.is_dir():
        field = _vae_field(weights)
        for res in args.vae_resolutions:
            rows.append(compare("tiny-vae", field, res, args.chunk_size))
            print(f"tiny-vae {res}: done", file=sys.stderr, flush=True)
    else:
        print(f"(no VAE weights at {weights}: analytic field only)", file=sys.stderr)

    print(format_table(rows))
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
