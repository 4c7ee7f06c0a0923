"""Stage 0 of the generate job: the anchor mesh (frame 0) and its shape latent.

    no --mesh: TripoSG. DINOv2 tokens of TripoSG's own encoder, rectified-flow sampling (100
      steps, guidance 7.5, as ActionMesh's stage-0 setting; --fast 50), the VAE's field
      extracted coarse-to-fine, then the release's clean-up: merge vertices, quadric decimation
      to 40k faces (fast_simplification), components under 2 % of the largest dropped.
    --mesh FILE: the given mesh, welded (UV seams split vertices that are one point of the
      surface), normalised to [-1, 1] (bounding-box centre, longest side 2: the release's
      normalize_mesh), 16,384 surface samples with normals encoded by the VAE.
    --known FRAME=MESH keyframes are encoded like --mesh (in the anchor mesh's coordinates when
      there is one), and with --loop the last frame's latent is frame 0's.

With --mesh the result is on the given mesh's own vertices, in its order and coordinates (the
welded copy only feeds the models), so UVs and materials of the original carry over.

What we learned from the upstream code (facebookresearch/actionmesh, read, not copied):
pipeline_with_3d.py (merge, normalise, 16,384 samples, posterior sample; de-normalise and
un-merge the result), preprocessing/mesh_processor.py (merge -> decimate to 40k -> floaters
under 2 %), configs/actionmesh*.yaml (100 steps, 50 fast; guidance 7.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

from ...errors import BadInput, Unsupported
from ...geometry.weld import weld
from ...jobs import JobContext
from .runtime import SplitGuidanceBatch, amp, load_flow_transformer, loop_threads, release_memory

# ------------------------------------------------------------------ the release's settings

STAGE0_STEPS, FAST_STAGE0_STEPS = 100, 50
STAGE0_GUIDANCE = 7.5
FACE_BUDGET = 40_000
FLOATER_FRACTION = 0.02
SURFACE_POINTS = 16_384
# The release extracts at octree depth 9 in +-1.005: 512 cells per axis, nominally. (Its flash
# extraction actually refines 63 -> 126 -> 252 -> 504 cells and then divides by 512, so its mesh
# comes out scaled by 504/512 towards the -1.005 corner: 0.016 off at the centre. We extract on a
# true 512 grid, where the field's surface is, and do not copy that.)
EXTRACT_RESOLUTION = 512
EXTRACT_BOUNDS = 1.005

# Ours: memory bounds.
QUERY_CHUNK, LOW_VRAM_QUERY_CHUNK = 65_536, 16_384  # points per VAE field query


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
    from ...geometry import normalization_for

    try:
        transform = normalization_for(vertices, margin=0.0)
    except ValueError as exc:
        raise BadInput(f"mesh {Path(source).name or ''}: {exc}") from exc
    from ...geometry.orient import orient_faces

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

    from ...geometry import sample_surface
    from ...geometry.orient import orient_faces

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

    from ...geometry import extract_mesh

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
    from ...geometry import merge_vertices, remove_floaters

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


# ------------------------------------------------------------------ Stage 0


def generate_anchor(ctx: JobContext, triposg: Path, frame, *, dev: str, dtype, steps: int, num_tokens: int,
                    seed: int, low_vram: bool, resolution: int, face_budget: int):
    """Stage 0: TripoSG on the prepared anchor frame -> (vertices, faces) of the cleaned mesh in the
    model's box, and the sampled latent [M, C] it was extracted from (Stage I's frame 0)."""
    import torch

    from ...models.dit import ShapeDiT
    from ...models.image_encoder import ImageEncoder
    from ...models.vae import ShapeVAE
    from ...schedulers import RectifiedFlowScheduler

    ctx.progress("stage0", 0, steps, "DINOv2 tokens of the anchor frame (TripoSG's encoder)")
    encoder = ImageEncoder.from_triposg(triposg, device=dev)
    _, tokens = encoder.encode(frame[None])
    del encoder
    release_memory(dev)

    dit = load_flow_transformer(ShapeDiT, triposg / "transformer", dev=dev, dtype=dtype, low_vram=low_vram)
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


def stage0(ctx: JobContext, triposg: Path, frame, *, given, mesh: Optional[str], known_meshes: Mapping,
           loop: bool, num_frames: int, keep_vae: bool, dev: str, dtype, steps: int, num_tokens: int, seed: int,
           low_vram: bool, resolution: int, face_budget: int, warnings: List[str]):
    """Stage 0 with the keyframes (the VAE is loaded once): the anchor (TripoSG's on `frame`, or the
    `given` mesh loaded from `mesh`) and the bank of known latents {frame: [M, C]} (frame 0, the
    --known keyframes, with `loop` the last frame). -> (anchor, bank, the VAE when `keep_vae`)."""
    from ...models.vae import ShapeVAE

    bank: Dict[int, object] = {}
    if given is None:
        gv, gf, anchor_latent = generate_anchor(
            ctx, triposg, frame, dev=dev, dtype=dtype, steps=steps, num_tokens=num_tokens,
            seed=seed, low_vram=low_vram, resolution=resolution, face_budget=face_budget)
        anchor = anchor_in_model_space(gv, gf)
    else:
        anchor = anchor_from_mesh(given.vertices, given.faces, str(mesh))
    vae = None
    if given is not None or known_meshes or keep_vae:
        vae = ShapeVAE.from_pretrained(triposg / "vae", device=dev)
    if given is not None:
        ctx.progress("stage0", 0, 1,
                     f"encoding {Path(mesh).name} ({len(anchor.model_vertices):,} welded vertices)")
        bank[0] = encode_mesh(vae, anchor.model_vertices, anchor.model_faces, seed=seed, device=dev,
                              num_tokens=num_tokens)
    else:
        bank[0] = anchor_latent  # TripoSG's own latent, as upstream
    for k, m in known_meshes.items():
        ctx.progress("stage0", 0, 1, f"encoding the keyframe of frame {k} ({Path(m.source).name})")
        if given is not None:  # the keyframe lives in the anchor's coordinates
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
        bank[num_frames - 1] = bank[0].clone()
    if not keep_vae:
        vae = None  # the last reference: freed with the stage
    release_memory(dev)
    return anchor, bank, vae
