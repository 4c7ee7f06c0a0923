"""Registration benchmark: learned vs optimize vs learned-optimize (and no registration, and trimesh's nricp).

    python -m backend bench register [--methods none,optimize,learned,learned-optimize] [--json PATH]

Sequences (16 frames each; every frame a mesh of its own topology, unlike the reference's):
  creature     the procedural walking creature (backend.synthetic.deforming): exact ground truth
               for every reference vertex; a shape family the learned model never trained on.
  articulated  held-out bodies from the Stage II training generator (backend.synthetic.articulated,
               seeds never trained on), frames meshed independently by marching cubes; the
               reference is frame 0's mesh decimated. Ground truth: the generator's tracked
               material points (CD-M), and for vertex error each reference vertex carried like
               the 4 nearest tracked points of its own body part (inverse-distance weights).
  panda        ../shared/examples/panda/panda.glb under a smooth bend + twist + sway
               (deform_mesh_sequence), frames re-meshed by subdivision; exact ground truth.
Frames as other tools make them (backend.synthetic.remesh), issue 9:
  panda-mc-inward  panda.glb under a bend + hinge + squash (bend_hinge_squash), each frame
               re-meshed by voxel fill + signed distance + marching cubes (~24k vertices) and
               wound inward, normals into the body, as scikit-image can emit them.
  panda-mc-mixed   the same, one half of every frame wound the other way.
  panda-scan   the same re-mesh with scan-like vertex noise (0.3 % of the size) and 4 holes.
  panda-holes  the same re-mesh with 12 holes, up to 6 % of the size across.
  sydney, faerie   real game characters (Quake II MD2 files from Debian's assimp-testmodels,
               backend.synthetic.md2) running, as the engine plays them; the reference is the
               first pose's own mesh (inward-wound, open, several parts) subdivided twice; every
               frame voxel re-meshed. Exact ground truth from the file's keyframes.

Every sequence is first scaled into [-1, 1] (largest half-extent of all frames = 1), so the
figures share ActionBench's units. Columns: vertex error = mean distance of each reference
vertex to its true position / reference bounding-box diagonal; CD-M = ActionBench's motion
Chamfer (ActionBench: facebookresearch/actionmesh, actionbench/) between the animated reference and the ground-truth points,
without the alignment step (registration works in the input's own coordinates, so the identity
is the right alignment); seconds = the registration call (models loaded beforehand); for
`none`, the time to read the sequence's files (every frame written once as binary PLY, then
loaded as `register` loads it): the floor any method's time stands on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .common import choices, write_json

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PANDA = REPO.parent / "shared" / "examples" / "panda" / "panda.glb"
METHODS = ("none", "optimize", "learned", "learned-optimize")
REMESHED_PANDA = ("panda-mc-inward", "panda-mc-mixed", "panda-scan", "panda-holes")
CHARACTERS = ("sydney", "faerie")
SEQUENCES = ("creature", "articulated", "panda") + REMESHED_PANDA + CHARACTERS
# The rows of issue 9's target: frames as other tools make them, on real meshes.
REAL_WORLD = REMESHED_PANDA + CHARACTERS
REMESH_RESOLUTION = {"panda": 92, "character": 112}
CDM_POINTS = 20_000
ARTICULATED_OFFSET = 5_000  # seeds from HELDOUT_SEED0 + this: held out, past the trainers' own eval seeds


# ---------------------------------------------------------------- sequences


def _normalised(seq: dict) -> dict:
    """Scale/shift everything so that the union of all frames' boxes has largest half-extent 1."""
    pts = np.concatenate([seq["ref_vertices"]] + [v for v, _ in seq["frames"]])
    lo, hi = pts.min(0), pts.max(0)
    centre, scale = 0.5 * (lo + hi), 2.0 / float((hi - lo).max())
    f = lambda x: (np.asarray(x, np.float64) - centre) * scale  # noqa: E731
    out = dict(seq)
    out["ref_vertices"] = f(seq["ref_vertices"])
    out["frames"] = [(f(v), fc) for v, fc in seq["frames"]]
    out["gt_vertices"] = f(seq["gt_vertices"])
    out["gt_points"] = f(seq["gt_points"])
    return out


def _surface_points(gt_vertices, faces, n, seed=0):
    """The same material points on every frame of a fixed-topology ground truth: [T, n, 3]."""
    from backend.eval.metrics import apply_barycentric, sample_barycentric

    face_idx, bary = sample_barycentric(gt_vertices[0], faces, n, seed)
    return apply_barycentric(gt_vertices, faces, face_idx, bary)


def creature_sequence(n_frames: int, seed: int) -> dict:
    from backend.synthetic.deforming import make_creature_sequence

    s = make_creature_sequence(n_frames, 5000, 20000, seed=seed)
    s["gt_points"] = _surface_points(s["gt_vertices"], s["ref_faces"], CDM_POINTS, seed)
    return {"name": "creature", "seed": seed, **s}


def articulated_sequence(n_frames: int, seed: int, ref_faces: int = 8000) -> dict:
    from scipy.spatial import cKDTree

    from backend.geometry.postprocess import decimate
    from backend.synthetic.dataset import make_sequence_sample

    from backend.train.vae import HELDOUT_SEED0

    seed = HELDOUT_SEED0 + ARTICULATED_OFFSET + seed
    s = make_sequence_sample(seed, n_frames=n_frames, n_tracked=8192, mesh_resolution=96)
    ref_v, ref_f = decimate(s["vertices"][0].astype(np.float64), s["faces"][0], ref_faces)
    tracked = s["tracked"][..., :3].astype(np.float64)  # [T, N, 3] material points
    # Each reference vertex moves like its own part's nearest material points (k = 4, 1/d weights).
    part = _nearest_part(s, ref_v)
    gt = np.empty((n_frames,) + ref_v.shape)
    for p in np.unique(part):
        mine, pts = np.nonzero(part == p)[0], np.nonzero(s["tracked_part"] == p)[0]
        if len(pts) < 4:
            pts = np.arange(tracked.shape[1])
        d, j = cKDTree(tracked[0, pts]).query(ref_v[mine], k=4)
        w = 1.0 / np.maximum(d, 1e-9)
        w /= w.sum(1, keepdims=True)
        disp = tracked[:, pts[j]] - tracked[0, pts[j]][None]  # [T, m, 4, 3]
        gt[:, mine] = ref_v[mine][None] + (disp * w[None, :, :, None]).sum(2)
    return {"name": "articulated", "seed": seed, "ref_vertices": ref_v, "ref_faces": ref_f,
            "frames": [(v.astype(np.float64), f) for v, f in zip(s["vertices"], s["faces"])],
            "gt_vertices": gt, "gt_points": tracked, "archetype": str(s["archetype"])}


def _nearest_part(s, points):
    """Body part of each point: that of the nearest frame-0 marching-cubes vertex."""
    from scipy.spatial import cKDTree

    j = cKDTree(s["vertices"][0]).query(points)[1]
    return np.asarray(s["vertex_part"][0])[j]


def panda_sequence(n_frames: int, seed: int, path: Path) -> dict:
    import trimesh

    from backend.io.mesh import load_mesh
    from backend.synthetic.deforming import deform_mesh_sequence

    mesh = load_mesh(path, role="panda")
    ref_v, ref_f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    gt = deform_mesh_sequence(ref_v, ref_f, n_frames, seed=seed)
    # Re-meshed frames: another topology over the same moving surface, as generated frames would be.
    frames = [tuple(trimesh.remesh.subdivide(v, ref_f)) for v in gt]
    return {"name": "panda", "seed": seed, "ref_vertices": ref_v, "ref_faces": ref_f, "frames": frames,
            "gt_vertices": gt, "gt_points": _surface_points(gt, ref_f, CDM_POINTS, seed)}


def remeshed_panda_sequence(kind: str, n_frames: int, seed: int, path: Path) -> dict:
    from backend.io.mesh import load_mesh
    from backend.synthetic.deforming import bend_hinge_squash
    from backend.synthetic.remesh import punch_holes, scan_noise, set_winding, voxel_remesh

    mesh = load_mesh(path, role="panda")
    ref_v, ref_f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    gt = bend_hinge_squash(ref_v, n_frames, seed=seed)
    size = float(np.ptp(ref_v, axis=0).max())
    frames = []
    for t, pose in enumerate(gt):
        v, f = voxel_remesh(pose, ref_f, REMESH_RESOLUTION["panda"], seed=seed + t)
        if kind == "panda-mc-inward":
            f = set_winding(v, f, "inward")
        elif kind == "panda-mc-mixed":
            f = set_winding(v, f, "mixed", seed=seed + t)
        elif kind == "panda-scan":
            v = scan_noise(v, 0.003 * size, seed=seed + t)
            v, f = punch_holes(v, f, 4, 0.03 * size, seed=seed + t)
        else:
            v, f = punch_holes(v, f, 12, 0.03 * size, seed=seed + t)
        frames.append((v, f))
    return {"name": kind, "seed": seed, "ref_vertices": ref_v, "ref_faces": ref_f, "frames": frames,
            "gt_vertices": gt, "gt_points": _surface_points(gt, ref_f, CDM_POINTS, seed)}


def character_sequence(name: str, n_frames: int, seed: int, folder: Path) -> dict:
    import trimesh

    from backend.synthetic.md2 import animation, play, read_md2
    from backend.synthetic.remesh import voxel_remesh

    keyframes, tris, names = read_md2(Path(folder) / f"{name}.md2")
    poses = play(keyframes, animation(names, "run"), n_frames)
    # Midpoint subdivision is linear in the positions: the same split of every pose is the truth
    # of the subdivided reference's vertices.
    gt = []
    for pose in poses:
        v, f = pose, tris
        for _ in range(2):
            v, f = trimesh.remesh.subdivide(v, f)
        gt.append(v)
    gt = np.stack(gt)
    frames = [voxel_remesh(pose, tris, REMESH_RESOLUTION["character"], seed=seed + t) for t, pose in enumerate(poses)]
    return {"name": name, "seed": seed, "ref_vertices": gt[0].copy(), "ref_faces": np.asarray(f, np.int64),
            "frames": frames, "gt_vertices": gt, "gt_points": _surface_points(gt, f, CDM_POINTS, seed)}


# ---------------------------------------------------------------- scoring


def score(seq: dict, offsets: np.ndarray) -> dict:
    ref, gt = seq["ref_vertices"], seq["gt_vertices"]
    pred = ref[None] + offsets
    diag = float(np.linalg.norm(ref.max(0) - ref.min(0)))
    err = np.linalg.norm(pred - gt, axis=2).mean(1) / diag
    from backend.eval.metrics import motion_chamfer_distance

    pred_points = _surface_points(pred, seq["ref_faces"], CDM_POINTS, seed=1)
    return {"vertex_error": float(err.mean()), "max_frame_error": float(err.max()),
            "cd_m": motion_chamfer_distance(pred_points, seq["gt_points"])}


def _run_nricp(seq, frame_ids):
    import trimesh
    from trimesh.registration import nricp_amberg

    ref = seq["ref_vertices"]
    source = trimesh.Trimesh(ref, seq["ref_faces"], process=False)
    diag = float(np.linalg.norm(ref.max(axis=0) - ref.min(axis=0)))
    out, secs = [], []
    for t in frame_ids:
        v, f = seq["frames"][t]
        t0 = time.perf_counter()
        # use_faces=False: closest points on faces need the optional `rtree` package; the k-d tree
        # on the (denser) target vertices is trimesh's own fallback. Distance threshold: trimesh's
        # default 0.1 for a unit-ish model, scaled to ours.
        out.append(nricp_amberg(source, trimesh.Trimesh(v, f, process=False), use_faces=False,
                                distance_threshold=0.05 * diag))
        secs.append(time.perf_counter() - t0)
    return np.stack(out), secs


def loading_seconds(seq: dict) -> float:
    """Seconds to read the reference and every frame from binary PLY files, as `register` does."""
    import tempfile

    import trimesh

    from backend.io.mesh import load_mesh

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for t, (v, f) in enumerate([(seq["ref_vertices"], seq["ref_faces"])] + list(seq["frames"])):
            paths.append(Path(tmp) / f"{t:03d}.ply")
            trimesh.Trimesh(v, f, process=False).export(paths[-1])
        t0 = time.perf_counter()
        for path in paths:
            load_mesh(path)
        return time.perf_counter() - t0


def run_methods(seq: dict, methods, models: dict | None) -> dict:
    from backend.registration import register_optimize
    from backend.registration.learned import register_learned_optimize, register_learned

    ref_v, ref_f, frames = seq["ref_vertices"], seq["ref_faces"], seq["frames"]
    rows = {}
    for name in methods:
        if name in ("learned", "learned-optimize") and models is None:
            rows[name] = {"skipped": "the learned weights are not installed"}
            continue
        t0 = time.perf_counter()
        extra = {}
        if name == "none":
            offsets = np.zeros((len(frames),) + ref_v.shape)
        elif name == "optimize":
            offsets = register_optimize(ref_v, ref_f, frames)
        elif name == "learned":
            offsets = register_learned(ref_v, ref_f, frames, **models)
        else:
            offsets, report = register_learned_optimize(ref_v, ref_f, frames, **models)
            extra["refined_frames"] = int(sum(report["refined"]))
        secs = time.perf_counter() - t0 if name != "none" else loading_seconds(seq)
        rows[name] = {**score(seq, np.asarray(offsets, np.float64)), "seconds": secs, **extra}
    opt = rows.get("optimize", {})
    for name, row in rows.items():
        if name != "none" and "seconds" in row and opt.get("seconds") and row["seconds"] > 0:
            row["speedup_vs_optimize"] = opt["seconds"] / row["seconds"]
        if "vertex_error" in row and opt.get("vertex_error"):
            row["error_ratio_vs_optimize"] = row["vertex_error"] / opt["vertex_error"]
    return rows


def load_models(weights_dir: str | None, profile: str = "tiny"):
    import torch

    from backend.errors import Unsupported
    from backend.pipelines.register import learned_weights, load_learned

    try:
        dirs = learned_weights("learned", profile, weights_dir)
    except Unsupported as exc:
        return None, str(exc)
    models = load_learned(dirs, "cpu")
    models.pop("warnings")
    torch.set_grad_enabled(False)
    return models, str(dirs["stage2"])


def run(n_frames=16, seed=0, methods=METHODS, sequences=SEQUENCES, panda=DEFAULT_PANDA, weights_dir=None,
        articulated_count=2, baseline_frames=4, md2_dir=None) -> dict:
    models, where = load_models(weights_dir)
    results = {"frames": n_frames, "weights": where if models is not None else None,
               "weights_note": None if models is not None else where, "sequences": []}
    builders = []
    if "creature" in sequences:
        builders.append(lambda: creature_sequence(n_frames, seed))
    if "articulated" in sequences:
        builders += [lambda i=i: articulated_sequence(n_frames, seed + i) for i in range(articulated_count)]
    for kind in [k for k in ("panda",) + REMESHED_PANDA if k in sequences]:
        if not Path(panda).is_file():
            results["sequences"].append({"name": kind, "skipped": f"{panda} not found (pass --panda PATH)"})
        elif kind == "panda":
            builders.append(lambda: panda_sequence(n_frames, seed, Path(panda)))
        else:
            builders.append(lambda kind=kind: remeshed_panda_sequence(kind, n_frames, seed, Path(panda)))
    if any(c in sequences for c in CHARACTERS):
        from backend.synthetic.md2 import md2_folder

        folder = Path(md2_dir) if md2_dir else md2_folder()
        for name in [c for c in CHARACTERS if c in sequences]:
            if folder is None or not (folder / f"{name}.md2").is_file():
                results["sequences"].append({"name": name, "skipped": "the MD2 characters are not installed "
                                             "(python3 build.py setup unpacks them; or pass --md2 DIR)"})
            else:
                builders.append(lambda name=name: character_sequence(name, n_frames, seed, folder))
    for build in builders:
        t0 = time.perf_counter()
        seq = _normalised(build())
        entry = {"name": seq["name"], "seed": int(seq["seed"]), "ref_vertices": len(seq["ref_vertices"]),
                 "frame_vertices": int(np.mean([len(v) for v, _ in seq["frames"]])),
                 "generate_seconds": time.perf_counter() - t0}
        if "archetype" in seq:
            entry["archetype"] = seq["archetype"]
        entry["methods"] = run_methods(seq, methods, models)
        if seq["name"] == "creature" and baseline_frames:
            ids = np.unique(np.linspace(0, n_frames - 1, min(baseline_frames, n_frames)).round().astype(int))
            pos, per = _run_nricp(seq, ids)
            sub = dict(seq, gt_vertices=seq["gt_vertices"][ids], gt_points=seq["gt_points"][ids])
            row = score(sub, pos - seq["ref_vertices"][None])
            row.update(seconds=float(np.mean(per)) * n_frames, frames_run=[int(i) for i in ids],
                       seconds_per_frame=float(np.mean(per)))
            entry["nricp_amberg"] = row
        results["sequences"].append(entry)
        print(f"  {seq['name']} (seed {entry['seed']}) done", file=sys.stderr, flush=True)
    results["summary"] = summary(results)
    return results


def summary(results) -> dict:
    """Means over the sequences each method ran on, and the targets of issue 4."""
    out = {}
    for name in METHODS:
        rows = [s["methods"][name] for s in results["sequences"] if "methods" in s and "vertex_error" in
                s["methods"].get(name, {})]
        if rows:
            out[name] = {k: float(np.mean([r[k] for r in rows])) for k in ("vertex_error", "cd_m", "seconds")}
            out[name]["sequences"] = len(rows)
    if "learned" in out and "optimize" in out:
        out["learned_speedup_vs_optimize"] = out["optimize"]["seconds"] / out["learned"]["seconds"]
    if "learned-optimize" in out and "optimize" in out:
        out["learned_optimize_error_ratio_vs_optimize"] = (out["learned-optimize"]["vertex_error"]
                                                           / out["optimize"]["vertex_error"])
    # Issue 9: on frames as other tools make them, every method at or below `none` on every row,
    # and optimize/learned-optimize at most 0.6x none's mean vertex error over those rows.
    real = [s for s in results["sequences"] if s.get("name") in REAL_WORLD and "methods" in s]
    if real and "vertex_error" in real[0]["methods"].get("none", {}):
        rw = {"sequences": [s["name"] for s in real], "worse_than_none": []}
        none_mean = float(np.mean([s["methods"]["none"]["vertex_error"] for s in real]))
        for name in METHODS[1:]:
            rows = [s for s in real if "vertex_error" in s["methods"].get(name, {})]
            if len(rows) != len(real):
                continue
            rw[name] = float(np.mean([s["methods"][name]["vertex_error"] for s in rows])) / none_mean
            rw["worse_than_none"] += [f"{s['name']}: {name}" for s in rows
                                      if s["methods"][name]["vertex_error"] > s["methods"]["none"]["vertex_error"]]
        out["real_world_error_ratio_vs_none"] = rw
    panda = [s for s in real if s["name"] in REMESHED_PANDA and "seconds" in s["methods"].get("optimize", {})]
    if panda:
        out["remeshed_panda_optimize_seconds"] = {
            "max": max(s["methods"]["optimize"]["seconds"] for s in panda),
            "loading": max((s["methods"]["none"]["seconds"] for s in panda if "none" in s["methods"]), default=0.0),
            "ref_vertices": panda[0]["ref_vertices"], "frame_vertices": int(np.mean([s["frame_vertices"] for s in panda]))}
    return out


def table(results) -> str:
    lines = [f"{results['frames']} frames per sequence; error = mean vertex distance to the truth / reference "
             "bbox diagonal; CD-M in the [-1, 1] box (x1000); seconds for the whole sequence",
             f"learned weights: {results['weights'] or 'not installed - ' + str(results['weights_note'])}", ""]
    head = f"{'sequence':<30}{'method':<14}{'vert err':>9}{'max fr':>9}{'CD-M':>8}{'sec':>8}{'x optim':>9}"
    lines.append(head)
    for s in results["sequences"]:
        label = f"{s['name']} {s.get('seed', '')}" + (f" {s['archetype']}" if "archetype" in s else "")
        if "skipped" in s:
            lines.append(f"{label:<30}skipped: {s['skipped']}")
            continue
        rows = dict(s["methods"])
        if "nricp_amberg" in s:
            rows["nricp_amberg*"] = s["nricp_amberg"]
        for name, r in rows.items():
            if "skipped" in r:
                lines.append(f"{label:<30}{name:<14}skipped: {r['skipped']}")
                continue
            sp = r.get("speedup_vs_optimize")
            lines.append(f"{label:<30}{name:<14}{r['vertex_error']:>9.4f}{r['max_frame_error']:>9.4f}"
                         f"{1000 * r['cd_m']:>8.2f}{r['seconds']:>8.2f}{'' if sp is None else f'{sp:>9.1f}'}")
            label = ""
    if any("nricp_amberg" in s for s in results["sequences"]):
        s = next(s for s in results["sequences"] if "nricp_amberg" in s)
        lines.append(f"* nricp_amberg: frames {s['nricp_amberg']['frames_run']} only "
                     f"({s['nricp_amberg']['seconds_per_frame']:.2f} s/frame, time extrapolated)")
    sm = results["summary"]
    lines.append("")
    for name in METHODS:
        if name in sm:
            r = sm[name]
            lines.append(f"mean over {r['sequences']} sequences  {name:<10} vertex error {r['vertex_error']:.4f}  "
                         f"CD-M x1000 {1000 * r['cd_m']:.2f}  {r['seconds']:.2f} s")
    if "learned_speedup_vs_optimize" in sm:
        lines.append(f"learned is {sm['learned_speedup_vs_optimize']:.1f}x faster than optimize (target >= 10x)")
    if "learned_optimize_error_ratio_vs_optimize" in sm:
        lines.append(f"learned-optimize's vertex error is {sm['learned_optimize_error_ratio_vs_optimize']:.2f}x optimize's (target < 1)")
    rw = sm.get("real_world_error_ratio_vs_none")
    if rw:
        ratios = ", ".join(f"{m} {rw[m]:.2f}x" for m in METHODS[1:] if m in rw)
        lines.append(f"re-meshed / real-character rows ({len(rw['sequences'])}): mean vertex error vs none: {ratios} "
                     "(target <= 0.6x for optimize and learned-optimize)")
        lines.append("rows where a method is worse than none: " + (", ".join(rw["worse_than_none"]) or "none"))
    pt = sm.get("remeshed_panda_optimize_seconds")
    if pt:
        lines.append(f"optimize on the re-meshed panda ({pt['ref_vertices']:,}-vertex reference, ~{pt['frame_vertices']:,}-vertex "
                     f"frames): at most {pt['max']:.2f} s for the sequence (target <= 8 s); reading its files "
                     f"(none): {pt['loading']:.2f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend bench register", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--sequences", default=",".join(SEQUENCES), help=f"comma-separated, from {', '.join(SEQUENCES)}")
    parser.add_argument("--articulated", type=int, default=2, help="how many held-out articulated sequences")
    parser.add_argument("--panda", default=str(DEFAULT_PANDA), help="the panda mesh (../shared/examples)")
    parser.add_argument("--md2", default=None, help="folder with sydney.md2 and faerie.md2 (default: the setup's copy)")
    parser.add_argument("--weights-dir", default=None, help="learned weights folder (vae/ + stage2/); default: the tiny ones")
    parser.add_argument("--baseline-frames", type=int, default=4, help="frames trimesh's nricp runs on (0: skip it)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    picked = choices(parser, methods=(args.methods, METHODS), sequences=(args.sequences, SEQUENCES))
    methods, sequences = picked["methods"], picked["sequences"]
    if args.frames < 2:
        parser.error("--frames must be at least 2")
    result = run(args.frames, args.seed, methods, sequences, args.panda, args.weights_dir, args.articulated,
                 args.baseline_frames, args.md2)
    print(table(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
