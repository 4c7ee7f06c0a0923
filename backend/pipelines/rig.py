"""The rig job: an animation (animation.npz, as `generate` and `register` write it) -> a rig.

    python -m backend rig --animation OUT/animation.npz --out DIR [--bones N|auto] [--influences 4]
                          [--rig RIG.npz]

Writes, into a new (or an earlier rig result's) folder, all at once at the end:
    rig.npz      the rig and its animation (backend/io/rig.py)
    rigged.glb   a skinned glTF: the mesh, one joint per bone, the skin, one animation
    report.json  bones, influences, the reconstruction error per frame (mean vertex distance from
                 the animation / the mesh's bounding-box diagonal), the bone counts tried, seconds
With --rig the given rig's weights, joints and parents are kept and only its bones' motion is
solved (the add-on writes one from an armature and its vertex groups).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInput
from ..geometry.normals import smooth_normals
from ..io.gltf import write_skinned_glb
from ..io.mesh import read_animation_npz
from ..io.rig import RigFile, read_rig_npz, write_rig_npz
from ..jobs import JobContext
from .generate.inputs import check_output_folder
from .generate.outputs import staged_output

REPORT_KIND = "actionmesh-rig"
# The decomposition's cost grows with the vertices and bones (the panda, 9,606 vertices x 16 frames:
# 6 s at 16 bones, 11 s at 32 on 2 idle cores, bench rig): past this a rig takes many minutes and
# far more memory than a user expects.
MAX_RIG_VERTICES = 200_000


def run_rig(ctx: JobContext, *, animation: str, out: str, bones="auto", influences: int = 4,
            rig: Optional[str] = None, seed: int = 0) -> dict:
    """See the module docstring. Returns the output paths and the report's summary."""
    from ..rigging import animate_rig, new_rig

    started = time.monotonic()
    out_dir = Path(out).expanduser()
    check_output_folder(out_dir, kind=REPORT_KIND, command="rig")
    data = read_animation_npz(animation)
    rest = np.asarray(data["vertices"], np.float64)
    frames = rest[None] + np.asarray(data["offsets"], np.float64)
    faces, fps = np.asarray(data["faces"], np.int64), float(data["fps"])
    if len(rest) > MAX_RIG_VERTICES:
        raise BadInput(f"the mesh has {len(rest):,} vertices; rigs are made for at most {MAX_RIG_VERTICES:,}. "
                       "Decimate it first (the rig's weights carry over to the full mesh in Blender by "
                       "Data Transfer)")
    ctx.progress("rig", 0, 2, f"{len(frames)} frames of {len(rest):,} vertices")
    given = None
    if rig is not None:
        given = read_rig_npz(rig)
        _check_given(given, rest, Path(rig).name)
        made = animate_rig(rest, frames, faces, weights=given.weights, bind=given.bind, parents=given.parents,
                           names=given.names, connected=given.connected)
    else:
        made = new_rig(rest, frames, faces, bones=bones, influences=influences, seed=seed,
                       progress=lambda i, n, msg: ctx.progress("rig", i, n, msg))
    ctx.check_cancel()
    ctx.progress("write", 0, 2, "writing rig.npz and rigged.glb")
    n_bones = made.weights.shape[1]
    influences_used = int((made.weights > 0).sum(axis=1).max())
    with staged_output(ctx, out_dir) as staged:
        staged.steps = 2
        write_rig_npz(staged.tmp / "rig.npz", RigFile(rest, faces, made.weights, made.bind, made.parents,
                                                       made.names, made.local, fps,
                                                       None if given is None else given.connected))
        write_skinned_glb(staged.tmp / "rigged.glb", rest, faces, weights=made.weights, bind=made.bind,
                          parents=made.parents, names=made.names, local=made.local, fps=fps,
                          name=Path(animation).parent.name or "ActionMesh", normals=smooth_normals(rest, faces))
        result = {"out": str(out_dir), "rig": str(out_dir / "rig.npz"), "glb": str(out_dir / "rigged.glb"),
                  "report": str(out_dir / "report.json"), "mode": "given rig" if given else "new rig",
                  "bones": n_bones, "influences": influences_used, "frames": len(frames),
                  "vertices": len(rest), "error_mean": round(float(made.error.mean()), 6),
                  "error_max": round(float(made.error.max()), 6), "warnings": []}
        report = {"kind": REPORT_KIND, "command": "rig", "animation": str(animation),
                  "rig_in": None if rig is None else str(rig), **result,
                  "error_per_frame": [round(float(e), 6) for e in made.error],
                  "bones_tried": {str(k): round(v, 6) for k, v in made.tried.items()},
                  "settings": {"bones": bones, "influences": influences, "seed": seed},
                  "seconds": round(time.monotonic() - started, 3)}
        staged.publish(report)
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _check_given(given: RigFile, rest: np.ndarray, name: str) -> None:
    if len(given.rest_vertices) != len(rest):
        raise BadInput(f"{name} weighs {len(given.rest_vertices):,} vertices; the animation's mesh has "
                       f"{len(rest):,}: the rig must be made for this mesh")
    size = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0))) or 1.0
    apart = float(np.abs(given.rest_vertices - rest).max()) / size
    if apart > 0.01:
        raise BadInput(f"{name}'s rest pose is not the animation's: vertices lie up to {100 * apart:.1f}% of the "
                       "mesh's size apart (is the rig in the same coordinates, with the same vertex order?)")
