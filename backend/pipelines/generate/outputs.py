"""The generate job's outputs: one hidden folder per run, published whole at the very end.

Output (written to a hidden sibling folder, renamed into place at the very end, so a failure or a
cancel leaves no partial result): animation.npz and animated.glb (as `register` writes them),
anchor.glb, report.json; a fit (--method fit, or learned-fit's refinement) adds camera.json (the camera
used); --stage1-meshes adds stage1/ (each frame's Stage I latent decoded and extracted, and
latents.npy); --prompt adds prompt_video.mp4 (the clip the video model made) and the report's
"prompt" (an Attachment: files made before the job's own, published with them). Every method
writes them through the same StagedOutput, and its report.json has the same layout: "kind", "command", "input" (the clip), "settings", the job's result (output paths,
sizes, device, seconds), and a fit's "fit" object (see backend.pipelines.generate.fit).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from ...io.files import tree_as_created
from ...jobs import JobContext

OUTPUT_NAMES = ("animation.npz", "animated.glb", "anchor.glb", "report.json", "stage1", "prompt_video.mp4")
REPORT_KIND = "actionmesh-generate"
# What of a fit's report stays in report.json only (the job's result has the rest as its "fit").
FIT_REPORT_ONLY = ("camera_used", "settings", "seconds")


def publish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; an earlier result there is replaced. It is published
    with the permissions mkdir and open would give (mkdtemp's 0700 would hide it from the other
    users of a shared folder)."""
    tree_as_created(tmp)
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


@dataclass
class Attachment:
    """Files made before the job (result key -> (name in the output, where it is now)) and the
    report entries that describe them."""

    files: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    source: Optional[str] = None  # the report's input source, where the job read a file made for it


class StagedOutput:
    """A result being written to `tmp`, a hidden sibling of `out` (see staged_output)."""

    def __init__(self, ctx: JobContext, out: Path, tmp: Path, attach: Optional[Attachment] = None):
        self.ctx, self.out, self.tmp = ctx, out, tmp
        self.attach = attach or Attachment()
        for name, source in self.attach.files.values():
            shutil.copyfile(source, tmp / name)
        self.steps = 3

    def write_animation(self, vertices: np.ndarray, faces: np.ndarray, offsets: np.ndarray, fps: float, *,
                        name: str, surface=None, camera: Optional[dict] = None) -> dict:
        """animation.npz, animated.glb (with `surface`'s UVs and material), anchor.glb and, for a fit,
        camera.json (`camera`: its dict) -> the output paths, where they will be once published."""
        from ...geometry.normals import smooth_normals
        from ...io.gltf import write_animated_glb
        from ...io.mesh import write_animation_npz, write_mesh

        ctx, tmp, out = self.ctx, self.tmp, self.out
        self.steps = steps = 3 if camera is None else 4
        ctx.progress("write", 0, steps, "writing animation.npz")
        write_animation_npz(tmp / "animation.npz", vertices, faces, offsets, fps)
        ctx.progress("write", 1, steps, "writing animated.glb")
        write_animated_glb(tmp / "animated.glb", vertices, faces, offsets, fps, name=name,
                           uv=getattr(surface, "uv", None), material=getattr(surface, "material", None),
                           normals=None if surface is None else smooth_normals(vertices, faces))
        ctx.progress("write", 2, steps, "writing anchor.glb" if camera is None else "writing anchor.glb and camera.json")
        write_mesh(tmp / "anchor.glb", vertices, faces)
        paths = {"out": str(out), "animation": str(out / "animation.npz"), "glb": str(out / "animated.glb"),
                 "anchor": str(out / "anchor.glb")}
        if camera is not None:
            (tmp / "camera.json").write_text(json.dumps(camera, indent=1) + "\n")
            paths["camera"] = str(out / "camera.json")
        paths.update({key: str(out / name) for key, (name, _) in self.attach.files.items()})
        paths["report"] = str(out / "report.json")
        return paths

    def publish(self, report: dict) -> None:
        """report.json, then the folder moved into place (unless the job was cancelled)."""
        report = {**report, **self.attach.report}
        if self.attach.source is not None:
            report["input"] = {**report["input"], "source": self.attach.source}
        (self.tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        self.ctx.check_cancel()
        publish(self.tmp, self.out)
        self.ctx.progress("write", self.steps, self.steps, f"done: {self.out}")


@contextlib.contextmanager
def staged_output(ctx: JobContext, out: Path, attach: Optional[Attachment] = None) -> Iterator[StagedOutput]:
    """A hidden folder beside `out` to write the result to (`attach`'s files copied in first);
    removed if the block fails or is cancelled before StagedOutput.publish moves it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield StagedOutput(ctx, out, tmp, attach)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def job_result(paths: dict, *, frames: int, vertices: np.ndarray, faces: np.ndarray, fps: float, device: str,
               started: float, warnings: List[str], method: Optional[str] = None,
               fit: Optional[dict] = None) -> dict:
    """The job's result (what the CLI prints and the service returns): output paths, sizes, and
    with a fit its report (backend.pipelines.fit_report's shape), less FIT_REPORT_ONLY."""
    result = dict(paths)
    if method is not None:
        result["method"] = method
    result.update(frames=frames, vertices=int(len(vertices)), faces=int(len(faces)), fps=fps, device=device)
    if fit is not None:
        result["fit"] = {k: v for k, v in fit.items() if k not in FIT_REPORT_ONLY}
    result["seconds"] = round(time.monotonic() - started, 3)
    result["warnings"] = warnings
    return result


def job_report(clip, result: dict, *, settings: dict, started: float, method: Optional[str] = None,
               fit: Optional[dict] = None, **details) -> dict:
    """report.json: the clip, the settings, `details`, the result (its fit summary is in "fit")."""
    report = {"kind": REPORT_KIND, "command": "generate"}
    if method is not None:
        report["method"] = method
    report["input"] = {"source": clip.source, "indices": clip.indices, "source_fps": clip.source_fps,
                       "source_frames": clip.source_frames, "fps": clip.fps}
    report["settings"] = settings
    report.update(details)
    report.update({k: v for k, v in result.items() if k not in ("warnings", "fit")})
    if fit is not None:
        report["fit"] = fit
    report["warnings"] = result["warnings"]
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


def model_revisions(models_dir: Optional[str], names: Iterable[str]) -> dict:
    from ...hub import get_model, open_store

    store = open_store(models_dir)
    out = {}
    for name in names:
        status = store.status(get_model(name))
        out[name] = {"repo_id": status.spec.repo_id, "pinned_revision": status.spec.revision,
                     "found_revision": status.revision, "folder": str(status.folder), "state": status.state}
    return out
