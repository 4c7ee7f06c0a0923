"""Rig benchmark: how well a rig made from an animation reproduces it, against bone count.

    python -m backend bench rig [--bones 16,32] [--cases NAME,...] [--json PATH]

Every case is an animation with exact ground truth, 16 frames (the rest pose is the clip's first):
  tuning      the cases the rigging's settings were chosen on (the decomposition's start from rigid
              segments was picked on these): panda-bend, panda-wave, sydney-run
  validation  the rest, never looked at while choosing: panda-sway, panda-twist, the walking
              creature (backend.synthetic.deforming), two held-out bodies of the Stage II training
              generator (articulated), sydney's attack and pain, faerie's run, attack and pain
  retarget    a given rig: the rig made from one clip of a character (its run) animated to follow
              another (attack, pain), its weights and joints held (`rig --rig`)
Per case and bone count: the mean vertex error (distance to the truth / the rest pose's
bounding-box diagonal) and seconds of our rig (`ssdr`: skinning decomposition, 4 influences)
beside the baseline from the same run (`rigid`: rigid segments, vertices clustered by motion, one
bone per cluster, no blending), and `auto` (the bone count `rig` picks); beside each error, the
seams: how far each vertex's offset to its 8 nearest neighbours strays from the truth's (what
shows as cracks between pieces, which the mean vertex error averages away). Targets (issue 22): auto
at <= 32 bones under 1 % on every case and at most half the rigid baseline at its bone count;
retargeting under 2 %; at most 30 s for the panda (9,606 vertices x 16 frames).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .common import choices, timed, write_json

TUNING = ("panda-bend", "panda-wave", "sydney-run")
VALIDATION = ("panda-sway", "panda-twist", "creature", "articulated-0", "articulated-1", "sydney-attack",
              "sydney-pain", "faerie-run", "faerie-attack", "faerie-pain")
RETARGET = ("sydney-run>attack", "sydney-run>pain", "faerie-run>attack", "faerie-run>pain")
CASES = TUNING + VALIDATION + RETARGET
BONES = (16, 32)
N_FRAMES = 16
TARGET_ERROR, TARGET_RATIO, TARGET_RETARGET, TARGET_PANDA_SECONDS = 0.01, 0.5, 0.02, 30.0


def _panda(clip: str) -> dict:
    from backend.io.mesh import load_mesh
    from backend.synthetic import deforming

    from .register import DEFAULT_PANDA

    mesh = load_mesh(DEFAULT_PANDA)
    v = mesh.vertices.astype(np.float64)
    if clip == "sway":
        frames = deforming.deform_mesh_sequence(v, mesh.faces, N_FRAMES, seed=0)
    else:
        frames = getattr(deforming, {"bend": "bend_hinge_squash", "twist": "twist_turn", "wave": "wave_limb"}[clip])(
            v, N_FRAMES, seed=0)
    return {"rest": frames[0], "frames": frames, "faces": mesh.faces}


def _md2(character: str, clip: str) -> dict:
    from backend.synthetic.md2 import animation, md2_folder, play, read_md2

    folder = md2_folder()
    if folder is None:
        raise RuntimeError("no MD2 characters found: run `python3 build.py setup` (needs apt-get)")
    keyframes, triangles, names = read_md2(folder / f"{character}.md2")
    frames = play(keyframes, animation(names, clip), N_FRAMES)
    return {"rest": frames[0], "frames": frames, "faces": triangles[:, ::-1].copy()}


def load_case(name: str) -> dict:
    if name.startswith("panda-"):
        return _panda(name.split("-", 1)[1])
    if name == "creature":
        from backend.synthetic.deforming import make_creature_sequence

        s = make_creature_sequence(n_frames=N_FRAMES, seed=0)
        return {"rest": s["gt_vertices"][0], "frames": s["gt_vertices"], "faces": s["ref_faces"]}
    if name.startswith("articulated-"):
        from .register import articulated_sequence

        s = articulated_sequence(N_FRAMES, int(name.split("-")[1]))
        return {"rest": s["gt_vertices"][0], "frames": s["gt_vertices"], "faces": s["ref_faces"]}
    character, clip = name.split("-", 1)
    if ">" in clip:
        source, target = clip.split(">")
        a, b = _md2(character, source), _md2(character, target)
        return {"rest": a["rest"], "frames": a["frames"], "faces": a["faces"], "target": b["frames"]}
    return _md2(character, clip)


def _error(posed, frames, diag) -> float:
    return float(np.linalg.norm(posed - frames, axis=-1).mean() / diag)


def seam_error(rest, posed, frames, diag, k: int = 8) -> float:
    """How far each vertex's offset to its k nearest rest-pose neighbours strays from the truth's
    (mean, / diagonal): what opens as cracks between pieces of a mesh that should move as one,
    which the vertex error averages away."""
    from scipy.spatial import cKDTree

    near = cKDTree(rest).query(rest, k=k + 1)[1][:, 1:]
    total = 0.0
    for t in range(len(frames)):
        rel_posed = posed[t][:, None, :] - posed[t][near]
        rel_true = frames[t][:, None, :] - frames[t][near]
        total += float(np.linalg.norm(rel_posed - rel_true, axis=-1).mean())
    return total / len(frames) / diag


def _rigid_row(rest, frames, count: int, diag: float) -> dict:
    """The baseline at `count` bones: rigid segments, no blending."""
    from backend.rigging.segments import apply_segments, rigid_segments

    (labels, rot, trans), secs = timed(rigid_segments, rest, frames, count)
    posed = apply_segments(rest, labels, rot, trans)
    return {"error": _error(posed, frames, diag), "seams": seam_error(rest, posed, frames, diag), "seconds": secs}


def _rig_row(rig, secs: float, rest, frames, diag: float) -> dict:
    """A rig's figures: its own error (new_rig measures it against these frames) and its seams."""
    return {"error": float(rig.error.mean()), "seams": seam_error(rest, rig.posed(), frames, diag), "seconds": secs}


def run_case(name: str, bones) -> dict:
    from backend.rigging import animate_rig, new_rig

    case = load_case(name)
    rest, frames, faces = case["rest"], case["frames"], case["faces"]
    diag = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0)))
    row = {"name": name, "vertices": int(len(rest)), "frames": int(len(frames)), "by_bones": {}}
    if "target" in case:
        rig, secs_new = timed(new_rig, rest, frames, faces, bones="auto")
        given, secs = timed(animate_rig, rest, case["target"], faces, weights=rig.weights, bind=rig.bind,
                            parents=rig.parents, names=rig.names)
        still = _error(np.broadcast_to(rest, case["target"].shape), case["target"], diag)
        row.update(retarget={"bones": int(rig.weights.shape[1]), "error": float(given.error.mean()),
                             "still": still, "seconds": secs, "rig_seconds": secs_new})
        return row
    for count in bones:
        rig, secs = timed(new_rig, rest, frames, faces, bones=count)
        row["by_bones"][str(count)] = {"rigid": _rigid_row(rest, frames, count, diag),
                                       "ssdr": _rig_row(rig, secs, rest, frames, diag)}
    rig, secs = timed(new_rig, rest, frames, faces, bones="auto")
    count = int(rig.weights.shape[1])
    if str(count) not in row["by_bones"]:
        row["by_bones"][str(count)] = {"rigid": _rigid_row(rest, frames, count, diag)}
    row["auto"] = {"bones": count, **_rig_row(rig, secs, rest, frames, diag),
                   "still": _error(np.broadcast_to(rest, frames.shape), frames, diag)}
    return row


def summary(rows: list) -> dict:
    out = {}
    for label, names in (("tuning", TUNING), ("validation", VALIDATION)):
        picked = [r for r in rows if r["name"] in names and "auto" in r]
        if not picked:
            continue
        ratios = [r["auto"]["error"] / r["by_bones"][str(r["auto"]["bones"])]["rigid"]["error"] for r in picked]
        out[label] = {"cases": len(picked), "mean_error": float(np.mean([r["auto"]["error"] for r in picked])),
                      "worst_error": float(max(r["auto"]["error"] for r in picked)),
                      "mean_ratio_vs_rigid": float(np.mean(ratios)), "worst_ratio_vs_rigid": float(max(ratios))}
    retarget = [r for r in rows if "retarget" in r]
    if retarget:
        out["retarget"] = {"cases": len(retarget), "worst_error": float(max(r["retarget"]["error"] for r in retarget))}
    panda = [r["auto"]["seconds"] for r in rows if r["name"].startswith("panda-") and "auto" in r]
    if panda:
        out["panda_auto_seconds_max"] = float(max(panda))
    return out


def table(results: dict) -> str:
    lines = [f"{'case':<20}{'V':>7}  {'bones':>5}  {'rigid err %':>11} {'seams %':>8} {'s':>6}  {'ssdr err %':>10} "
             f"{'seams %':>8} {'s':>6}"]
    for r in results["cases"]:
        if "retarget" in r:
            g = r["retarget"]
            lines.append(f"{r['name']:<20}{r['vertices']:>7}  {g['bones']:>5}  retarget {100 * g['error']:.3f}% "
                         f"(still {100 * g['still']:.2f}%) in {g['seconds']:.1f} s")
            continue
        for count, row in r["by_bones"].items():
            ssdr = row.get("ssdr")
            mine = (f"{100 * ssdr['error']:>10.3f} {100 * ssdr['seams']:>8.3f} {ssdr['seconds']:>6.1f}" if ssdr
                    else f"{'':>10} {'':>8} {'':>6}")
            rigid = row["rigid"]
            lines.append(f"{r['name']:<20}{r['vertices']:>7}  {count:>5}  {100 * rigid['error']:>11.3f} "
                         f"{100 * rigid['seams']:>8.3f} {rigid['seconds']:>6.1f}  {mine}")
        a = r["auto"]
        lines.append(f"{'':<20}{'':>7}  auto: {a['bones']} bones, {100 * a['error']:.3f}% (seams "
                     f"{100 * a['seams']:.3f}%; still {100 * a['still']:.2f}%) in {a['seconds']:.1f} s")
    s = results["summary"]
    for label in ("tuning", "validation"):
        if label in s:
            x = s[label]
            lines.append(f"{label}: {x['cases']} cases, auto mean {100 * x['mean_error']:.3f}% worst "
                         f"{100 * x['worst_error']:.3f}% (target < {100 * TARGET_ERROR:g}%); vs rigid at the same "
                         f"bones mean {x['mean_ratio_vs_rigid']:.2f}x worst {x['worst_ratio_vs_rigid']:.2f}x "
                         f"(target <= {TARGET_RATIO:g}x)")
    if "retarget" in s:
        lines.append(f"retarget: worst {100 * s['retarget']['worst_error']:.3f}% (target < {100 * TARGET_RETARGET:g}%)")
    if "panda_auto_seconds_max" in s:
        lines.append(f"panda (9,606 vertices x 16 frames): at most {s['panda_auto_seconds_max']:.1f} s "
                     f"(target <= {TARGET_PANDA_SECONDS:g} s)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend bench rig", description=__doc__.splitlines()[0])
    p.add_argument("--bones", default=",".join(map(str, BONES)), help="comma-separated bone counts (default 16,32)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    try:
        bones = [int(x) for x in args.bones.split(",") if x.strip()]
    except ValueError:
        p.error(f"--bones {args.bones!r}: expected comma-separated integers")
    cases = choices(p, cases=(args.cases, CASES))["cases"]
    rows = []
    for name in cases:
        started = time.monotonic()
        rows.append(run_case(name, bones))
        print(f"  {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    results = {"bones": bones, "cases": rows, "summary": summary(rows)}
    print(table(results))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
