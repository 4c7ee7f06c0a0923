"""Registration with the learned Stage II model ("learned"), and its refined variant ("learned-optimize").

"learned": every frame's own mesh is sampled (points + normals) and encoded by the frozen shape
VAE (posterior mode) into that frame's latents; the reference's vertices (xyz + vertex normals)
are the queries at frame 0, and the temporal autoencoder tracks them through all frames with
its sliding windows (`TemporalAutoencoder.predict_sequence`: 16 frames sliding by 15, any length).
This is ActionMesh's Stage II with mesh frames as input instead of generated latents.

Normalisation: ONE transform for the whole sequence, as the Stage II training data is made
(backend.synthetic.dataset.make_sequence_sample normalises the union of all frames' vertices:
bounding-box centre to the origin, largest half-extent to a random 0.90-0.95). Here the union of
all frames AND the reference (the queries must lie in the box too) goes to a half-extent of
0.925, the middle of that range, the same margin `reconstruct` uses for the shape VAE. Per-frame
normalisation would turn global motion (a jump, a walk) into a different shape each frame, which
the model never saw.

The model places the reference at frame 0 as it is (offsets[0] = 0): it assumes the reference is
in the pose of the first frame. "learned-optimize" refines every frame with ARAP/ICP (as many iterations as
"optimize" alone) starting from the learned prediction, or from the previous frame's refined
result where that fits the frame better (register_optimize's `init_offsets`, `init_mode="better"`),
and keeps, per frame, whichever of {learned, refined} lies closer to that frame's surface
(two-way mean distance, backend.registration.quality), so it is never worse than "learned" by
that measure, and equals "optimize" where the learned guesses never fit better.

Safeguards, as for "optimize": faces are re-wound outward before any normal is taken (the
model reads surface normals), and a learned frame is kept only if it fits its frame's surface
at least as well as the reference left in place (quality.hold_back_worse).
"""

from __future__ import annotations

import numpy as np

from backend.errors import BadInput, Cancelled, Unsupported
from backend.geometry.orient import orient_faces
from backend.geometry.weld import weld as weld_vertices

from .optimize import DEFAULT_ITERATIONS, check_inputs, register_optimize
from .quality import DEFAULT_SAMPLES, TargetSamples, hold_back_worse

# Largest half-extent of the whole sequence after normalisation = 1 - margin = 0.925.
SEQUENCE_MARGIN = 0.075
DEFAULT_SURFACE_POINTS = 2048  # backend.train.stage2 --surface-points default
QUERY_CHUNK = 16384  # reference vertices per cross-attention call
# Tokens per self-attention pass (target frames x T x (M + 1)): the whole 16-frame window at
# once for the tiny model (16 x 16 x 33 = 8,448 tokens; 3x faster on CPU than 4 at a time), a
# few target frames at a time for the official one (2,048 tokens per frame).
TOKEN_BUDGET = 32_768
# "learned-optimize" refines with as many iterations as "optimize" runs alone: given a useless guess it then
# falls back to exactly optimize's frame-to-frame result (init_mode="better"), so it is never
# worse than "optimize"; with (3, 3) it came out 1.08x worse in the benchmark.
REFINE_ITERATIONS = DEFAULT_ITERATIONS
QUERY_NODES = 1024  # reference points the model tracks; the other vertices follow them
ENCODE_BATCH = 16  # frames per VAE call


def sequence_normalization(ref_vertices, frames):
    """One Normalization for the reference and every frame (union of their bounding boxes)."""
    from backend.geometry.sampling import normalization_for

    corners = [ref_vertices.min(0), ref_vertices.max(0)]
    for fv, _ in frames:
        corners += [fv.min(0), fv.max(0)]
    try:
        return normalization_for(np.stack(corners), margin=SEQUENCE_MARGIN)
    except ValueError as exc:
        raise BadInput(f"cannot normalise the sequence: {exc}") from None


def register_learned(ref_vertices, ref_faces, frames, *, vae, autoencoder, num_latents: int,
                     surface_points: int = DEFAULT_SURFACE_POINTS, device="cpu", progress=None,
                     should_cancel=None, seed: int = 0, query_chunk: int = QUERY_CHUNK,
                     target_chunk: int | None = None, query_nodes: int | None = QUERY_NODES,
                     fit_report: list | None = None, hold_back: bool = True) -> np.ndarray:
    """Offsets [T,V,3] float32 such that ref_vertices + offsets[t] follows frames[t] (offsets[0] = 0).

    vae: a ShapeVAE, autoencoder: a TemporalAutoencoder (both moved to `device` and set to eval);
    num_latents / surface_points: tokens per frame and surface samples per frame, as the
    autoencoder was trained with (its training.json). frames: (vertices, faces) pairs of any
    topology. Vertices sharing a position (UV/normal seams) are welded and moved together.
    progress(step, total, message): once per sampled frame, then once per window.
    should_cancel(): polled between frames and between windows; raises Cancelled. References with more than `query_nodes` vertices are tracked at that many
    nodes spread over the surface, each vertex following its 4 nearest (None: every vertex).
    Memory stays bounded for large references: queries go through the cross-attention
    `query_chunk` at a time, targets through the self-attention `target_chunk` at a time
    (default: as many as fit TOKEN_BUDGET).
    fit_report: optional list; one dict per frame is appended (surface fit of the reference left
    in place and of the kept result; a frame the model fits worse than that is held back).
    hold_back=False returns the model's raw prediction for every frame (and reports nothing).
    """
    import torch

    from backend.models.temporal_autoencoder import vertex_normals, window_plan

    from .proxy import Blender, pick_nodes

    def check():
        if should_cancel is not None and should_cancel():
            raise Cancelled()

    ref_v, ref_f, frames = check_inputs(ref_vertices, ref_faces, frames)
    if vae.config["latent_channels"] != autoencoder.config["latent_channels"]:
        raise Unsupported(f"the shape VAE makes {vae.config['latent_channels']}-channel latents but the Stage II "
                          f"model expects {autoencoder.config['latent_channels']}: they were not trained together")
    norm = sequence_normalization(ref_v, frames)
    check()

    # Weld coincident vertices, as register_optimize does.
    rest = norm.apply(ref_v)
    rest_w, faces_w, weld = weld_vertices(rest, ref_f)
    if len(faces_w):
        faces_w = orient_faces(rest_w, faces_w)
    check()

    vae = vae.to(device).eval()
    autoencoder = autoencoder.to(device).eval()
    window = int(autoencoder.temporal_context_size)
    if target_chunk is None:
        target_chunk = max(1, min(window, TOKEN_BUDGET // (window * (num_latents + 1))))
    n_frames = len(frames)
    n_windows = len(window_plan(n_frames, window, window - 1))
    total = n_frames + n_windows

    with torch.no_grad():
        sampled = (lambda t: progress(t, total, f"sampled frame {t}/{n_frames}")) if progress else None
        latents, anchors = _encode_frames(vae, frames, norm, num_latents, surface_points, seed, device,
                                          progress=sampled, check=check)

        # The model's cost is its read-out, per query point and target frame: large references
        # are tracked at `query_nodes` surface nodes and every vertex follows its nearest nodes
        # (a smooth displacement field loses little; the per-vertex detail is what "learned-optimize" refines).
        faces_t = torch.from_numpy(faces_w).to(device) if len(faces_w) else None
        xyz_all = torch.from_numpy(rest_w.astype(np.float32)).to(device)
        nodes = None  # indices of the tracked vertices (None: all of them)
        if query_nodes and len(rest_w) > query_nodes:
            picked = pick_nodes(rest_w, query_nodes, np.random.default_rng(seed), check)
            blender = Blender(rest_w, rest_w[picked], check)
            nodes = torch.from_numpy(picked).to(device)
            blend_idx = torch.from_numpy(blender.idx).to(device)
            blend_w = torch.from_numpy(blender.w).to(device)

        def spread(node_positions):  # [T, N, 3] node positions -> [T, Vw, 3] vertex positions
            if nodes is None:
                return node_positions
            moved = node_positions - node_positions[:1]  # displacement since frame 0
            # Frame by frame: [V, 4, 3] at a time stays small for million-vertex references.
            return torch.stack([xyz_all + torch.einsum("vk,vkc->vc", blend_w, m[blend_idx]) for m in moved])

        def normals_fn(x):  # the queries' normals at positions x, from the deformed mesh
            if faces_t is None:
                return torch.zeros_like(x)
            if nodes is None:
                return vertex_normals(x, faces_t)
            return vertex_normals(spread(torch.stack([xyz_all[nodes], x]))[1], faces_t)[nodes]

        normals = vertex_normals(xyz_all, faces_t) if faces_t is not None else torch.zeros_like(xyz_all)
        queries = torch.cat([xyz_all, normals], -1)
        if nodes is not None:
            queries = queries[nodes]

        def callback(i, count):
            check()
            if progress is not None and i:
                progress(n_frames + i, total, f"predicted window {i}/{count}")

        positions = autoencoder.predict_sequence(latents, queries, normals_fn=normals_fn,
                                                 window=window, stride=window - 1, target_chunk=target_chunk,
                                                 query_chunk=query_chunk, callback=callback, anchors=anchors)
        positions = spread(positions)
        check()
        if progress is not None:
            progress(total, total, f"predicted window {n_windows}/{n_windows}")
        positions = positions.cpu().numpy().astype(np.float64)  # [T, Vw, 3], normalised
    # Offsets straight from the normalised displacement: exactly 0 at frame 0, no round-off of
    # large world coordinates.
    moved = (positions - positions[:1]) / norm.scale
    offsets = moved[:, weld].astype(np.float32)
    if not np.isfinite(offsets).all():
        raise RuntimeError("the learned model produced non-finite positions")
    if hold_back:
        offsets, report = hold_back_worse(ref_v, ref_f, frames, offsets, seed=seed, check=check)
        if fit_report is not None:
            fit_report.extend(report)
    return offsets


def _encode_frames(vae, frames, norm, num_latents, surface_points, seed, device, progress, check):
    """Each frame's own mesh, sampled (points + normals) and encoded -> latents [T, M, C] and the
    tokens' anchors [T, M, 3].

    Frames go through the VAE ENCODE_BATCH at a time (one call per frame costs 2x as much on CPU).
    """
    import torch

    from backend.geometry.sampling import sample_surface

    latents, anchors = [], []
    for start in range(0, len(frames), ENCODE_BATCH):
        batch = []
        for t in range(start, min(start + ENCODE_BATCH, len(frames))):
            fv, ff = frames[t]
            ff = orient_faces(fv, ff)  # the VAE reads normals: outward, whatever the file's winding
            try:
                p, n = sample_surface(norm.apply(fv), ff, surface_points, seed=np.random.default_rng([seed, t]))
            except ValueError:
                raise BadInput(f"frame {t}: the mesh has no surface area to sample") from None
            batch.append(np.concatenate([p, n], -1))
            if progress is not None:
                progress(t + 1)
            check()
        pn = torch.from_numpy(np.stack(batch).astype(np.float32)).to(device)
        gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + start)
        posterior, at = vae.encode_tokens(pn, generator=gen, num_latents=num_latents)
        latents.append(posterior.mode())
        anchors.append(at)
        check()
    return torch.cat(latents), torch.cat(anchors)


def register_learned_optimize(ref_vertices, ref_faces, frames, *, vae, autoencoder, num_latents: int,
                  surface_points: int = DEFAULT_SURFACE_POINTS, device="cpu", progress=None, should_cancel=None,
                  seed: int = 0, refine_iterations=REFINE_ITERATIONS, error_samples: int = DEFAULT_SAMPLES,
                  **learned_kwargs):
    """Learned prediction, refined per frame; keep the better of the two per frame.

    Returns (offsets [T,V,3] float32, report) with report = {"refined": [bool per frame: the
    refined result was kept], "error_learned": [...], "error_refined": [...], "error": [...]}
    (two-way mean surface distance to each frame, in the inputs' units; `error` is the kept one,
    never above `error_learned`) and "frames": the refinement's fit report (register_optimize's
    `fit_report`), each entry saying which result was kept. progress(step, total, message) counts learned, refine and
    compare steps together; should_cancel is polled throughout.
    """
    from backend.models.temporal_autoencoder import window_plan

    ref_v, ref_f, frames = check_inputs(ref_vertices, ref_faces, frames)
    n = len(frames)
    window = int(autoencoder.temporal_context_size)
    lt = n + len(window_plan(n, window, window - 1))  # register_learned's own step count
    total = lt + 2 * n

    def report_from(offset, prefix=""):
        if progress is None:
            return None
        return lambda step, _total, message: progress(offset + step, total, prefix + message)

    learned = register_learned(ref_v, ref_f, frames, vae=vae, autoencoder=autoencoder, num_latents=num_latents,
                               surface_points=surface_points, device=device, seed=seed, should_cancel=should_cancel,
                               progress=report_from(0), **learned_kwargs)
    fits = []
    refined = register_optimize(ref_v, ref_f, frames, init_offsets=learned, init_mode="better",
                                iterations=tuple(refine_iterations), should_cancel=should_cancel, seed=seed,
                                progress=report_from(lt, "refine: "), fit_report=fits)
    offsets = np.empty_like(learned)
    report = {"refined": [], "error_learned": [], "error_refined": [], "error": [], "frames": fits}
    for t, (fv, ff) in enumerate(frames):
        target = TargetSamples(fv, ff, samples=error_samples, seed=seed + t)
        e_learned = target.error(ref_v + learned[t], ref_f)
        e_refined = target.error(ref_v + refined[t], ref_f)
        use_refined = e_refined < e_learned
        offsets[t] = refined[t] if use_refined else learned[t]
        report["refined"].append(bool(use_refined))
        report["error_learned"].append(e_learned)
        report["error_refined"].append(e_refined)
        report["error"].append(min(e_learned, e_refined))
        fits[t]["result"] = "refined" if use_refined else "learned"
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        if progress is not None:
            progress(lt + n + t + 1, total, f"compared frame {t + 1}/{n}")
    return offsets, report
