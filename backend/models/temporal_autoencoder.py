"""TemporalAutoencoder: ActionMesh's Stage II, a decoder from per-frame shape latents to vertex motion.

Given the latents of T frames [B, T, M, C] (one shape-VAE latent set per frame) and query points
on the surface at a SOURCE time (mesh vertices with normals), it predicts where every query point
is at each TARGET time. Architecture (names follow the official checkpoint, so
`facebook/ActionMesh` `autoencoder/model.safetensors` loads without renaming):

  post_quant: latents -> width, all frames' tokens in one sequence [B, T*M, W]
  + T "time tokens" appended AFTER all frame tokens, one per frame; each is the parameter-free
    sinusoidal embedding of the pair (source time, target time), W/2 dims each, identical for all
    frames but rotated by its own frame's RoPE position
  -> `num_layers` pre-norm self-attention blocks (RoPE by frame index on q and k)
  -> one cross-attention block: queries = proj_query(Fourier(xyz) ++ normal) attend to ALL tokens
     (every frame's tokens and the time tokens), then norm_out -> proj_out -> negated
  -> 2 * sigmoid(.) - 1: in "direct" mode this IS the position at the target time, in [-1, 1].

Numerics (the release runs Stage II under bf16 autocast): the residual stream stays float32 (only
the blocks' matmuls take the reduced precision), and the read-out (Fourier query embedding,
proj_query, the cross-attention block, norm_out, proj_out) runs with autocast off in the weights'
dtype, as upstream does. Under CPU bf16 autocast this keeps a 31-frame track within 0.0096 of
float32, against 0.062 with them in bf16 (tests/test_autocast_numerics.py).

What we learned from the upstream code (facebookresearch/actionmesh, read, not copied):
- actionmesh/model/temporal_autoencoder.py, forward (l. 163-269): times are NORMALISED window
  time in [0, 1] (source_alpha [B], target_alphas [B, T_out]); `framestep` [B, T] is only used for
  RoPE, after subtracting the window's minimum (l. 201-203, `scale_timestep(center=True,
  scale=False)`), i.e. frame index within the window. The time token is computed per target
  (l. 234-237) and the WHOLE self-attention stack is re-run for each target time (l. 249-267);
  the time tokens are concatenated after the latent tokens (l. 258) although a comment says
  "prepend". The cross-attention sees the full self-attention output, not a single frame.
  The RoPE table covers the T*N latent tokens (each frame's position repeated N times) followed
  by the T time tokens (l. 216-231). Output: logits negated (l. 160), 2*sigmoid-1 (l. 269);
  `apply_displacement` (l. 118-141) clamps to [-1, 1] ("direct") or adds the source vertex first
  ("residual").
- actionmesh/model/utils/embeddings.py, TimestepEmbedder (l. 55-128): per time value, a block of
  [cos(t f_i) for i < h/2, sin(t f_i) for i < h/2] with f_i = 10000^(-i / (h/2)), h = W/2; the
  source block first, then the target block. No learned projection (no parameters in the
  checkpoint for it).
- actionmesh/model/utils/rotary_embedding.py (l. 10-124): adjacent-pair rotation over the whole
  head dim (W / heads = 128 officially), base 10000, float32.
- actionmesh/model/utils/attention_processor.py (l. 105-119): heads are split from the
  concatenated [q|k|v] (self) or [k|v] (cross) projections, TripoSG's "interleaved" order, so
  `Attention(interleaved_heads=True)`. RoPE after the (absent here) QK-norm (l. 121-130).
- actionmesh/model/utils/block.py, FlowMatchingBlock (l. 60-154): pre-norm residual blocks,
  FP32 LayerNorm eps 1e-5, no QKV bias, output bias, exact-GELU FF x4; the cross-attention has a
  LayerNorm on its context (`x_attn.norm_cross`).
- actionmesh/pipeline.py, generate_mesh_animation (l. 510-598) and _decode_displacement (l. 316-385)
  + model/utils/timesteps.py (chunk_right l. 10-46):
  windows of 16 frames sliding by 15; the last window is clamped to end at the last
  frame (so it may start earlier than the previous window's end). Each window's source is its
  first frame (alpha 0 walking right, 1 walking left), whose mesh was produced by an earlier
  window (vertex normals recomputed from that deformed mesh by trimesh, angle-weighted); targets
  are every frame but the window's smallest, and frames already written
  are kept (storage.py MeshBank.update l. 194, replace=False), so every frame is produced exactly once.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from .attention import Attention, FeedForward, FP32LayerNorm
from .configs import ModelMixin, register_to_config
from .embeddings import FourierEmbedder
from .rope import temporal_rotary_fn
# Window and window_plan are re-exported: callers import them from here.
from .windows import Window, normalised_time, window_plan, window_scaling  # noqa: F401

PREDICTION_MODES = ("direct", "residual")
TIME_TOKENS = ("shared", "per_frame")


def time_pair_embedding(source: torch.Tensor, target: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (source, target) time pairs [...] -> [..., 2 * dim] float32.

    Per time value: [cos(t f_0..f_{h-1}), sin(t f_0..f_{h-1})], h = dim / 2, f_i = max_period^(-i/h).
    """
    if dim % 2:
        raise ValueError(f"time embedding size must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=source.device) / half)
    parts = []
    for t in (source, target):
        angle = t.float()[..., None] * freqs
        parts += [angle.cos(), angle.sin()]
    return torch.cat(parts, dim=-1)


class TemporalBlock(nn.Module):
    """Pre-norm block with optional self-attention, optional cross-attention, and a feed-forward.

    Parameter names are ActionMesh's (`norm_s_attn/s_attn/norm_x_attn/x_attn/norm_ff/ff`).
    """

    def __init__(self, dim: int, num_attention_heads: int, use_self_attention: bool = True,
                 cross_attention_dim: Optional[int] = None, norm_eps: float = 1e-5):
        super().__init__()
        attn = dict(heads=num_attention_heads, dim_head=dim // num_attention_heads, bias=False,
                    interleaved_heads=True)
        if use_self_attention:
            self.norm_s_attn = FP32LayerNorm(dim, eps=norm_eps)
            self.s_attn = Attention(dim, **attn)
        else:
            self.norm_s_attn = self.s_attn = None
        if cross_attention_dim is not None:
            self.norm_x_attn = FP32LayerNorm(dim, eps=norm_eps)
            self.x_attn = Attention(dim, cross_attention_dim=cross_attention_dim, cross_attention_norm="layer_norm",
                                    **attn)
        else:
            self.norm_x_attn = self.x_attn = None
        self.norm_ff = FP32LayerNorm(dim, eps=norm_eps)
        self.ff = FeedForward(dim, mult=4)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
                rotary_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                context_qk_extra: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        if self.s_attn is not None:
            x = x + self.s_attn(self.norm_s_attn(x), rotary_fn=rotary_fn)
        if self.x_attn is not None:
            if context is None:
                raise ValueError("this block has cross-attention: pass context=")
            x = x + self.x_attn(self.norm_x_attn(x), encoder_hidden_states=context, qk_extra=context_qk_extra)
        return x + self.ff(self.norm_ff(x))


# ---------------------------------------------------------------- helpers


def window_time(frame_index: torch.Tensor) -> torch.Tensor:
    """Frame numbers [B, T] of a window -> normalised window time [B, T] in [0, 1]."""
    return (frame_index - frame_index[:, :1]).float() / max(frame_index.shape[1] - 1, 1)


def _unit(x: torch.Tensor, threshold: float = 1e-13) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows scaled to length 1 and which rows could be (longer than `threshold`); others -> 0."""
    norm = x.norm(dim=-1, keepdim=True)
    ok = norm[..., 0] > threshold
    return torch.where(ok[..., None], x / norm.clamp_min(threshold), torch.zeros_like(x)), ok


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals as the release computes them, vertices [V, 3], faces [F, 3] -> [V, 3].

    The release reads a mesh's normals from trimesh (`Trimesh.vertex_normals`), and Stage II was
    trained on those: each face's unit normal weighted by the face's corner angle at the vertex,
    summed, made unit (in float64), then cast to float32 and normalised again. Area weighting,
    which we used before, moves the normals by up to 0.28 on a coarse anchor and the vertices a
    later window predicts by up to 0.2. A face with a zero-area normal or a corner angle under
    1e-8 adds nothing (trimesh's degenerate-face rule); a vertex no face uses gets 0.
    Computed on the CPU in float64 (MPS has no float64; it is one pass over the faces per window)
    and returned on `vertices`' device in its dtype.

    Not backend.geometry.normals.vertex_normals (the numpy, area-weighted one everything else
    uses): this weighting is what the network reads, the official parity cases pin its numbers,
    and it stays in torch beside the network (models/ imports nothing from geometry/).
    """
    v = vertices.detach().to("cpu", torch.float64)
    f = faces.detach().to("cpu", torch.long)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    face_normal, _ = _unit(torch.cross(b - a, c - a, dim=-1))
    ab, ac, bc = _unit(b - a)[0], _unit(c - a)[0], _unit(c - b)[0]
    angle_a = torch.arccos((ab * ac).sum(-1).clamp(-1.0, 1.0))
    angle_b = torch.arccos((-ab * bc).sum(-1).clamp(-1.0, 1.0))
    angles = torch.stack([angle_a, angle_b, math.pi - angle_a - angle_b], dim=-1)
    angles = torch.where((angles < 1e-8).any(dim=-1, keepdim=True), torch.zeros_like(angles), angles)
    summed = torch.zeros_like(v)
    for corner in range(3):
        summed.index_add_(0, f[:, corner], angles[:, corner, None] * face_normal)
    normals = F.normalize(_unit(summed)[0].float(), dim=-1)
    return normals.to(device=vertices.device, dtype=vertices.dtype)


# ---------------------------------------------------------------- the model


class TemporalAutoencoder(ModelMixin):
    """ActionMesh Stage II architecture. `TemporalAutoencoder(**ACTIONMESH_AUTOENCODER_CONFIG)`
    loads the official `autoencoder/` weights; `TINY_AUTOENCODER_CONFIG` is our CPU size.
    """

    @register_to_config
    def __init__(
        self,
        temporal_context_size: int = 16,
        in_channels: int = 3,
        in_extra_channels: int = 3,
        out_dim: int = 3,
        latent_channels: int = 64,
        width: int = 1024,
        num_layers: int = 16,
        num_attention_heads: int = 8,
        embed_frequency: int = 8,
        embed_include_pi: bool = False,
        prediction_mode: str = "direct",
        time_tokens: str = "shared",
        time_scale: float = 1.0,
        query_time: bool = False,
        anchor_positions: bool = False,
        readout_locality: bool = False,
    ):
        super().__init__()
        if time_tokens not in TIME_TOKENS:
            raise ValueError(f"time_tokens must be one of {TIME_TOKENS}, not {time_tokens!r}")
        if prediction_mode not in PREDICTION_MODES:
            raise ValueError(f"prediction_mode must be one of {PREDICTION_MODES}, not {prediction_mode!r}")
        if width % num_attention_heads or (width // num_attention_heads) % 2:
            raise ValueError("width / num_attention_heads must be an even integer (RoPE rotates pairs)")
        if width % 4:
            raise ValueError("width must be a multiple of 4 (two sin/cos time embeddings of width/2)")
        self.temporal_context_size = temporal_context_size
        self.in_channels = in_channels
        self.in_extra_channels = in_extra_channels
        self.prediction_mode = prediction_mode
        self.width = width
        self.dim_head = width // num_attention_heads
        self.embedder = FourierEmbedder(num_freqs=embed_frequency, input_dim=in_channels, include_pi=embed_include_pi)
        # Registration order = the official state_dict order: blocks, proj_query, norm_out, proj_out, post_quant.
        self.blocks = nn.ModuleList(
            [TemporalBlock(width, num_attention_heads) for _ in range(num_layers)]
            + [TemporalBlock(width, num_attention_heads, use_self_attention=False, cross_attention_dim=width)]
        )
        self.proj_query = nn.Linear(self.embedder.out_dim + in_extra_channels, width)
        self.norm_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, out_dim)
        self.post_quant = nn.Linear(latent_channels, width)
        # Our options for small models (off in the official config, whose names and order above
        # are untouched): see TINY_AUTOENCODER_CONFIG for why.
        self.time_tokens = time_tokens
        self.time_scale = float(time_scale)
        self.proj_time = nn.Linear(width, width) if query_time else None
        self.proj_anchor = nn.Linear(self.embedder.out_dim, width) if anchor_positions else None
        # Per head, the read-out's attention logits get -exp(log_beta) * |query - token anchor|^2
        # - exp(log_gamma) * (time_scale * (token frame's time - source time))^2: it starts out
        # looking at the source frame's tokens near the query, which the query can find at once,
        # and learns from there how far to look (see TINY_AUTOENCODER_CONFIG for why).
        if readout_locality:
            self.locality_log_beta = nn.Parameter(torch.full((num_attention_heads,), 3.0))
            self.locality_log_gamma = nn.Parameter(torch.full((num_attention_heads,), 2.0))
        else:
            self.locality_log_beta = self.locality_log_gamma = None

    # ------------------------------------------------------------ pieces

    def query_features(self, queries: torch.Tensor) -> torch.Tensor:
        """[B, Q, in_channels + in_extra_channels] -> [B, Q, proj_query inputs] (Fourier(xyz) ++ extra),
        float32 whatever autocast is on (module docstring: numerics)."""
        expected = self.in_channels + self.in_extra_channels
        if queries.shape[-1] != expected:
            raise ValueError(f"queries must be [B, Q, {expected}] (xyz + normal), got {tuple(queries.shape)}")
        xyz, extra = queries[..., : self.in_channels], queries[..., self.in_channels:]
        with torch.autocast(device_type=queries.device.type, enabled=False):
            return torch.cat([self.embedder(xyz.float()), extra.float()], dim=-1)

    @property
    def needs_anchors(self) -> bool:
        """Whether the model takes each latent token's anchor (the surface point it was encoded at)."""
        return self.proj_anchor is not None or self.locality_log_beta is not None

    def memory(self, latents: torch.Tensor, source_time: torch.Tensor, target_times: torch.Tensor,
               frame_index: torch.Tensor, anchors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Self-attention output for each (batch, target) pair: [B * T', T*M + T, W], batch-major."""
        b, t, m, _ = latents.shape
        k = target_times.shape[1]
        frames = self.post_quant(latents)
        if self.proj_anchor is not None:
            frames = frames + self.proj_anchor(self.embedder(anchors.to(frames.dtype)))
        frames = frames.flatten(1, 2)  # [B, T*M, W]
        if self.time_tokens == "shared":  # official: every frame's time token is the same (s, t) pair
            time_tok = self._time_embedding(source_time[:, None].expand_as(target_times), target_times)
            time_tok = time_tok.reshape(b * k, 1, self.width).expand(-1, t, -1)
        else:  # "per_frame": frame f's token holds (s - tau_f, t - tau_f), tau_f = f's own window time
            tau = window_time(frame_index)
            rel_s = (source_time[:, None, None] - tau[:, None, :]).expand(-1, k, -1)
            rel_t = target_times[:, :, None] - tau[:, None, :]
            time_tok = self._time_embedding(rel_s, rel_t).reshape(b * k, t, self.width)
        # The residual stream is float32 under autocast, as upstream's (whose concatenation with the
        # float32 time tokens promotes it): only the blocks' matmuls run in the reduced precision.
        stream = torch.float32 if torch.is_autocast_enabled(frames.device.type) else frames.dtype
        h = torch.cat([frames.repeat_interleave(k, dim=0).to(stream), time_tok.to(stream)], dim=1)
        rotary = temporal_rotary_fn(frame_index, m, self.dim_head, extra_per_frame=1, repeat=k)
        for block in self.blocks[:-1]:
            h = block(h, rotary_fn=rotary)
        return h

    def _time_embedding(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return time_pair_embedding(source * self.time_scale, target * self.time_scale, self.width // 2)

    def locality_qk(self, xyz: torch.Tensor, anchors: torch.Tensor, time_offset: torch.Tensor,
                    n_time_tokens: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Extra query/key channels [B, heads, Q, 8] / [B, heads, T*M + T, 8] for the read-out's
        cross-attention: they add -beta_h * |xyz - anchor|^2 - gamma_h * (time_scale * time_offset)^2
        to the logit of each frame token (anchor [B, T*M, 3], its frame's window time minus the
        source time [B, T*M]) and 0 to the time tokens, from queries at xyz [B, Q, 3]. (Up to
        beta_h * |xyz|^2, the same for every frame token of a query: it only shifts the time
        tokens' share.)"""
        beta = self.locality_log_beta.float().exp()[None, :, None, None]  # [1, H, 1, 1]
        gamma = self.locality_log_gamma.float().exp()[None, :, None, None]
        x = xyz.float()[:, None]  # [B, 1, Q, 3]
        ones = torch.ones_like(x[..., :1])
        q = torch.cat([2 * beta * x, -beta * ones, -gamma * ones], dim=-1) * self.dim_head ** 0.5
        a = anchors.float()
        k = torch.cat([a, a.pow(2).sum(-1, keepdim=True), (self.time_scale * time_offset.float()).pow(2)[..., None]],
                      dim=-1)
        k = F.pad(k, (0, 0, 0, n_time_tokens))[:, None]  # [B, 1, S, 5]
        heads = q.shape[1]
        # 8 channels rather than 5: SDPA's CPU kernel is far slower on head widths that are not a
        # multiple of 8 (37 vs 40: the read-out's backward pass took 4x as long).
        return F.pad(q, (0, 3)), F.pad(k.expand(-1, heads, -1, -1), (0, 3))

    def read(self, memory: torch.Tensor, query_features: torch.Tensor,
             time_query: Optional[torch.Tensor] = None,
             locality: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """memory [B', S, W], query features [B', Q, F] (+ time_query [B', 1, W] with query_time;
        + locality = locality_qk(...) with readout_locality) -> field in [-1, 1], [B', Q, out_dim].

        Runs with autocast off, in the weights' dtype (float32 as released), as upstream does: the
        read-out turns features into positions, and bf16 there jitters every vertex."""
        dtype = self.proj_query.weight.dtype
        with torch.autocast(device_type=memory.device.type, enabled=False):
            q = self.proj_query(query_features.to(dtype))
            if time_query is not None:
                q = q + time_query.to(dtype)
            if locality is not None:
                locality = (locality[0].to(dtype), locality[1].to(dtype))
            q = self.blocks[-1](q, context=memory.to(dtype), context_qk_extra=locality)
            logits = -self.proj_out(self.norm_out(q))
        return 2.0 * torch.sigmoid(logits.float()) - 1.0

    # ------------------------------------------------------------ forward

    def forward(
        self,
        latents: torch.Tensor,
        queries: torch.Tensor,
        source_time: Union[torch.Tensor, float],
        target_times: torch.Tensor,
        frame_index: Optional[torch.Tensor] = None,
        target_chunk: Optional[int] = None,
        query_chunk: Optional[int] = None,
        anchors: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Positions of the query points at each target time.

        latents [B, T, M, C]: one latent set per frame of the window.
        queries [B, Q, 6]: xyz (in [-1, 1]) + unit normal of the points at the source time.
        source_time [B] (or a float): the queries' time, NORMALISED window time in [0, 1]
            (frame f of a window of frames f0..f1 is (f - f0) / (f1 - f0)).
        target_times [B, T']: normalised times to predict (any values, fractional allowed).
        frame_index [B, T]: frame numbers of the latents, for RoPE (default 0..T-1); only their
            offsets from the window's first frame matter.
        target_chunk: how many targets share one self-attention pass (memory: B * chunk copies of
            the T*(M+1) tokens); query_chunk: queries per cross-attention call.
        anchors [B, T, M, 3]: where each latent token was encoded (ShapeVAE.encode_tokens), for
            models with anchor_positions or readout_locality (`needs_anchors`).
        Returns [B, T', Q, out_dim] float32; "direct": the field itself, "residual": source xyz + field,
        both clamped to [-1, 1].
        """
        if latents.ndim != 4:
            raise ValueError(f"latents must be [B, T, M, C], got {tuple(latents.shape)}")
        b, t = latents.shape[:2]
        if target_times.ndim != 2 or target_times.shape[0] != b:
            raise ValueError(f"target_times must be [B, T'], got {tuple(target_times.shape)}")
        source_time = torch.as_tensor(source_time, dtype=torch.float32, device=latents.device)
        if source_time.ndim == 0:
            source_time = source_time.expand(b)
        if frame_index is None:
            frame_index = torch.arange(t, device=latents.device).expand(b, t)
        if self.needs_anchors and (anchors is None or anchors.shape[:3] != latents.shape[:3]):
            raise ValueError("this model needs anchors [B, T, M, 3] (the surface points the latent tokens were "
                             "encoded at, from ShapeVAE.encode_tokens) matching the latents")
        features = self.query_features(queries)
        if self.locality_log_beta is not None:  # each token's frame time minus the source time [B, T*M]
            token_offset = (window_time(frame_index) - source_time[:, None]).repeat_interleave(latents.shape[2], dim=1)
        n_targets = target_times.shape[1]
        step = target_chunk or n_targets
        outputs = []
        for j in range(0, n_targets, step):
            tt = target_times[:, j:j + step]
            k = tt.shape[1]
            mem = self.memory(latents, source_time.to(latents.device), tt.to(latents.device), frame_index, anchors)
            feats = features.repeat_interleave(k, dim=0)
            time_query = None
            if self.proj_time is not None:
                pair = self._time_embedding(source_time[:, None].expand_as(tt).to(latents.device), tt.to(latents.device))
                time_query = self.proj_time(pair.to(mem.dtype).reshape(b * k, 1, self.width))
            qstep = query_chunk or feats.shape[1]
            pieces = []
            for start in range(0, feats.shape[1], qstep):
                locality = None
                if self.locality_log_beta is not None:
                    qe, ke = self.locality_qk(queries[:, start:start + qstep, :3], anchors.flatten(1, 2),
                                              token_offset, t)
                    locality = (qe.repeat_interleave(k, dim=0), ke.repeat_interleave(k, dim=0))
                pieces.append(self.read(mem, feats[:, start:start + qstep], time_query, locality))
            field = torch.cat(pieces, dim=1)
            outputs.append(field.unflatten(0, (b, k)))
        field = torch.cat(outputs, dim=1)
        if self.prediction_mode == "residual":
            field = queries[:, None, :, :3].float() + field
        return field.clamp(-1.0, 1.0)

    # ------------------------------------------------------------ any length

    @torch.no_grad()
    def predict_sequence(
        self,
        latents: torch.Tensor,
        queries: torch.Tensor,
        normals_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        window: Optional[int] = None,
        stride: Optional[int] = None,
        target_chunk: Optional[int] = None,
        query_chunk: Optional[int] = None,
        callback: Optional[Callable[[int, int], None]] = None,
        anchors: Optional[torch.Tensor] = None,
        start: int = 0,
    ) -> torch.Tensor:
        """Track points given at frame `start` through a sequence of any length.

        latents [T, M, C] (+ anchors [T, M, 3] when `needs_anchors`); queries [Q, 6] (xyz + normal
        at frame `start`); normals_fn(positions [Q, 3]) -> [Q, 3]: the queries' normals once moved
        there, called for each later window's source frame (upstream recomputes vertex normals on
        the deformed mesh, `lambda x: vertex_normals(x, faces)`); without it the given normals are
        reused. Windows: window_plan(T, window, stride, start) (default temporal_context_size = 16
        frames sliding by window - 1 = 15), the frames in the window's order (descending for
        windows left of `start`). As upstream: each window's source is its first frame, at its
        normalised time (0 walking right, 1 walking left); its latents and RoPE positions are in
        window order. It predicts its `Window.targets` (upstream's rule, window_plan: every frame
        but the window's smallest that no earlier window wrote; frame 0, which upstream leaves out
        when the anchor is elsewhere, from the last window). Each target is an independent pass,
        so frames an earlier window wrote are not computed again (upstream computes and drops
        them). Returns [T, Q, 3] float32, row `start` = the given xyz.
        """
        if latents.ndim != 3 or queries.ndim != 2:
            raise ValueError("predict_sequence takes one sequence: latents [T, M, C], queries [Q, 6]")
        size = window or self.temporal_context_size
        plan = window_plan(latents.shape[0], size, stride or size - 1, start=start)
        device = latents.device
        positions = torch.empty(latents.shape[0], queries.shape[0], 3, dtype=torch.float32, device=device)
        positions[start] = queries[:, :3].float()
        given_normals = queries[:, 3:].float()
        for i, win in enumerate(plan):
            if callback is not None:
                callback(i, len(plan))
            if not win.targets:
                continue
            src = positions[win.source]
            normals = normals_fn(src) if (normals_fn is not None and win.source != start) else given_normals
            frames = torch.tensor([win.frames], device=device)
            lo, span = window_scaling(frames.float())
            targets = win.targets
            target_times = normalised_time(torch.tensor([targets], dtype=torch.float32, device=device), lo, span)
            source_time = normalised_time(frames[:, 0].float(), lo, span)
            out = self(latents[frames[0]][None], torch.cat([src, normals], -1)[None].to(latents.dtype),
                       source_time, target_times, frame_index=frames,
                       target_chunk=target_chunk, query_chunk=query_chunk,
                       anchors=None if anchors is None else anchors[frames[0]][None])
            positions[targets] = out[0]
        return positions


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
