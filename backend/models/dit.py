"""The flow transformer (DiT) of TripoSG and of ActionMesh's Stage I, one implementation.

Both predict a rectified-flow velocity for a set of shape-latent tokens, conditioned on image tokens:

  proj_in: latents [R, N, in_channels] -> width
  + ONE time token prepended: time_proj(sinusoidal embedding of the diffusion time in 0..1000)
  -> num_layers pre-norm blocks: self-attention (QK RMS-norm) -> cross-attention to the image tokens
     (QK RMS-norm, no context norm) -> GELU feed-forward; no QKV bias. U-Net style long skips: the
     outputs of the first num_layers // 2 blocks are stacked, and each block past the middle pops one
     and starts with norm(linear(cat[skip, x])).
  -> LayerNorm -> drop the time token -> proj_out: velocity [R, N, in_channels].

`ShapeDiT` is TripoSG's image-to-3D model with the parameter names and config keys of
`VAST-AI/TripoSG` `transformer/` (diffusers' TripoSGDiTModel). `TemporalDenoiser` is the same
network with ActionMesh's names and config keys (`facebook/ActionMesh` `denoiser/`) and with the
changes that make it temporal, as ActionMesh's release computes them:
  - rows are frames: [B, T, N, C] latents and [B, T, M, D] image tokens are run as B*T rows, each
    frame with its own time token and its own cross-attention;
  - in the "inflated" layers the self-attention runs over all T*(N+1) tokens of a clip at once, q and k
    rotated by a temporal RoPE whose position is the token's frame index minus the window's
    smallest (every token of a frame, time token included, shares its frame's position);
  - known frames (mask 1) are given diffusion time 0, so they are read as clean data.

What we learned from the upstream code (read, not copied): TripoSG
triposg/models/transformers/triposg_transformer.py (DiTBlock with skip_concat_front and
skip_norm_last, time token, skips), triposg/models/attention_processor.py (heads split from the
concatenated [q|k|v] / [k|v] projections, then QK-norm); ActionMesh actionmesh/model/temporal_denoiser.py
(forward: time repeated per frame and zeroed by the mask, RoPE tables per frame for N+1 tokens),
actionmesh/model/utils/block.py (FlowMatchingBlock: the same block, renamed) and
actionmesh/model/utils/attention_processor.py (inflation (b t) n -> b (t n); RoPE after QK-norm).
Upstream also rotates q and k in the layers that are not inflated; there every token of a row has
the same angle, which leaves q.k unchanged, so we skip it.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple, Union

import torch
from torch import nn

from .attention import TransformerBlock
from .configs import ModelMixin, register_to_config
from .embeddings import TimestepProjection, timestep_embedding
from .rope import rope_angles, rotary_fn, window_positions


class FlowTransformer(ModelMixin):
    """The network both checkpoint families share; subclasses give the constructor (= config keys),
    the block layout (parameter names) and the forward signature."""

    def _build(self, width: int, num_attention_heads: int, in_channels: int, num_layers: int,
               cross_attention_dim: int, ff_inner_dim: int, layout: str) -> None:
        if width % num_attention_heads:
            raise ValueError(f"width {width} is not a multiple of num_attention_heads {num_attention_heads}")
        self.width = width
        self.num_layers = num_layers
        self.dim_head = width // num_attention_heads
        # Registration order = the official state_dict order: time_proj, proj_in, blocks, norm_out, proj_out.
        self.time_proj = TimestepProjection(width, 4 * width, width)
        self.proj_in = nn.Linear(in_channels, width)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, num_attention_heads, cross_attention_dim=cross_attention_dim, qk_norm="rms_norm",
                             qkv_bias=False, ff_inner_dim=ff_inner_dim, skip=layer > num_layers // 2, layout=layout)
            for layer in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, in_channels)

    def _velocity(
        self,
        latents: torch.Tensor,
        times: torch.Tensor,
        context: torch.Tensor,
        inflated: Iterable[int] = (),
        group: Optional[int] = None,
        rotary=None,
        clear_autocast: bool = False,
    ) -> torch.Tensor:
        """latents [R, N, C], times [R] (0..1000), context [R, M, D] -> velocity [R, N, C].

        Layers listed in `inflated` run their self-attention over `group` consecutive rows at once,
        with `rotary` (a closure over that joint token axis)."""
        n = latents.shape[1]
        h = self.proj_in(latents)
        time_token = self.time_proj(timestep_embedding(times, self.width).to(h.dtype))
        h = torch.cat([time_token[:, None], h], dim=1)
        inflated = set(inflated)
        skips = []
        for layer, block in enumerate(self.blocks):
            skip = skips.pop() if layer > self.num_layers // 2 else None
            if layer in inflated:
                h = block(h, encoder_hidden_states=context, skip=skip, rotary_fn=rotary, self_attention_group=group)
            else:
                h = block(h, encoder_hidden_states=context, skip=skip)
            if layer < self.num_layers // 2:
                skips.append(h)
            if clear_autocast:
                # Under autocast the cast weights of every block are cached until the context ends;
                # dropping them per block keeps that cache from holding a second copy of the model.
                torch.clear_autocast_cache()
        return self.proj_out(self.norm_out(h)[:, -n:])


def _per_row(value: Union[torch.Tensor, float], rows: int, device: torch.device) -> torch.Tensor:
    """A scalar or [rows] diffusion time -> [rows] float32."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.ndim == 0:
        t = t.expand(rows)
    if t.shape != (rows,):
        raise ValueError(f"expected one diffusion time or one per batch row ({rows}), got shape {tuple(t.shape)}")
    return t


class ShapeDiT(FlowTransformer):
    """TripoSG's flow transformer. `ShapeDiT(**TRIPOSG_DIT_CONFIG)` loads the official `transformer/`
    weights (diffusers folder: config.json + diffusion_pytorch_model.safetensors) without renaming.
    """

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 16,
        width: int = 2048,
        in_channels: int = 64,
        num_layers: int = 21,
        cross_attention_dim: int = 1024,
        use_cross_attention_2: bool = False,
        cross_attention_2_dim: Optional[int] = None,
    ):
        super().__init__()
        # The second cross-attention belongs to TripoSG's scribble variant (a second condition, extra
        # parameters); the released image model has it off, and so do all checkpoints we load.
        if use_cross_attention_2:
            raise ValueError("use_cross_attention_2 (TripoSG's scribble variant) is not supported")
        self._build(width, num_attention_heads, in_channels, num_layers, cross_attention_dim,
                    ff_inner_dim=4 * width, layout="triposg")

    def forward(self, hidden_states: torch.Tensor, timestep: Union[torch.Tensor, float],
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Velocity for latents [B, N, in_channels] at diffusion time `timestep` (sigma * 1000; one
        value or one per row [B]), conditioned on image tokens [B, M, cross_attention_dim]."""
        if hidden_states.ndim != 3:
            raise ValueError(f"hidden_states must be [B, N, C], got {tuple(hidden_states.shape)}")
        times = _per_row(timestep, hidden_states.shape[0], hidden_states.device)
        return self._velocity(hidden_states, times, encoder_hidden_states)


class TemporalDenoiser(FlowTransformer):
    """ActionMesh's Stage I denoiser. `TemporalDenoiser(**ACTIONMESH_DENOISER_CONFIG)` loads the
    official `denoiser/` weights (config.json + model.safetensors) without renaming.

    Config keys are the official ones. `num_tokens_nominal` and `temporal_context_size` describe the
    training setting (tokens per frame, frames per window) for callers; they do not change the network.
    """

    @register_to_config
    def __init__(
        self,
        num_tokens_nominal: int = 2048,
        temporal_context_size: int = 16,
        num_attention_heads: int = 16,
        width: int = 2048,
        in_channels: int = 64,
        num_layers: int = 21,
        cross_attention_dim: int = 1024,
        mlp_ratio: float = 4.0,
        inflated_layers: Optional[Iterable[int]] = None,
        clear_autocast: bool = False,
    ):
        super().__init__()
        self._build(width, num_attention_heads, in_channels, num_layers, cross_attention_dim,
                    ff_inner_dim=int(width * mlp_ratio), layout="actionmesh")
        self.num_tokens_nominal = num_tokens_nominal
        self.temporal_context_size = temporal_context_size
        self.inflated_layers = tuple(range(num_layers)) if inflated_layers is None else tuple(inflated_layers)
        bad = [i for i in self.inflated_layers if not 0 <= i < num_layers]
        if bad:
            raise ValueError(f"inflated_layers {bad} are not layers of a {num_layers}-layer model")
        if self.dim_head % 2:
            raise ValueError(f"the temporal RoPE needs an even head size, got {self.dim_head}")
        self.clear_autocast = clear_autocast

    def rotary_tables(self, framestep: torch.Tensor, num_tokens: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frame indices [B, T] -> RoPE (cos, sin), each [B*T, num_tokens + 1, dim_head] float32: per
        frame, one row for its time token and each of its latent tokens, all at the frame's position
        (its index minus the window's smallest)."""
        cos, sin = rope_angles(window_positions(framestep).flatten(), self.dim_head)  # [B*T, dim_head]
        return (cos[:, None].expand(-1, num_tokens + 1, -1).contiguous(),
                sin[:, None].expand(-1, num_tokens + 1, -1).contiguous())

    def forward(
        self,
        hidden_states: torch.Tensor,
        context: torch.Tensor,
        framestep: torch.Tensor,
        diffusion_time: Union[torch.Tensor, float],
        mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Velocity for every frame's latents.

        hidden_states [B, T, N, in_channels]: each frame's latents (known frames: clean).
        context [B, T, M, cross_attention_dim]: each frame's image tokens.
        framestep [B, T]: frame indices (float or int); only offsets within a window matter.
        diffusion_time: one time (0..1000) or one per clip [B].
        mask [B, T]: 1 where the frame is known; those frames are run at diffusion time 0.
        Returns [B, T, N, in_channels].

        (Upstream tiles a [B] time vector with `repeat(T)`, which pairs row b*T+t with time
        (b*T+t) % B; its sampler always passes one value for the whole batch, where that equals
        the per-clip time used here.)
        """
        if hidden_states.ndim != 4 or context.ndim != 4 or context.shape[:2] != hidden_states.shape[:2]:
            raise ValueError(f"expected hidden_states [B, T, N, C] and context [B, T, M, D] with the same B, T; got "
                             f"{tuple(hidden_states.shape)} and {tuple(context.shape)}")
        b, t, n, _ = hidden_states.shape
        times = _per_row(diffusion_time, b, hidden_states.device)[:, None].expand(b, t)
        if mask is not None:
            times = times * (1 - mask.to(times.dtype))
        cos, sin = self.rotary_tables(framestep.to(hidden_states.device), n)
        # Inflated layers see a clip's frames as one sequence, frame-major: the tables follow suit.
        rotary = rotary_fn(cos.reshape(b, t * (n + 1), -1), sin.reshape(b, t * (n + 1), -1))
        velocity = self._velocity(hidden_states.flatten(0, 1), times.flatten(), context.flatten(0, 1),
                                  inflated=self.inflated_layers, group=t, rotary=rotary,
                                  clear_autocast=self.clear_autocast)
        return velocity.unflatten(0, (b, t))
