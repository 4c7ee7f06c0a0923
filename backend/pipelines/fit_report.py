"""One shape for every fit's report, whichever job made it.

A mesh sequence registered onto a reference (`register`) is judged by the surface distance to
each frame's mesh; a mesh fitted to a video (`generate --method fit / learned-fit`) by the
silhouette IoU against each frame's mask. The job's result carries either as "fit":

    measure      "surface_distance" (a fraction of the reference's bounding-box diagonal) or
                 "silhouette_iou"
    better       "lower" or "higher": which way the measure improves
    before       the measure's mean over the frames for the starting poses (the reference left in
                 place; the still mesh, or the learned result it was refined from)
    after        the same for the result
    held_frames  frames whose result was held back (at the starting pose, or toward it)
    per_frame    [{"frame", "before", "after", "held", ...}] and the method's own per-frame figures

plus, for a video fit, camera_estimated, camera_iou and depth_share (backend.pipelines.generate.fit).
The add-on's status line reads only the common keys, so every fit reaches the user the same way.
"""

from __future__ import annotations

from typing import Iterable, List

MEASURES = {"surface_distance": "lower", "silhouette_iou": "higher"}


def fit_report(measure: str, per_frame: List[dict], held: Iterable[int]) -> dict:
    """The common keys from per-frame entries that already carry frame, before and after."""
    if measure not in MEASURES:
        raise ValueError(f"unknown fit measure {measure!r}; expected one of {', '.join(MEASURES)}")
    held = sorted(int(f) for f in held)
    rows = [{**row, "held": int(row["frame"]) in held} for row in per_frame]
    n = max(len(rows), 1)
    return {"measure": measure, "better": MEASURES[measure],
            "before": round(sum(float(r["before"]) for r in rows) / n, 6),
            "after": round(sum(float(r["after"]) for r in rows) / n, 6),
            "held_frames": held, "per_frame": rows}


def surface_fit_report(frame_fit: List[dict]) -> dict:
    """A registration's report (backend.registration.quality.frame_fit_entry per frame)."""
    rows = []
    for e in frame_fit:
        row = {"frame": int(e["frame"]), "before": e["fit_before"], "after": e["fit_after"]}
        if "rigid_accepted" in e:
            row["rigid_held"] = not e["rigid_accepted"]
        rows.append(row)
    return fit_report("surface_distance", rows, [e["frame"] for e in frame_fit if not e["accepted"]])


def silhouette_fit_report(per_frame: List[dict], held: Iterable[int]) -> dict:
    """A video fit's report (backend.fitting's FitResult.report and .held)."""
    rows = [{"frame": int(r["frame"]), "before": r["iou_before"], "after": r["iou_after"],
             **{k: v for k, v in r.items() if k not in ("frame", "iou_before", "iou_after")}} for r in per_frame]
    return fit_report("silhouette_iou", rows, held)
