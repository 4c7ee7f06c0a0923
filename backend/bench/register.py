"""Registration benchmark: "optimize" vs no registration vs trimesh's nricp_amberg.

All methods are scored the same way - mean distance of each reference vertex to where it truly
is, over the reference's bounding-box diagonal - on the procedural walking creature, whose
frames have a different (finer) topology than the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _errors(ref, gt, positions):
    diag = float(np.linalg.norm(ref.max(axis=0) - ref.min(axis=0)))
    return np.linalg.norm(positions - gt, axis=2).mean(axis=1) / diag


def _run_nricp(seq, frame_ids):
    import trimesh
    from trimesh.registration import nricp_amberg

    ref = seq["ref_vertices"]
    source = trimesh.Trimesh(ref, seq["ref_faces"], process=False)
    out, secs = [], []
    for t in frame_ids:
        v, f = seq["frames"][t]
        target = trimesh.Trimesh(v, f, process=False)
        t0 = time.perf_counter()
        # use_faces=False: closest points on faces need the optional `rtree` package; the
        # k-d tree on the (denser) target vertices is trimesh's own fallback. The distance
        # threshold is trimesh's default 0.1 relative to a unit-ish model, scaled to ours.
        diag = float(np.linalg.norm(ref.max(axis=0) - ref.min(axis=0)))
        out.append(nricp_amberg(source, target, use_faces=False, distance_threshold=0.05 * diag))
        secs.append(time.perf_counter() - t0)
    return np.stack(out), secs


def run(n_frames=16, seed=0, baseline_frames=4, ref_vertices=5000, frame_vertices=20000):
    from backend.registration import register_optimize
    from backend.synthetic.deforming import make_creature_sequence

    t0 = time.perf_counter()
    seq = make_creature_sequence(n_frames, ref_vertices, frame_vertices, seed=seed)
    gen_s = time.perf_counter() - t0
    ref, gt = seq["ref_vertices"], seq["gt_vertices"]
    rows = {}

    e = _errors(ref, gt, np.broadcast_to(ref, gt.shape))
    rows["none"] = {"mean_error": float(e.mean()), "max_frame_error": float(e.max()), "seconds": 0.0, "frames_run": n_frames}

    t0 = time.perf_counter()
    off = register_optimize(ref, seq["ref_faces"], seq["frames"])
    secs = time.perf_counter() - t0
    e = _errors(ref, gt, ref + off)
    rows["optimize"] = {"mean_error": float(e.mean()), "max_frame_error": float(e.max()), "seconds": secs,
                        "frames_run": n_frames}

    ids = np.unique(np.linspace(0, n_frames - 1, min(baseline_frames, n_frames)).round().astype(int))
    pos, per = _run_nricp(seq, ids)
    e = _errors(ref, gt[ids], pos)
    rows["nricp_amberg"] = {"mean_error": float(e.mean()), "max_frame_error": float(e.max()),
                            "seconds": float(np.mean(per)) * n_frames, "frames_run": len(ids),
                            "seconds_per_frame": float(np.mean(per)), "frames": ids.tolist()}
    # Same frames for a like-for-like error ratio, since the baseline only ran on a subset.
    e_opt_subset = _errors(ref, gt[ids], (ref + off)[ids])
    base = rows["nricp_amberg"]
    for name, row in rows.items():
        row["error_ratio_vs_nricp"] = row["mean_error"] / base["mean_error"]
        row["speedup_vs_nricp"] = base["seconds"] / row["seconds"] if row["seconds"] > 0 else None
    rows["optimize"]["mean_error_on_nricp_frames"] = float(e_opt_subset.mean())
    rows["optimize"]["error_ratio_vs_nricp_same_frames"] = float(e_opt_subset.mean()) / base["mean_error"]
    return {
        "sequence": {"frames": n_frames, "seed": seed, "ref_vertices": len(ref),
                     "frame_vertices": len(seq["frames"][0][0]), "generate_seconds": gen_s},
        "methods": rows,
    }


def _table(result):
    s = result["sequence"]
    lines = [
        f"creature sequence: {s['frames']} frames, seed {s['seed']}, reference {s['ref_vertices']} vertices, "
        f"frames {s['frame_vertices']} vertices (different topology)",
        "error = mean vertex distance to the true position / reference bounding-box diagonal",
        "",
        f"{'method':<14}{'mean err':>10}{'max frame':>11}{'sec (16f)':>11}{'err/nricp':>11}{'speed x':>9}",
    ]
    for name, r in result["methods"].items():
        speed = "-" if r["speedup_vs_nricp"] is None else f"{r['speedup_vs_nricp']:.1f}"
        secs = f"{r['seconds']:.2f}" + ("*" if r["frames_run"] < s["frames"] else "")
        lines.append(f"{name:<14}{r['mean_error']:>10.4f}{r['max_frame_error']:>11.4f}{secs:>11}"
                     f"{r['error_ratio_vs_nricp']:>11.2f}{speed:>9}")
    b, o = result["methods"]["nricp_amberg"], result["methods"]["optimize"]
    lines += [
        "",
        f"* nricp_amberg ran on frames {b['frames']} only, each from the reference "
        f"({b['seconds_per_frame']:.2f} s/frame), time extrapolated to {s['frames']} frames",
        f"optimize on those same frames: mean err {o['mean_error_on_nricp_frames']:.4f} "
        f"(ratio {o['error_ratio_vs_nricp_same_frames']:.2f})",
    ]
    return "\n".join(lines).replace("sec (16f)", f"sec ({s['frames']}f)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend bench register", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-frames", type=int, default=4, help="frames the slow baseline runs on")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    result = run(args.frames, args.seed, args.baseline_frames)
    print(_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
