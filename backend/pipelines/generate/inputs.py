"""The generate job's arguments and inputs: checks, the method's choice, the clip, the masks, the
given mesh.

    frames (video, folder or array; backend.io)
      -> alpha: the frames' own where usable, else the user's masks (--masks) or RMBG-1.4
      -> (learned method) one crop box for the clip, padded square, on white
         (backend.preprocessing.prepare_frames); a fit uses the frames uncropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

from ...errors import BadInput
from ...hub.registry import MODEL_SET_DEFAULT_NAMES, MODEL_SET_DEFAULTS_KEY
from ...jobs import JobContext
from .outputs import REPORT_KIND

# learned: ActionMesh's models (Stage 0, I, II); fit: video-guided fitting of the given mesh
# (backend.fitting: no weights, no GPU); learned-fit: learned, then fitted from its result, when
# the models are all stored, else fit (with a warning). `register` has its own pair (optimize,
# learned-optimize): fitting follows silhouettes and flow, optimisation follows surfaces.
METHODS = ("learned", "fit", "learned-fit")
LEARNED_MODELS = ("actionmesh", "dinov2", "triposg")



# ------------------------------------------------------------------ arguments


def parse_known(known) -> Dict[int, str]:
    """--known as given by the CLI ("FRAME=MESH" strings), the service ({frame: path} or
    [[frame, path], ...]) -> {frame: path}."""
    if not known:
        return {}
    if isinstance(known, Mapping):
        items = list(known.items())
    elif isinstance(known, str):
        items = [known]
    else:
        items = list(known)
    out: Dict[int, str] = {}
    for item in items:
        if isinstance(item, str):
            frame, sep, path = item.partition("=")
            if not sep or not path:
                raise BadInput(f"--known {item!r}: expected FRAME=MESH, e.g. 20=pose.glb")
        else:
            try:
                frame, path = item
            except (TypeError, ValueError):
                raise BadInput(f"known keyframe {item!r}: expected (frame, mesh path)") from None
        try:
            index = int(str(frame).strip())
        except ValueError:
            raise BadInput(f"known keyframe {item!r}: the frame must be an integer") from None
        if index in out:
            raise BadInput(f"frame {index} is given twice with --known")
        out[index] = str(path)
    return out


def check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise BadInput(f"{name} must be an integer of at least {low}, got {value!r}")
    return int(value)


def check_output_folder(out: Path, kind: str = REPORT_KIND, command: str = "generate") -> None:
    """`out` must be new, empty, or an earlier result of this command (its report.json's "kind"
    is `kind`), which is replaced."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        report = out / "report.json"
        ours = False
        if report.is_file():
            try:
                ours = json.loads(report.read_text()).get("kind") == kind
            except (OSError, ValueError, AttributeError):
                ours = False
        if not ours:
            raise BadInput(f"output folder {out} is not empty and holds no earlier {command} result; "
                           "choose a new or empty folder")


def model_set_defaults(folder: Path, names=MODEL_SET_DEFAULT_NAMES) -> dict:
    """A model set's own generation defaults (MODEL_SET_DEFAULTS_KEY of `folder`/model_index.json,
    the keys `names`), {} for the release's."""
    path = Path(folder) / "model_index.json"
    try:
        raw = json.loads(path.read_text()).get(MODEL_SET_DEFAULTS_KEY) or {}
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: {MODEL_SET_DEFAULTS_KEY} must be an object, got {raw!r}")
    return {k: raw[k] for k in names if k in raw}


def missing_learned_models(models_dir: Optional[str]) -> List[str]:
    """The learned pipeline's models that are not stored whole, each with its state."""
    from ...hub import READY, get_model, open_store

    store = open_store(models_dir)
    out = []
    for name in LEARNED_MODELS:
        status = store.status(get_model(name))
        if status.state != READY:
            out.append(f"{name} ({status.state})")
    return out


# ------------------------------------------------------------------ inputs


def read_clip(ctx: JobContext, input, *, start: int, frames: Optional[int], stride: int, fps: Optional[float],
              warnings: List[str], max_frames: Optional[int] = None):
    """The selected frames (backend.io.read_frames); its notes join the warnings."""
    from ...io import read_frames

    ctx.progress("prepare", 0, 1, f"reading {input if isinstance(input, (str, Path)) else 'the frames'}")
    clip = read_frames(input, start=start, frames=frames, stride=stride, fps=fps, max_frames=max_frames)
    warnings += clip.notes
    return clip


def load_given_mesh(mesh: str, warnings: List[str]):
    """--mesh: the mesh (within the vertex limit) and its UVs and material, for animated.glb."""
    from ...io.surface import load_surface_attributes
    from ...io.mesh import MAX_REFERENCE_VERTICES, load_mesh

    given = load_mesh(mesh, role="mesh")
    if len(given.vertices) > MAX_REFERENCE_VERTICES:
        raise BadInput(f"mesh has {len(given.vertices):,} vertices; the limit is {MAX_REFERENCE_VERTICES:,}. "
                       "Decimate it first")
    surface = load_surface_attributes(mesh, given)
    warnings += surface.warnings
    return given, surface


def user_masks(masks: str, clip):
    """--masks DIR for the selected frames: matched by file name for a frame folder; for a video
    or an array, the folder holds one mask per selected frame, or one per source frame (the
    selected ones are taken by index)."""
    from ...preprocessing import FolderMasks

    if clip.names is not None:
        return FolderMasks(masks, frame_names=clip.names)
    remover = FolderMasks(masks)
    if len(remover.files) == len(clip):
        return remover
    if len(remover.files) > clip.indices[-1] and (clip.source_frames is None
                                                  or len(remover.files) == clip.source_frames):
        return FolderMasks(masks, frame_names=[remover.files[i].name for i in clip.indices])
    raise BadInput(f"{len(remover.files)} mask images in {masks}, but {len(clip)} frames were selected "
                   f"(of {clip.source_frames or 'at least ' + str(clip.indices[-1] + 1)}): give one mask per "
                   "selected frame, or one per frame of the video")


def frames_with_alpha(ctx: JobContext, clip, masks: Optional[str], models_dir: Optional[str], dev: str,
                      warnings: List[str]) -> np.ndarray:
    """RGBA frames with a usable mask each: their own alpha, else --masks, else RMBG (if stored)."""
    from ...hub import READY, get_model, open_store
    from ...preprocessing import RMBGRemover, alpha_is_usable, ensure_alpha

    frames = clip.frames
    if frames.shape[-1] == 4 and masks is None:
        empty = [clip.indices[i] for i, f in enumerate(frames) if not f[..., 3].any()]
        if empty:
            raise BadInput(f"frame(s) {', '.join(map(str, empty[:12]))} of {clip.source} are fully transparent: "
                           "nothing to reconstruct (check the export's alpha, or pass --masks DIR)")
    needs = frames.shape[-1] == 3 or not all(alpha_is_usable(f[..., 3]) for f in frames)
    remover = None
    if masks is not None:
        remover = user_masks(masks, clip)
    elif needs:
        status = open_store(models_dir).status(get_model("rmbg"))
        if status.state == READY:
            ctx.progress("prepare", 0, 1, "removing backgrounds with RMBG-1.4")
            remover = RMBGRemover(status.folder, device=dev,
                                  progress=lambda i, n: ctx.progress("prepare", i, n, f"background removal {i}/{n}"))
            warnings.append("frames without a usable alpha went through RMBG-1.4; check the masks "
                            "(the release recommends SAM2 masks, --masks DIR, for real footage)")
    return ensure_alpha(frames, remover)


def border_frames(rgba: np.ndarray, indices) -> List[int]:
    """Frames (numbered as the clip's source) whose mask reaches the image's edge: the object is
    cut off there, so its silhouette is not the whole object."""
    from ...fitting.evidence import ALPHA_THRESHOLD

    out = []
    for i, frame in enumerate(rgba):
        mask = frame[..., 3] > ALPHA_THRESHOLD
        if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
            out.append(int(indices[i]))
    return out
