"""`python -m backend eval --pred OUTDIR --gt GT.npz [--json]`: ActionBench metrics for one result.

OUTDIR holds animation.npz (vertices, faces, offsets, fps) as ``register`` writes it; a path to the
.npz itself works too. GT.npz holds ``points`` [T, N, 6] (tracked xyz + normal); an ActionBench
``surfaces.npy`` with the same array is accepted as well. Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import BadInput, BackendError
from .alignment import AlignSettings
from .metrics import N_CHAMFER, N_ICP, N_SAMPLES, SEED, evaluate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend eval",
                                description="ActionBench metrics (CD-3D, CD-4D, CD-M) of an animation "
                                            "against tracked ground-truth points")
    p.add_argument("--pred", required=True, help="output folder with animation.npz (or the .npz itself)")
    p.add_argument("--gt", required=True, help="ground truth: .npz with points [T, N, 6] (or a .npy array)")
    p.add_argument("--json", action="store_true", help='print one line: {"cd_3d": .., "cd_4d": .., "cd_m": ..}')
    p.add_argument("--samples", type=int, default=N_SAMPLES, help="points sampled per predicted frame")
    p.add_argument("--icp-points", type=int, default=N_ICP, help="points per side for the alignment")
    p.add_argument("--chamfer-points", type=int, default=N_CHAMFER, help="query points per side for Chamfer")
    p.add_argument("--iterations", type=int, default=200, help="Adam iterations of the alignment")
    p.add_argument("--seed", type=int, default=SEED)
    return p


def load_prediction(path: str | Path) -> dict:
    path = Path(path)
    npz = path / "animation.npz" if path.is_dir() else path
    if not npz.is_file():
        if path.is_dir():
            raise BadInput(f"no animation.npz in the prediction folder {path}")
        raise BadInput(f"prediction not found: {path}")
    try:
        with np.load(npz, allow_pickle=False) as data:
            missing = [k for k in ("vertices", "faces", "offsets") if k not in data.files]
            if missing:
                raise BadInput(f"{npz} lacks {', '.join(missing)} (has {', '.join(data.files) or 'nothing'})")
            return {k: data[k] for k in ("vertices", "faces", "offsets")}
    except BadInput:
        raise
    except Exception as exc:
        raise BadInput(f"{npz} is not a readable .npz file: {exc}") from exc


def load_ground_truth(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"ground truth not found: {path}")
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                return np.asarray(data)
            if "points" not in data.files:
                raise BadInput(f"{path} has no 'points' array (has {', '.join(data.files) or 'nothing'})")
            return data["points"]
    except BadInput:
        raise
    except Exception as exc:
        raise BadInput(f"{path} is not a readable .npz/.npy file: {exc}") from exc


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        for name in ("samples", "icp_points", "chamfer_points", "iterations"):
            if getattr(args, name) < 1:
                raise BadInput(f"--{name.replace('_', '-')} must be at least 1")
        pred = load_prediction(args.pred)
        gt = load_ground_truth(args.gt)
        result = evaluate(pred["vertices"], pred["faces"], pred["offsets"], gt, n_samples=args.samples,
                          n_icp=args.icp_points, n_chamfer=args.chamfer_points, seed=args.seed,
                          align_settings=AlignSettings(iterations=args.iterations))
    except BackendError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({k: result[k] for k in ("cd_3d", "cd_4d", "cd_m")}))
    else:
        print(f"CD-3D  {result['cd_3d']:.4f}   (Chamfer, each frame aligned on its own)\n"
              f"CD-4D  {result['cd_4d']:.4f}   (Chamfer, every frame aligned like frame 0)\n"
              f"CD-M   {result['cd_m']:.4f}   (motion Chamfer, points tracked from frame 0)\n"
              f"{result['frames']} frames, {result['gt_points']} ground-truth points, "
              f"{result['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
