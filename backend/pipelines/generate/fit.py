"""The generate job's fitting: --method fit, and the refinement of --method learned-fit.

--method fit (no models, CPU): the --mesh is fitted to the frames by backend.fitting.fit_video:
the camera from --camera (camera.json, OpenCV's convention) or estimated from frame 0's mask,
then per-frame deformation-graph motion against the masks and the optical flow. The frames are
used uncropped (the camera sees them whole). Same outputs as the learned pipeline, plus
camera.json (the camera used). Warnings: a frame-0 silhouette IoU under 0.5 after the camera step
(the mesh may not be the object), masks touching the image's edge (the object leaves the frame).
--method learned-fit runs the learned pipeline when its models are all stored and then fit_video from
its result (each frame's fit starts from the learned pose); without the models it falls back to
fit (a warning names what is missing), or, with no --mesh to fit, to the learned path's own error
naming the models to fetch.

Both write report.json's "fit" object (fit_frames) in the shape every fit's report has
(backend.pipelines.fit_report: measure "silhouette_iou", before, after, held_frames, per_frame),
with these of its own:
  per_frame: per frame, besides the silhouette IoU before and after, the flow residual before and
    after the fit (frames after 0: flow_residual_before, flow_residual_after), and depth_share: how
    much of the fitted motion since frame 0 runs along the line of sight (0 across the picture, 1
    toward or away from the camera: what one view does not see, so what the fit guessed);
  depth_share: its mean over the frames;
  camera_used (camera.json's content), camera_estimated (no --camera), camera_iou (frame 0's
    silhouette IoU after the camera step);
  the verdict: the clip is fitted twice through two deformation graphs, and per_frame's
    disagreement is how far the two part in 3D as a share of the motion found, trust what is kept
    of the fitted motion (1 all, 0 none); held_frames are those with trust under 1, held toward
    the still pose (--method fit) or the learned result (learned-fit), with a warning naming them first;
    a warning also names frames whose points land far from where the optical flow carries them;
  settings (backend.fitting's FitSettings), seconds (the fit's own timings).
The job's result carries the same "fit" less camera_used, settings and seconds (FIT_REPORT_ONLY).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

from ...errors import BadInput
from ...jobs import JobContext
from ..fit_report import silhouette_fit_report
from .inputs import border_frames, frames_with_alpha, load_given_mesh, read_clip
from .outputs import job_report, job_result, staged_output
from .runtime import pick_device

# Below this silhouette IoU at frame 0 after the camera step, the mesh and the frames' object
# probably are not the same thing (or the camera is far off): the fit is then not to be trusted.
# The right mesh through the right camera covers the mask at 0.8-0.95 (the benchmark's cases); a
# mesh 10x too large through a given camera still reached 0.30, so 0.3 let that pass unwarned.
LOW_CAMERA_IOU = 0.5


def fit_frames(ctx: JobContext, vertices: np.ndarray, faces: np.ndarray, rgba: np.ndarray, camera, seed: int,
               init_offsets: Optional[np.ndarray] = None):
    """backend.fitting.fit_video on the uncropped RGBA frames -> (its FitResult, report.json's "fit")."""
    from ...fitting.fit import FitSettings, fit_video

    settings = FitSettings(seed=seed)
    fitted = fit_video(vertices, faces, rgba, camera=camera, settings=settings, init_offsets=init_offsets,
                       progress=lambda i, n, msg: ctx.progress("fit", i, n, msg), should_cancel=ctx.should_cancel)
    if not np.isfinite(fitted.offsets).all():
        raise RuntimeError("the fit produced non-finite vertex positions")
    return fitted, {
        **silhouette_fit_report(fitted.report, fitted.held),
        "depth_share": round(float(np.mean([r["depth_share"] for r in fitted.report[1:]] or [0.0])), 4),
        "camera_used": fitted.camera.to_dict(), "camera_estimated": fitted.camera_estimated,
        "camera_iou": round(float(fitted.camera_iou), 4), "settings": dataclasses.asdict(settings),
        "seconds": {k: round(v, 3) for k, v in fitted.seconds.items()}}


def fit_warnings(fitted, consequence: str) -> List[str]:
    """What a fit warns about, in the order to read them: the fit's own verdict (frames held back,
    a clip whose two fits part, frames off the optical flow: which frames of the result to check),
    frame 0's poor agreement after the camera step (ending with `consequence`), silhouettes worse
    than the still mesh's. `generate` puts them first among its warnings (the add-on's status
    line shows the first); `bench fit` reports the same."""
    out = [str(w) for w in fitted.warnings]
    low = low_camera_iou(fitted, consequence)
    if low:
        out.append(low)
    before = float(np.mean([r["iou_before"] for r in fitted.report]))
    after = float(np.mean([r["iou_after"] for r in fitted.report]))
    if after < before and not fitted.held:
        out.append(f"the fitted mesh matches the silhouettes worse than the still mesh (mean IoU {after:.3f} vs "
                   f"{before:.3f}); check the mesh, the masks and the camera")
    return out


def border_warning(rgba: np.ndarray, indices) -> Optional[str]:
    """The object touching the image's edge: its silhouette is cut off there."""
    cut = border_frames(rgba, indices)
    if not cut:
        return None
    return (f"the object touches the image's edge in frame(s) {', '.join(map(str, cut[:12]))}"
            f"{' ...' if len(cut) > 12 else ''}: its silhouette is cut off there, so the fit may pull the mesh "
            "into the frame")


def low_camera_iou(fitted, consequence: str) -> Optional[str]:
    if fitted.camera_iou >= LOW_CAMERA_IOU:
        return None
    return (f"the mesh covers the object in frame 0 poorly even after placing the camera "
            f"(silhouette IoU {fitted.camera_iou:.2f} < {LOW_CAMERA_IOU}): {consequence}")


def _refuse_mismatch(fitted, consequence: str) -> None:
    """--refuse-mismatch: the low frame-0 agreement fails the job with its words (nothing is
    written: the caller is inside staged_output)."""
    warning = low_camera_iou(fitted, consequence)
    if warning:
        raise BadInput(f"{warning[0].upper()}{warning[1:]}. Nothing was written")


def refine_by_fitting(ctx: JobContext, anchor, offsets: np.ndarray, rgba: np.ndarray, camera, seed: int,
                      warnings: List[str], refuse_mismatch: bool = False):
    """Method "learned-fit": the learned offsets as each frame's starting pose for fit_video on the
    uncropped frames (same terms as --method fit). -> (fitted offsets, the report's "fit" entry)."""
    fitted, summary = fit_frames(ctx, anchor.vertices, anchor.faces, rgba, camera, seed, init_offsets=offsets)
    consequence = "the fit's refinement may be wrong"
    if refuse_mismatch:
        _refuse_mismatch(fitted, consequence)
    warnings[:0] = fit_warnings(fitted, consequence)
    return fitted.offsets, summary


def run_fit(ctx: JobContext, *, input, out_dir: Path, mesh: Optional[str], camera: Optional[str],
            masks: Optional[str], start: int, frames: Optional[int], stride: int, fps: Optional[float], seed: int,
            device: str, models_dir: Optional[str], warnings: List[str], started: float,
            refuse_mismatch: bool = False, attach=None) -> dict:
    """Method "fit": the given mesh made to follow the frames' object (backend.fitting.fit_video),
    on the CPU, with no learned weights (RMBG-1.4 only when frames lack alpha and --masks, as in
    the learned pipeline). Writes what the learned pipeline writes, plus camera.json.
    refuse_mismatch: fail instead of warning when frame 0's agreement is under LOW_CAMERA_IOU.
    attach: an outputs.Attachment published with the result (generate --prompt's clip)."""
    from ...fitting import camera as fit_camera

    if mesh is None:
        raise BadInput("--method fit animates a given mesh: pass --mesh FILE (the object in frame 0's pose)")
    given_camera = fit_camera.Camera.load(camera) if camera is not None else None
    clip = read_clip(ctx, input, start=start, frames=frames, stride=stride, fps=fps, warnings=warnings)
    count = len(clip)
    if count < 2:
        raise BadInput(f"fitting follows motion: it needs at least 2 frames, {clip.source} gave {count}")
    given, surface = load_given_mesh(mesh, warnings)
    # The frames' own alpha, else --masks, else RMBG where stored: the same rules as the learned
    # pipeline (fully transparent frames are refused there, by number).
    rgba = frames_with_alpha(ctx, clip, masks, models_dir, pick_device(device), warnings)
    cut = border_warning(rgba, clip.indices)
    if cut:
        warnings.append(cut)
    ctx.progress("prepare", 1, 1, f"{count} frames, {rgba.shape[2]}x{rgba.shape[1]}")

    vertices, faces = given.vertices, given.faces
    with staged_output(ctx, out_dir, attach) as staged:
        fitted, fit = fit_frames(ctx, vertices, faces, rgba, given_camera, seed)
        consequence = ("the mesh may not be the object in the frames, or not in frame 0's pose"
                       + ("" if given_camera is None else ", or the camera does not match the frames"))
        if refuse_mismatch:
            _refuse_mismatch(fitted, consequence)
        warnings[:0] = fit_warnings(fitted, consequence)

        paths = staged.write_animation(vertices, faces, fitted.offsets, clip.fps, name=Path(mesh).stem,
                                       surface=surface, camera=fit["camera_used"])
        result = job_result(paths, method="fit", frames=count, vertices=vertices, faces=faces, fps=clip.fps,
                            device="cpu", fit=fit, started=started, warnings=warnings)
        settings = {"mesh": mesh, "camera": camera, "masks": masks, "start": start, "frames": frames,
                    "stride": stride, "seed": seed}
        staged.publish(job_report(clip, result, method="fit", settings=settings, fit=fit, started=started))
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
