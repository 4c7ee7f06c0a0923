"""Video -> animated mesh: ActionMesh's generation pipeline, as one job.

    frames (video, folder or array; backend.io)
      -> alpha: the frames' own where usable, else the user's masks (--masks) or RMBG-1.4
      -> one crop box for the clip, padded square, on white (backend.preprocessing.prepare_frames)
    Stage 0, the anchor (frame 0):
      no --mesh: TripoSG. DINOv2 tokens of TripoSG's own encoder, rectified-flow sampling (100
        steps, guidance 7.5, as ActionMesh's stage-0 setting; --fast 50), the VAE's field
        extracted coarse-to-fine, then the release's clean-up: merge vertices, quadric decimation
        to 40k faces (fast_simplification), components under 2 % of the largest dropped.
      --mesh FILE: the given mesh, welded (UV seams split vertices that are one point of the
        surface), normalised to [-1, 1] (bounding-box centre, longest side 2: the release's
        normalize_mesh), 16,384 surface samples with normals encoded by the VAE.
    Stage I: DINOv2-large tokens per frame; the temporal denoiser fills in every frame's shape
      latent over windows of 16 frames sliding by 15 (30 steps, guidance 7.5; --fast 15), known
      frames given clean: frame 0, --known FRAME=MESH keyframes (encoded like --mesh), and with
      --loop the last frame (= frame 0's latent). Window i's noise is seeded seed + i, as upstream.
    Stage II: the temporal autoencoder moves the anchor's vertices (xyz + normals) through the
      same windows (TemporalAutoencoder.predict_sequence), back to the input's coordinates.
    Output (written to a hidden sibling folder, renamed into place at the very end, so a failure
    or a cancel leaves no partial result): animation.npz and animated.glb (as `register`
    writes them), anchor.glb, report.json; --stage1-meshes adds stage1/ (each frame's Stage I
    latent decoded and extracted, and latents.npy).

With --mesh the result is on the given mesh's own vertices, in its order and coordinates (the
welded copy only feeds the models), so UVs and materials of the original carry over.

--method fit (no models, CPU): the --mesh is fitted to the frames by backend.fitting.fit_video:
the camera from --camera (camera.json, OpenCV's convention) or estimated from frame 0's mask,
then per-frame deformation-graph motion against the masks and the optical flow. The frames are
used uncropped (the camera sees them whole). Same outputs, plus camera.json (the camera used)
and, in report.json, the per-frame silhouette IoU and flow residual before and after the fit.
Warnings: a frame-0 silhouette IoU under 0.3 after the camera step (the mesh may not be the
object), masks touching the image's edge (the object leaves the frame). --method auto runs the
learned pipeline when its models are all stored and then fit_video from its result (each frame's
fit starts from the learned pose; camera.json and report.json's "fit" as above); without the
models it falls back to fit (a warning names what is missing), or, with no --mesh to fit, to the
learned path's own error naming the models to fetch.

Memory: each model is loaded when its stage starts and released when it ends, so only one large
model is on the device at a time. --low-vram also runs the guidance batch as two passes and
decodes in smaller chunks. On CUDA the models run under bf16 autocast (fp16 where bf16 is not
supported; fp16 on MPS); on the CPU in float32. The same seed gives the same result on the same
device.

What we learned from the upstream code (facebookresearch/actionmesh, read, not copied):
actionmesh/pipeline.py (stage order, lazy loading, per-window seeds, windows from chunk_from(0,
T, 16, 15), the latent bank: frames already made are kept), pipeline_with_3d.py (merge, normalise,
16,384 samples, posterior sample; de-normalise and un-merge the result),
preprocessing/mesh_processor.py (merge -> decimate to 40k -> floaters under 2 %),
configs/actionmesh*.yaml (100/30 steps, 50/15 fast; guidance 7.5; lowram: split CFG batch,
clear the autocast cache).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional

import numpy as np

from ..errors import BadInput, Unsupported
from ..geometry.weld import weld
from ..jobs import JobContext

# ------------------------------------------------------------------ the release's settings

STAGE0_STEPS, FAST_STAGE0_STEPS = 100, 50
STAGE0_GUIDANCE = 7.5
STAGE1_STEPS, FAST_STAGE1_STEPS = 30, 15
STAGE1_GUIDANCE = 7.5
WINDOW, SLIDE = 16, 15
FACE_BUDGET = 40_000
FLOATER_FRACTION = 0.02
SURFACE_POINTS = 16_384
# TripoSG's hierarchical extraction goes to octree depth 9, i.e. 512 cells per axis, in +-1.005.
EXTRACT_RESOLUTION = 512
EXTRACT_BOUNDS = 1.005

# Ours: memory bounds.
QUERY_CHUNK, LOW_VRAM_QUERY_CHUNK = 65_536, 16_384  # points per VAE field query
STAGE2_QUERY_CHUNK, LOW_VRAM_STAGE2_QUERY_CHUNK = 16_384, 4_096  # vertices per read-out call
# Tokens per Stage II self-attention pass (target frames x window frames x (tokens + 1)).
STAGE2_TOKEN_BUDGET = 32_768
# Ours: CPU threads of the sampling loops. They call a network once per step; when its layers are
# small (activation rows x width under this), splitting each op over threads costs more than it
# saves, and far more when other work shares the cores (measured on 2 busy cores: a 64-wide DiT
# step 0.34 s on 2 threads, 0.005 s on 1; see backend.fitting.fit for the same finding). Such loops
# run on one thread; the release's networks (2 x 2048 tokens x 2048 wide and up) keep torch's count.
SMALL_LAYER_VALUES = 1 << 20

# Ours: a model set may carry its own generation defaults, as a private ("_"-prefixed, which every
# loader skips as metadata, like diffusers' "_class_name") key of TripoSG's model_index.json, the
# Stage 0 pipeline's config. The release's folders carry none, so they run with the release's
# settings above. `models tiny-random` writes one: its stand-in VAE reconstructs coarse blobs and
# its random latents' fields hover near zero everywhere, so a 512^3 grid costs minutes of queries
# and resolves nothing a 64^3 grid does not. Only these keys are read from it:
MODEL_SET_DEFAULTS_KEY = "_actionmesh_blender_defaults"
MODEL_SET_DEFAULT_NAMES = ("resolution",)

DEVICES = ("auto", "cuda", "mps", "cpu")
OUTPUT_NAMES = ("animation.npz", "animated.glb", "anchor.glb", "report.json", "stage1")
REPORT_KIND = "actionmesh-generate"
# learned: ActionMesh's models (Stage 0, I, II); fit: video-guided fitting of the given mesh
# (backend.fitting: no weights, no GPU); auto: learned then fitted from its result when the
# models are all stored, else fit.
METHODS = ("learned", "fit", "auto")
LEARNED_MODELS = ("actionmesh", "dinov2", "triposg")
# Below this silhouette IoU at frame 0 after the camera step, the mesh and the frames' object
# probably are not the same thing (or the camera is far off): the fit is then not to be trusted.
LOW_CAMERA_IOU = 0.3


# ------------------------------------------------------------------ device, precision, memory


def pick_device(device: str) -> str:
    """auto -> cuda, else mps, else cpu; an explicit device must exist (BadInput otherwise)."""
    import torch

    if device not in DEVICES:
        raise BadInput(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if device == "cuda" and not has_cuda:
        raise BadInput("device 'cuda' was requested but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if device == "mps" and not has_mps:
        raise BadInput("device 'mps' was requested but torch sees no Apple GPU (MPS); use 'auto' or 'cpu'")
    return device


def autocast_dtype(dev: str):
    """The reduced precision the release runs the networks in, where the device has it."""
    import torch

    if dev == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dev == "mps":
        return torch.float16
    return None  # CPU: float32 (CPU autocast is slow and gains nothing here)


@contextlib.contextmanager
def loop_threads(dev: str, layer_values: int):
    """One CPU thread for a sampling loop over a small network (see SMALL_LAYER_VALUES)."""
    import torch

    before = torch.get_num_threads()
    if dev != "cpu" or layer_values >= SMALL_LAYER_VALUES or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def model_set_defaults(triposg: Path) -> dict:
    """The model set's own generation defaults (MODEL_SET_DEFAULTS_KEY), {} for the release's."""
    path = Path(triposg) / "model_index.json"
    try:
        raw = json.loads(path.read_text()).get(MODEL_SET_DEFAULTS_KEY) or {}
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: {MODEL_SET_DEFAULTS_KEY} must be an object, got {raw!r}")
    return {k: raw[k] for k in MODEL_SET_DEFAULT_NAMES if k in raw}


def amp(dev: str, dtype):
    import torch

    return torch.autocast(device_type=dev, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def release_memory(dev: str) -> None:
    """Frees what the last stage left (models are dropped by their owner before this)."""
    import torch

    gc.collect()
    if dev == "cuda":
        torch.cuda.empty_cache()
    elif dev == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def _peak_rss_mb() -> Optional[float]:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)  # bytes on macOS, KiB on Linux


class StageMeter:
    """Seconds and peak memory per stage, for report.json."""

    def __init__(self, dev: str):
        self.dev = dev
        self.stages: Dict[str, dict] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        import torch

        if self.dev == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        yield
        if self.dev == "cuda":
            torch.cuda.synchronize()
        entry = {"seconds": round(time.perf_counter() - started, 3)}
        if self.dev == "cuda":
            entry["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        # The process's peak resident memory so far (it cannot be reset per stage).
        entry["peak_rss_mb"] = _peak_rss_mb()
        self.stages[name] = entry


class SplitGuidanceBatch:
    """Runs a guided batch [unconditioned | conditioned] as two forward passes (--low-vram): the
    activations of one half at a time. Tensor arguments with the batch's rows are split; the
    rest (a shared diffusion time) is passed to both passes as is."""

    def __init__(self, model):
        self.model = model

    def __call__(self, first, *rest):
        import torch

        rows = first.shape[0]
        if rows % 2:
            return self.model(first, *rest)
        half = rows // 2

        def part(a, i):
            if torch.is_tensor(a) and a.ndim > 0 and a.shape[0] == rows:
                return a[i * half:(i + 1) * half]
            return a

        return torch.cat([self.model(part(first, i), *(part(a, i) for a in rest)) for i in range(2)])


# ------------------------------------------------------------------ meshes in and out of the model's box


@dataclass
class AnchorMesh:
    """The mesh whose vertices Stage II moves.

    model_vertices/model_faces: the welded copy in the model's [-1, 1] box (what the networks see).
    vertices/faces: the output mesh (the given file's own, or the generated one).
    vertex_map: output vertex -> model vertex. scale/center: output = model / scale + center.
    """

    model_vertices: np.ndarray
    model_faces: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    vertex_map: np.ndarray
    center: np.ndarray
    scale: float
    source: str = ""


def anchor_from_mesh(vertices: np.ndarray, faces: np.ndarray, source: str = "") -> AnchorMesh:
    """A user's mesh as the anchor: normalised (the release's normalize_mesh: bounding-box centre
    to the origin, longest side to 2) and welded for the model; kept as given for the output."""
    from ..geometry import normalization_for

    try:
        transform = normalization_for(vertices, margin=0.0)
    except ValueError as exc:
        raise BadInput(f"mesh {Path(source).name or ''}: {exc}") from exc
    from ..geometry.orient import orient_faces

    model_v, model_f, vertex_map = weld(transform.apply(vertices), faces)
    if len(model_f) == 0:
        raise BadInput(f"mesh {Path(source).name}: every face is degenerate (no surface to encode)")
    # Both networks read surface normals that point outwards; files often mix windings. (Only the
    # model's copy is re-wound; the output keeps the file's faces.)
    model_f = orient_faces(model_v, model_f)
    return AnchorMesh(model_v, model_f, np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64),
                      vertex_map, np.asarray(transform.center, dtype=np.float64), float(transform.scale), source)


def anchor_in_model_space(vertices: np.ndarray, faces: np.ndarray) -> AnchorMesh:
    """A generated anchor: already in the model's box, already welded (the output is that mesh)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    return AnchorMesh(v, f, v, f, np.arange(len(v)), np.zeros(3), 1.0, "stage0")


def encode_mesh(vae, vertices: np.ndarray, faces: np.ndarray, *, seed: int, device: str,
                num_tokens: int, surface_points: int = SURFACE_POINTS):
    """A mesh in the model's box -> its shape latent [M, C] float32: `surface_points` area-weighted
    samples with face normals, encoded by the VAE, one posterior sample (the release samples; the
    seed makes it repeatable). Also how a test re-derives a known frame's latent."""
    import torch

    from ..geometry import sample_surface
    from ..geometry.orient import orient_faces

    # Normals must point outwards (the VAE was trained so); files often mix windings.
    faces = orient_faces(vertices, faces)
    try:
        points, normals = sample_surface(vertices, faces, surface_points, seed=seed)
    except ValueError as exc:
        raise BadInput(f"cannot sample the mesh's surface: {exc}") from exc
    x = torch.from_numpy(np.concatenate([points, normals], axis=1))[None].to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.inference_mode():
        posterior = vae.encode(x, generator=generator, num_latents=num_tokens)
        return posterior.sample(generator)[0].float()


def sdf_function(vae, memory, dev: str, dtype):
    """`sdf_fn(points [N, 3]) -> values [N]` over one decoded latent, for backend.geometry."""
    import torch

    def sdf(points):
        xyz = torch.as_tensor(points, dtype=torch.float32).to(dev)[None]
        with torch.inference_mode(), amp(dev, dtype):
            return vae.query(memory, xyz)[0].float().cpu().numpy()

    return sdf


def extract_latent(vae, latent, *, dev: str, dtype, resolution: int, chunk: int, progress=None,
                   should_cancel=None):
    """One shape latent [M, C] -> (vertices, faces) of its zero level set in the model's box."""
    import torch

    from ..geometry import extract_mesh

    with torch.inference_mode(), amp(dev, dtype):
        memory = vae.decode_latents(latent[None].to(dev))
    vertices, faces, _ = extract_mesh(sdf_function(vae, memory, dev, dtype), resolution=resolution,
                                      bounds=EXTRACT_BOUNDS, chunk_size=chunk, progress=progress,
                                      should_cancel=should_cancel)
    return vertices, faces


def clean_anchor(vertices: np.ndarray, faces: np.ndarray, *, face_budget: int = FACE_BUDGET,
                 floater_fraction: float = FLOATER_FRACTION):
    """The release's clean-up of the generated mesh, in its order: merge duplicate vertices,
    quadric decimation to `face_budget` faces, then drop components under `floater_fraction` of
    the largest (counted after decimation, as upstream)."""
    from ..geometry import merge_vertices, remove_floaters

    v, f = merge_vertices(vertices, faces)
    if face_budget and len(f) > face_budget:
        try:
            import fast_simplification
        except ImportError:
            raise Unsupported("the mesh clean-up needs fast_simplification: "
                              "pip install -r backend/requirements.txt") from None
        v, f = fast_simplification.simplify(np.asarray(v, dtype=np.float32), np.asarray(f, dtype=np.int64),
                                            target_count=int(face_budget))
        v, f = merge_vertices(np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64))
    if floater_fraction > 0 and len(f):
        v, f = remove_floaters(v, f, floater_fraction)
    return np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64)


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


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise BadInput(f"{name} must be an integer of at least {low}, got {value!r}")
    return int(value)


def check_output_folder(out: Path) -> None:
    """`out` must be new, empty, or an earlier result of this command (which is replaced)."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        report = out / "report.json"
        ours = False
        if report.is_file():
            try:
                ours = json.loads(report.read_text()).get("kind") == REPORT_KIND
            except (OSError, ValueError, AttributeError):
                ours = False
        if not ours:
            raise BadInput(f"output folder {out} is not empty and holds no earlier generate result; "
                           "choose a new or empty folder")


# ------------------------------------------------------------------ the stages


def user_masks(masks: str, clip):
    """--masks DIR for the selected frames: matched by file name for a frame folder; for a video
    or an array, the folder holds one mask per selected frame, or one per source frame (the
    selected ones are taken by index)."""
    from ..preprocessing import FolderMasks

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
    from ..hub import READY, get_model, open_store
    from ..preprocessing import RMBGRemover, alpha_is_usable, ensure_alpha

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


def generate_anchor(ctx: JobContext, triposg: Path, frame, *, dev: str, dtype, steps: int, num_tokens: int,
                    seed: int, low_vram: bool, resolution: int, face_budget: int):
    """Stage 0: TripoSG on the prepared anchor frame -> (vertices, faces) of the cleaned mesh in the
    model's box, and the sampled latent [M, C] it was extracted from (Stage I's frame 0)."""
    import torch

    from ..models.dit import ShapeDiT
    from ..models.image_encoder import ImageEncoder
    from ..models.vae import ShapeVAE
    from ..schedulers import RectifiedFlowScheduler

    ctx.progress("stage0", 0, steps, "DINOv2 tokens of the anchor frame (TripoSG's encoder)")
    encoder = ImageEncoder.from_triposg(triposg, device=dev)
    _, tokens = encoder.encode(frame[None])
    del encoder
    release_memory(dev)

    dit = ShapeDiT.from_pretrained(triposg / "transformer", device=dev)
    scheduler = RectifiedFlowScheduler.from_pretrained(triposg, subfolder="scheduler")
    generator = torch.Generator(device=dev).manual_seed(seed)
    noise = torch.randn((1, num_tokens, dit.config["in_channels"]), generator=generator, device=dev)
    model = SplitGuidanceBatch(dit) if low_vram else dit
    with torch.inference_mode(), amp(dev, dtype), loop_threads(dev, 2 * num_tokens * int(dit.config["width"])):
        latent = scheduler.sample(
            model, noise, tokens.float(), num_inference_steps=steps, guidance_scale=STAGE0_GUIDANCE,
            callback=lambda i, t, x: ctx.progress("stage0", i + 1, steps, f"TripoSG step {i + 1}/{steps}"))
    latent = latent[0].float()
    del dit, model
    release_memory(dev)

    vae = ShapeVAE.from_pretrained(triposg / "vae", device=dev)
    chunk = LOW_VRAM_QUERY_CHUNK if low_vram else QUERY_CHUNK
    vertices, faces = extract_latent(
        vae, latent, dev=dev, dtype=dtype, resolution=resolution, chunk=chunk, should_cancel=ctx.should_cancel,
        progress=lambda s, n, msg: ctx.progress("stage0", steps, steps, f"extracting the anchor mesh: {msg}"))
    del vae
    release_memory(dev)
    if len(faces) == 0:
        raise BadInput("Stage 0 found no surface for the anchor frame (the generated field does not cross zero): "
                       "check that frame 0 shows the subject, or give a mesh with --mesh")
    ctx.progress("stage0", steps, steps, f"cleaning {len(faces):,} faces")
    vertices, faces = clean_anchor(vertices, faces, face_budget=face_budget)
    if len(faces) == 0:
        raise BadInput("Stage 0's mesh vanished in the clean-up (only tiny fragments); give a mesh with --mesh")
    return vertices, faces, latent


def stage1_latents(ctx: JobContext, denoiser, tokens, bank: Dict[int, "torch.Tensor"], *, num_frames: int, steps: int,
                   seed: int, dev: str, dtype, low_vram: bool):
    """Stage I: every frame's latent, window by window (chunk_from(0, T, 16, 15)); frames in
    `bank` (index -> [M, C]) are known. Returns (latents [T, M, C] float32, the windows)."""
    import torch

    from ..models.windows import chunk_from
    from ..schedulers import TemporalFlowScheduler

    size = int(getattr(denoiser, "temporal_context_size", WINDOW))
    windows = chunk_from(0, num_frames, size, min(SLIDE, size - 1))
    scheduler = TemporalFlowScheduler(num_inference_steps=steps)
    model = SplitGuidanceBatch(denoiser) if low_vram else denoiser
    shape = next(iter(bank.values())).shape
    total = len(windows) * steps
    for w, frames in enumerate(windows):
        known = [f in bank for f in frames]
        if all(known):
            continue
        cond = torch.stack([bank[f] if f in bank else torch.zeros(shape, device=dev) for f in frames])[None]
        mask = torch.tensor([known], dtype=torch.float32, device=dev)
        # Upstream seeds each window's noise with seed + window index.
        generator = torch.Generator(device=dev).manual_seed(seed + w)
        noise = torch.randn((1, len(frames)) + tuple(shape), generator=generator, device=dev)
        start = cond * mask[..., None, None] + noise * (1.0 - mask[..., None, None])
        framestep = torch.tensor([frames], dtype=torch.float32, device=dev)

        def report(i, t, x, w=w):
            ctx.progress("stage1", w * steps + i + 1, total,
                         f"window {w + 1}/{len(windows)} (frames {min(frames)}-{max(frames)}), step {i + 1}/{steps}")

        layer_values = 2 * len(frames) * (shape[0] + 1) * int(denoiser.config["width"])
        with torch.inference_mode(), amp(dev, dtype), loop_threads(dev, layer_values):
            out = scheduler.sample(model, start, tokens[frames][None].float(), mask, framestep,
                                   guidance_scale=STAGE1_GUIDANCE, callback=report)
        for f, latent in zip(frames, out[0]):
            bank.setdefault(f, latent.float())  # frames already made (or given) are kept, as upstream
    return torch.stack([bank[f] for f in range(num_frames)]), windows


def stage2_positions(ctx: JobContext, autoencoder, latents, anchor: AnchorMesh, *, dev: str, dtype,
                     low_vram: bool):
    """Stage II: the anchor's welded vertices tracked through every frame -> [T, Vw, 3] float64
    in the model's box."""
    import torch

    from ..models.temporal_autoencoder import vertex_normals

    xyz = torch.from_numpy(anchor.model_vertices).float().to(dev)
    faces = torch.from_numpy(anchor.model_faces).long().to(dev)
    queries = torch.cat([xyz, vertex_normals(xyz, faces)], dim=-1)
    size = int(autoencoder.temporal_context_size)
    tokens = size * (latents.shape[1] + 1)
    target_chunk = 1 if low_vram else max(1, STAGE2_TOKEN_BUDGET // tokens)
    query_chunk = LOW_VRAM_STAGE2_QUERY_CHUNK if low_vram else STAGE2_QUERY_CHUNK

    def report(i, count):
        ctx.progress("stage2", i, count, f"window {i + 1}/{count}: moving {len(xyz):,} vertices")

    with torch.inference_mode(), amp(dev, dtype):
        positions = autoencoder.predict_sequence(latents.to(dev), queries,
                                                 normals_fn=lambda x: vertex_normals(x, faces),
                                                 window=size, stride=min(SLIDE, size - 1), target_chunk=target_chunk,
                                                 query_chunk=query_chunk, callback=report)
    return positions.float().cpu().numpy().astype(np.float64)


# ------------------------------------------------------------------ writing


def _write_mesh_glb(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    import trimesh

    trimesh.Trimesh(vertices=np.asarray(vertices, dtype=np.float32), faces=faces, process=False).export(str(path))


def write_stage1_meshes(ctx: JobContext, folder: Path, vae, latents, anchor: AnchorMesh, *, dev: str, dtype,
                        resolution: int, chunk: int) -> int:
    """stage1/latents.npy and stage1/frame_XXXX.glb: each frame's Stage I latent, decoded."""
    from ..geometry import merge_vertices

    folder.mkdir()
    np.save(folder / "latents.npy", latents.float().cpu().numpy())
    count = len(latents)
    for t in range(count):
        ctx.progress("stage1-meshes", t, count, f"decoding frame {t}")
        v, f = extract_latent(vae, latents[t], dev=dev, dtype=dtype, resolution=resolution, chunk=chunk,
                              should_cancel=ctx.should_cancel)
        if len(f):
            v, f = merge_vertices(v, f)
        # In the output's coordinates, like the animation.
        _write_mesh_glb(folder / f"frame_{t:04d}.glb", np.asarray(v, np.float64) / anchor.scale + anchor.center, f)
    ctx.progress("stage1-meshes", count, count, "done")
    return count


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; an earlier result there is replaced."""
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def model_revisions(models_dir: Optional[str], names: Iterable[str]) -> dict:
    from ..hub import get_model, open_store

    store = open_store(models_dir)
    out = {}
    for name in names:
        status = store.status(get_model(name))
        out[name] = {"repo_id": status.spec.repo_id, "pinned_revision": status.spec.revision,
                     "found_revision": status.revision, "folder": str(status.folder), "state": status.state}
    return out


# ------------------------------------------------------------------ method "fit"


def missing_learned_models(models_dir: Optional[str]) -> List[str]:
    """The learned pipeline's models that are not stored whole, each with its state."""
    from ..hub import READY, get_model, open_store

    store = open_store(models_dir)
    out = []
    for name in LEARNED_MODELS:
        status = store.status(get_model(name))
        if status.state != READY:
            out.append(f"{name} ({status.state})")
    return out


def border_frames(rgba: np.ndarray, indices) -> List[int]:
    """Frames (numbered as the clip's source) whose mask reaches the image's edge: the object is
    cut off there, so its silhouette is not the whole object."""
    from ..fitting.evidence import ALPHA_THRESHOLD

    out = []
    for i, frame in enumerate(rgba):
        mask = frame[..., 3] > ALPHA_THRESHOLD
        if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
            out.append(int(indices[i]))
    return out


def refine_by_fitting(ctx: JobContext, anchor, offsets: np.ndarray, rgba: np.ndarray, camera, seed: int,
                      warnings: List[str]):
    """Method "auto": the learned offsets as each frame's starting pose for fit_video on the
    uncropped frames (same terms as --method fit). -> (fitted offsets, the report's "fit" entry)."""
    from ..fitting.fit import FitSettings, fit_video

    settings = FitSettings(seed=seed)
    fitted = fit_video(anchor.vertices, anchor.faces, rgba, camera=camera, settings=settings, init_offsets=offsets,
                       progress=lambda i, n, msg: ctx.progress("fit", i, n, msg), should_cancel=ctx.should_cancel)
    if fitted.camera_iou < LOW_CAMERA_IOU:
        warnings.append(f"the mesh covers the object in frame 0 poorly even after placing the camera "
                        f"(silhouette IoU {fitted.camera_iou:.2f} < {LOW_CAMERA_IOU}): the fit's refinement may "
                        "be wrong")
    if not np.isfinite(fitted.offsets).all():
        raise RuntimeError("the fit produced non-finite vertex positions")
    return fitted.offsets, {
        "camera_used": fitted.camera.to_dict(), "camera_estimated": fitted.camera_estimated,
        "camera_iou": fitted.camera_iou, "per_frame": fitted.report,
        "iou_after": round(float(np.mean([r["iou_after"] for r in fitted.report])), 4),
        "settings": dataclasses.asdict(settings), "seconds": {k: round(v, 3) for k, v in fitted.seconds.items()}}


def _run_fit(ctx: JobContext, *, input, out_dir: Path, mesh: Optional[str], camera: Optional[str],
             masks: Optional[str], start: int, frames: Optional[int], stride: int, fps: Optional[float], seed: int,
             device: str, models_dir: Optional[str], warnings: List[str], started: float) -> dict:
    """Method "fit": the given mesh made to follow the frames' object (backend.fitting.fit_video),
    on the CPU, with no learned weights (RMBG-1.4 only when frames lack alpha and --masks, as in
    the learned pipeline). Writes what the learned pipeline writes, plus camera.json."""
    from ..fitting import camera as fit_camera
    from ..fitting.fit import FitSettings, fit_video
    from ..gltf_export import write_animated_glb
    from ..io import read_frames
    from ..meshio import MAX_REFERENCE_VERTICES, load_mesh, write_animation_npz

    if mesh is None:
        raise BadInput("--method fit animates a given mesh: pass --mesh FILE (the object in frame 0's pose)")
    given_camera = fit_camera.Camera.load(camera) if camera is not None else None
    ctx.progress("prepare", 0, 1, f"reading {input if isinstance(input, (str, Path)) else 'the frames'}")
    clip = read_frames(input, start=start, frames=frames, stride=stride, fps=fps)
    warnings += clip.notes
    count = len(clip)
    if count < 2:
        raise BadInput(f"fitting follows motion: it needs at least 2 frames, {clip.source} gave {count}")
    anchor_mesh = load_mesh(mesh, role="mesh")
    if len(anchor_mesh.vertices) > MAX_REFERENCE_VERTICES:
        raise BadInput(f"mesh has {len(anchor_mesh.vertices):,} vertices; the limit is {MAX_REFERENCE_VERTICES:,}. "
                       "Decimate it first")
    from ..io.surface import load_surface_attributes

    surface = load_surface_attributes(mesh, anchor_mesh)  # its UVs and material, for animated.glb
    warnings += surface.warnings
    # The frames' own alpha, else --masks, else RMBG where stored: the same rules as the learned
    # pipeline (fully transparent frames are refused there, by number).
    rgba = frames_with_alpha(ctx, clip, masks, models_dir, pick_device(device), warnings)
    cut = border_frames(rgba, clip.indices)
    if cut:
        warnings.append(f"the object touches the image's edge in frame(s) {', '.join(map(str, cut[:12]))}"
                        f"{' ...' if len(cut) > 12 else ''}: its silhouette is cut off there, so the fit "
                        "may pull the mesh into the frame")
    ctx.progress("prepare", 1, 1, f"{count} frames, {rgba.shape[2]}x{rgba.shape[1]}")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        settings = FitSettings(seed=seed)
        fitted = fit_video(anchor_mesh.vertices, anchor_mesh.faces, rgba, camera=given_camera, settings=settings,
                           progress=lambda i, n, msg: ctx.progress("fit", i, n, msg),
                           should_cancel=ctx.should_cancel)
        offsets = fitted.offsets
        if not np.isfinite(offsets).all():
            raise RuntimeError("the fit produced non-finite vertex positions")
        if fitted.camera_iou < LOW_CAMERA_IOU:
            warnings.append(f"the mesh covers the object in frame 0 poorly even after placing the camera "
                            f"(silhouette IoU {fitted.camera_iou:.2f} < {LOW_CAMERA_IOU}): the mesh may not be "
                            "the object in the frames, or not in frame 0's pose"
                            + ("" if given_camera is None else ", or the camera does not match the frames"))
        iou_before = float(np.mean([r["iou_before"] for r in fitted.report]))
        iou_after = float(np.mean([r["iou_after"] for r in fitted.report]))
        if iou_after < iou_before:
            warnings.append(f"the fitted mesh matches the silhouettes worse than the still mesh (mean IoU "
                            f"{iou_after:.3f} vs {iou_before:.3f}); check the mesh, the masks and the camera")

        vertices, faces = anchor_mesh.vertices, anchor_mesh.faces
        ctx.progress("write", 0, 4, "writing animation.npz")
        name = Path(mesh).stem
        write_animation_npz(tmp / "animation.npz", vertices, faces, offsets, clip.fps)
        ctx.progress("write", 1, 4, "writing animated.glb")
        write_animated_glb(tmp / "animated.glb", vertices, faces, offsets, clip.fps, name=name,
                           uv=surface.uv, material=surface.material, normals=True)
        ctx.progress("write", 2, 4, "writing anchor.glb and camera.json")
        _write_mesh_glb(tmp / "anchor.glb", vertices, faces)
        camera_dict = fitted.camera.to_dict()
        (tmp / "camera.json").write_text(json.dumps(camera_dict, indent=1) + "\n")
        result = {
            "out": str(out_dir), "method": "fit", "animation": str(out_dir / "animation.npz"),
            "glb": str(out_dir / "animated.glb"), "anchor": str(out_dir / "anchor.glb"),
            "camera": str(out_dir / "camera.json"), "report": str(out_dir / "report.json"),
            "frames": count, "vertices": int(len(vertices)), "faces": int(len(faces)), "fps": clip.fps,
            "device": "cpu", "camera_estimated": fitted.camera_estimated,
            "camera_iou": round(fitted.camera_iou, 4), "iou_before": round(iou_before, 4),
            "iou_after": round(iou_after, 4), "seconds": round(time.monotonic() - started, 3), "warnings": warnings,
        }
        report = {
            "kind": REPORT_KIND, "command": "generate", "method": "fit",
            "input": {"source": clip.source, "indices": clip.indices, "source_fps": clip.source_fps,
                      "source_frames": clip.source_frames, "fps": clip.fps},
            "settings": {"mesh": mesh, "camera": camera, "masks": masks, "start": start, "frames": frames,
                         "stride": stride, "seed": seed, "fit": dataclasses.asdict(settings)},
            "camera_used": camera_dict, "camera_estimated": fitted.camera_estimated,
            "camera_iou": fitted.camera_iou, "per_frame": fitted.report,
            "fit_seconds": {k: round(v, 3) for k, v in fitted.seconds.items()},
            **{k: v for k, v in result.items() if k not in ("warnings", "camera")},
            "warnings": warnings,
        }
        report["seconds"] = round(time.monotonic() - started, 3)
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        ctx.check_cancel()
        _publish(tmp, out_dir)
        ctx.progress("write", 4, 4, f"done: {out_dir}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


# ------------------------------------------------------------------ the job


def run_generate(ctx: JobContext, *, input, out: str, mesh: Optional[str] = None, known=(), loop: bool = False,
                 masks: Optional[str] = None, start: int = 0, frames: Optional[int] = None, stride: int = 1,
                 fps: Optional[float] = None, seed: int = 44, device: str = "auto", fast: bool = False,
                 low_vram: bool = False, models_dir: Optional[str] = None, stage1_meshes: bool = False,
                 stage0_steps: Optional[int] = None, stage1_steps: Optional[int] = None,
                 resolution: Optional[int] = None, face_budget: int = FACE_BUDGET,
                 method: str = "learned", camera: Optional[str] = None) -> dict:
    """Video (a file, a folder of frames, or an array [T, H, W, 3|4]) -> animated mesh in `out`.

    `method`: "learned" (ActionMesh's models), "fit" (fit `mesh` to the frames' silhouettes and
    optical flow, no weights; `camera` a camera.json, else the camera is estimated), "auto"
    (the learned result refined by fitting when its models are all stored, else fit with a warning
    naming what is missing).

    See the module docstring for the method. `known`: keyframes FRAME=MESH (frame numbers count
    the selected frames, 0-based; frame 0 is the anchor, give it with `mesh`); with `mesh` they
    share its coordinates, without it each is normalised on its own. stage0_steps, stage1_steps,
    resolution (extraction grid) and face_budget override the release's settings (as its
    pipeline's overrides do); resolution None is the model set's own default (MODEL_SET_DEFAULTS_KEY)
    where it has one, else the release's 512; report.json's settings_sources says where each came
    from. Returns the output paths and a summary; report.json has the rest.
    """
    import torch

    from ..gltf_export import write_animated_glb
    from ..hub import require
    from ..io import read_frames
    from ..meshio import MAX_REFERENCE_VERTICES, load_mesh, write_animation_npz
    from ..models.dit import TemporalDenoiser
    from ..models.image_encoder import ImageEncoder
    from ..models.temporal_autoencoder import TemporalAutoencoder
    from ..models.vae import ShapeVAE
    from ..preprocessing import prepare_frames

    started = time.monotonic()
    warnings: List[str] = []
    # -- arguments, before anything is read or loaded
    seed = _check_int("seed", seed, 0)
    if method not in METHODS:
        raise BadInput(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    refine = False  # auto with the models stored: the learned result, then fitted to the frames
    if method == "auto":
        missing = missing_learned_models(models_dir)
        if not missing:
            method, refine = "learned", True
        elif mesh is not None and not known and not loop:
            warnings.append(f"the learned models are absent ({', '.join(missing)}; python -m backend models "
                            "download): animated the mesh by video-guided fitting instead (--method fit)")
            method = "fit"
        else:
            method = "learned"  # nothing to fit without a mesh: the learned path names what to fetch
    if method == "fit":
        if known or loop:
            raise BadInput("--known and --loop are for the learned method; --method fit follows the frames only")
        out_dir = Path(out).expanduser()
        check_output_folder(out_dir)
        return _run_fit(ctx, input=input, out_dir=out_dir, mesh=mesh, camera=camera, masks=masks, start=start,
                        frames=frames, stride=stride, fps=fps, seed=seed, device=device, models_dir=models_dir,
                        warnings=warnings, started=started)
    fit_camera = None
    if camera is not None and not refine:
        warnings.append("--camera is used by --method fit and auto only; the learned pipeline ignored it")
    elif camera is not None and mesh is None:
        # A generated anchor lives in the model's box, not in the coordinates a camera.json names.
        warnings.append("--camera needs --mesh (its coordinates); the camera was estimated from frame 0 instead")
    elif camera is not None:
        from ..fitting.camera import Camera

        fit_camera = Camera.load(camera)
    s0 = _check_int("stage0_steps", stage0_steps, 1) if stage0_steps is not None else (
        FAST_STAGE0_STEPS if fast else STAGE0_STEPS)
    s1 = _check_int("stage1_steps", stage1_steps, 1) if stage1_steps is not None else (
        FAST_STAGE1_STEPS if fast else STAGE1_STEPS)
    sources = {"stage0_steps": "argument" if stage0_steps is not None else "release --fast" if fast else "release",
               "stage1_steps": "argument" if stage1_steps is not None else "release --fast" if fast else "release",
               "face_budget": "release" if face_budget == FACE_BUDGET else "argument"}
    if resolution is not None:
        resolution = _check_int("resolution", resolution, 16)
        sources["resolution"] = "argument"
    face_budget = _check_int("face_budget", face_budget, 4)
    out_dir = Path(out).expanduser()
    check_output_folder(out_dir)
    keyframes = parse_known(known)
    dev = pick_device(device)
    dtype = autocast_dtype(dev)

    # -- the models: all present and whole, or a MissingModel naming what to fetch
    folders = {"actionmesh": require("actionmesh", models_dir), "dinov2": require("dinov2", models_dir),
               "triposg": require("triposg", models_dir)}
    denoiser_config = TemporalDenoiser.config_from_file(folders["actionmesh"] / "denoiser" / "config.json")
    num_tokens = int(denoiser_config.get("num_tokens_nominal", 2048))
    sources["latent_tokens"] = ("model set: denoiser/config.json num_tokens_nominal"
                                if "num_tokens_nominal" in denoiser_config else "release")
    if resolution is None:
        own = model_set_defaults(folders["triposg"]).get("resolution")
        if own is not None:
            resolution = _check_int(f"{MODEL_SET_DEFAULTS_KEY}.resolution of the model set", own, 16)
            sources["resolution"] = f"model set: TripoSG model_index.json {MODEL_SET_DEFAULTS_KEY}"
        else:
            resolution, sources["resolution"] = EXTRACT_RESOLUTION, "release"

    # -- the clip
    ctx.progress("prepare", 0, 1, f"reading {input if isinstance(input, (str, Path)) else 'the frames'}")
    clip = read_frames(input, start=start, frames=frames, stride=stride, fps=fps)
    warnings += clip.notes
    count = len(clip)
    bad = sorted(k for k in keyframes if not 0 < k < count)
    if bad:
        raise BadInput(f"--known frame(s) {', '.join(map(str, bad))} are outside the clip's frames 1..{count - 1} "
                       "(frame 0 is the anchor: give its mesh with --mesh)")
    if loop and (count - 1) in keyframes:
        raise BadInput(f"--loop sets the last frame ({count - 1}) to the first; it cannot also be a --known frame")
    anchor_mesh = load_mesh(mesh, role="mesh") if mesh is not None else None
    if anchor_mesh is not None and len(anchor_mesh.vertices) > MAX_REFERENCE_VERTICES:
        raise BadInput(f"mesh has {len(anchor_mesh.vertices):,} vertices; the limit is {MAX_REFERENCE_VERTICES:,}. "
                       "Decimate it first")
    surface = None  # mesh mode: the mesh's UVs and material, for animated.glb
    if anchor_mesh is not None:
        from ..io.surface import load_surface_attributes

        surface = load_surface_attributes(mesh, anchor_mesh)
        warnings += surface.warnings
    known_meshes = {k: load_mesh(p, role=f"known frame {k} mesh") for k, p in sorted(keyframes.items())}
    rgba = frames_with_alpha(ctx, clip, masks, models_dir, dev, warnings)
    prepared = prepare_frames(rgba).frames
    ctx.progress("prepare", 1, 1, f"{count} frames, {prepared.shape[2]}x{prepared.shape[1]} after cropping")

    # -- from here on everything goes to a hidden sibling folder, published at the end
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    meter = StageMeter(dev)
    try:
        bank: Dict[int, torch.Tensor] = {}
        # Stage 0: the anchor mesh and its latent, and the keyframes' latents (the VAE is loaded once).
        with meter("stage0"):
            if anchor_mesh is None:
                gv, gf, anchor_latent = generate_anchor(
                    ctx, folders["triposg"], prepared[0], dev=dev, dtype=dtype, steps=s0, num_tokens=num_tokens,
                    seed=seed, low_vram=low_vram, resolution=resolution, face_budget=face_budget)
                anchor = anchor_in_model_space(gv, gf)
            else:
                anchor = anchor_from_mesh(anchor_mesh.vertices, anchor_mesh.faces, str(mesh))
            vae = None
            if anchor_mesh is not None or known_meshes or stage1_meshes:
                vae = ShapeVAE.from_pretrained(folders["triposg"] / "vae", device=dev)
            if anchor_mesh is not None:
                ctx.progress("stage0", 0, 1,
                             f"encoding {Path(mesh).name} ({len(anchor.model_vertices):,} welded vertices)")
                bank[0] = encode_mesh(vae, anchor.model_vertices, anchor.model_faces, seed=seed, device=dev,
                                      num_tokens=num_tokens)
            else:
                bank[0] = anchor_latent  # TripoSG's own latent, as upstream
            for k, m in known_meshes.items():
                ctx.progress("stage0", 0, 1, f"encoding the keyframe of frame {k} ({Path(m.source).name})")
                if anchor_mesh is not None:  # the keyframe lives in the anchor's coordinates
                    kv, kf, _ = weld((m.vertices - anchor.center) * anchor.scale, m.faces)
                    if np.abs(kv).max() > 1.05:
                        warnings.append(f"the keyframe of frame {k} reaches outside the anchor mesh's box "
                                        f"({np.abs(kv).max():.2f} in the model's [-1, 1] units); the model "
                                        "only saw shapes inside it")
                else:  # no coordinates to share with a generated anchor: normalised on its own
                    own = anchor_from_mesh(m.vertices, m.faces, m.source)
                    kv, kf = own.model_vertices, own.model_faces
                bank[k] = encode_mesh(vae, kv, kf, seed=seed, device=dev, num_tokens=num_tokens)
            if loop:
                bank[count - 1] = bank[0].clone()
            known_frames = list(bank)
            if not stage1_meshes:
                vae = None  # the last reference: freed with the stage
            release_memory(dev)
        ctx.check_cancel()

        with meter("image_tokens"):
            ctx.progress("tokens", 0, 1, f"DINOv2 tokens of {count} frames")
            encoder = ImageEncoder(folders["dinov2"], device=dev)
            _, tokens = encoder.encode(prepared)
            del encoder
            release_memory(dev)
            ctx.progress("tokens", 1, 1, f"{tuple(tokens.shape)}")

        with meter("stage1"):
            denoiser = TemporalDenoiser.from_pretrained(folders["actionmesh"] / "denoiser", device=dev)
            if low_vram:
                denoiser.clear_autocast = True  # the release's lowram preset
            latents, windows = stage1_latents(ctx, denoiser, tokens, bank, num_frames=count, steps=s1, seed=seed,
                                              dev=dev, dtype=dtype, low_vram=low_vram)
            del denoiser
            release_memory(dev)

        with meter("stage2"):
            autoencoder = TemporalAutoencoder.from_pretrained(folders["actionmesh"] / "autoencoder", device=dev)
            positions = stage2_positions(ctx, autoencoder, latents, anchor, dev=dev, dtype=dtype, low_vram=low_vram)
            del autoencoder
            release_memory(dev)
            ctx.progress("stage2", 1, 1, "done")

        # Model box -> the output's coordinates and vertices. Offsets are differences, so frame 0
        # is exactly the anchor and the motion is scaled back exactly.
        per_vertex = positions[:, anchor.vertex_map]
        offsets = (per_vertex - per_vertex[:1]) / anchor.scale
        if not np.isfinite(offsets).all():
            raise RuntimeError("Stage II produced non-finite vertex positions")
        fit_summary = None
        if refine:
            with meter("fit"):
                offsets, fit_summary = refine_by_fitting(ctx, anchor, offsets, rgba, fit_camera, seed, warnings)
            (tmp / "camera.json").write_text(json.dumps(fit_summary["camera_used"], indent=1) + "\n")

        if stage1_meshes:
            with meter("stage1_meshes"):
                write_stage1_meshes(ctx, tmp / "stage1", vae, latents, anchor, dev=dev, dtype=dtype,
                                    resolution=resolution, chunk=LOW_VRAM_QUERY_CHUNK if low_vram else QUERY_CHUNK)
                del vae
                release_memory(dev)

        ctx.progress("write", 0, 3, "writing animation.npz")
        name = Path(mesh).stem if mesh else "ActionMesh"
        write_animation_npz(tmp / "animation.npz", anchor.vertices, anchor.faces, offsets, clip.fps)
        ctx.progress("write", 1, 3, "writing animated.glb")
        write_animated_glb(tmp / "animated.glb", anchor.vertices, anchor.faces, offsets, clip.fps, name=name,
                           uv=getattr(surface, "uv", None), material=getattr(surface, "material", None),
                           normals=surface is not None)
        ctx.progress("write", 2, 3, "writing anchor.glb")
        _write_mesh_glb(tmp / "anchor.glb", anchor.vertices, anchor.faces)
        result = {
            "out": str(out_dir), "animation": str(out_dir / "animation.npz"), "glb": str(out_dir / "animated.glb"),
            "anchor": str(out_dir / "anchor.glb"), "report": str(out_dir / "report.json"),
            "frames": count, "vertices": int(len(anchor.vertices)), "faces": int(len(anchor.faces)),
            "fps": clip.fps, "device": dev, "seconds": round(time.monotonic() - started, 3), "warnings": warnings,
        }
        if fit_summary is not None:
            result.update(method="auto", camera=str(out_dir / "camera.json"),
                          camera_estimated=fit_summary["camera_estimated"], iou_after=fit_summary["iou_after"])
        report = {
            "kind": REPORT_KIND, "command": "generate",
            "input": {"source": clip.source, "indices": clip.indices, "source_fps": clip.source_fps,
                      "source_frames": clip.source_frames, "fps": clip.fps},
            "settings": {"mesh": mesh, "known": {str(k): v for k, v in keyframes.items()}, "loop": loop,
                         "masks": masks, "start": start, "frames": frames, "stride": stride, "fast": fast,
                         "low_vram": low_vram, "stage0": "mesh" if mesh else "triposg",
                         "stage0_steps": None if mesh else s0, "stage0_guidance": None if mesh else STAGE0_GUIDANCE,
                         "stage1_steps": s1, "stage1_guidance": STAGE1_GUIDANCE, "windows": windows,
                         "known_frames": sorted(int(k) for k in known_frames),
                         "surface_points": SURFACE_POINTS, "latent_tokens": num_tokens, "resolution": resolution,
                         "face_budget": face_budget, "floater_fraction": FLOATER_FRACTION,
                         "stage1_meshes": stage1_meshes},
            "settings_sources": sources,
            "seed": seed, "device": dev, "autocast": str(dtype).replace("torch.", "") if dtype else None,
            "models": model_revisions(models_dir, folders),
            "normalization": {"center": anchor.center.tolist(), "scale": anchor.scale},
            "stages": meter.stages, **{k: v for k, v in result.items() if k not in ("warnings",)},
            "warnings": warnings,
        }
        if fit_summary is not None:
            report["method"] = "auto"
            report["fit"] = fit_summary
        report["seconds"] = round(time.monotonic() - started, 3)
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        ctx.check_cancel()
        _publish(tmp, out_dir)
        ctx.progress("write", 3, 3, f"done: {out_dir}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result["stages"] = meter.stages
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
