"""Attention, feed-forward and the pre-norm transformer block shared by our VAE and DiT models.

Module and parameter names follow diffusers (`to_q/to_k/to_v/to_out.0`, `ff.net.0.proj`,
`ff.net.2`, `norm1/attn1/norm2/attn2/norm3`) because the official TripoSG checkpoints use them
and we load those files without renaming.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the activations' dtype (stable under fp16/bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """RMS norm over the last dim with a learned scale (used as QK-norm per head)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention over [B, N, C] token sets, computed with scaled_dot_product_attention.

    Self-attention when `cross_attention_dim` is None, otherwise keys/values come from
    `encoder_hidden_states` (optionally LayerNorm-ed by `norm_cross`).

    `interleaved_heads=True` reproduces how TripoSG's weights were trained: the projections are
    concatenated ([q|k|v] for self-attention, [k|v] for cross-attention), split into heads FIRST
    and only then into q/k/v inside each head. With the ordinary layout the same weights would
    give a different (wrong) model, so this is a property of the checkpoint, not a speed choice.
    """

    def __init__(
        self,
        query_dim: int,
        heads: int,
        dim_head: Optional[int] = None,
        cross_attention_dim: Optional[int] = None,
        cross_attention_norm: Optional[str] = None,
        qk_norm: Optional[str] = None,
        bias: bool = False,
        out_bias: bool = True,
        eps: float = 1e-6,
        interleaved_heads: bool = True,
    ):
        super().__init__()
        dim_head = dim_head or query_dim // heads
        inner_dim = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.is_cross_attention = cross_attention_dim is not None
        self.interleaved_heads = interleaved_heads
        kv_dim = cross_attention_dim if cross_attention_dim is not None else query_dim

        if cross_attention_norm is None:
            self.norm_cross = None
        elif cross_attention_norm == "layer_norm":
            self.norm_cross = nn.LayerNorm(kv_dim)
        else:
            raise ValueError(f"unknown cross_attention_norm {cross_attention_norm!r} (expected None or 'layer_norm')")
        if qk_norm is None:
            self.norm_q = self.norm_k = None
        elif qk_norm == "rms_norm":
            self.norm_q = RMSNorm(dim_head, eps=eps)
            self.norm_k = RMSNorm(dim_head, eps=eps)
        else:
            raise ValueError(f"unknown qk_norm {qk_norm!r} (expected None or 'rms_norm')")

        self.to_q = nn.Linear(query_dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(kv_dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(kv_dim, inner_dim, bias=bias)
        # A ModuleList so the output projection is named `to_out.0` like diffusers (index 1 is
        # the parameter-free dropout slot).
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim, bias=out_bias), nn.Dropout(0.0)])

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.dim_head).transpose(1, 2)

    def _project(self, hidden_states: torch.Tensor, context: torch.Tensor):
        """Returns q, k, v as [B, heads, tokens, dim_head]."""
        b = hidden_states.shape[0]
        q, k, v = self.to_q(hidden_states), self.to_k(context), self.to_v(context)
        if not self.interleaved_heads:
            return self._split_heads(q), self._split_heads(k), self._split_heads(v)
        hd = self.dim_head
        if not self.is_cross_attention:
            qkv = torch.cat((q, k, v), dim=-1).view(b, -1, self.heads, 3 * hd)
            q, k, v = qkv.split(hd, dim=-1)
        else:
            kv = torch.cat((k, v), dim=-1).view(b, -1, self.heads, 2 * hd)
            k, v = kv.split(hd, dim=-1)
            q = q.view(b, -1, self.heads, hd)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        rotary_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        qk_extra: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """qk_extra: (q_extra [B, heads, Q, e], k_extra [B, heads, S, e]) appended to each head's
        queries and keys, adding q_extra . k_extra / sqrt(dim_head) to the attention logits (the
        softmax scale stays that of dim_head): a bias that costs e channels, not a [Q, S] mask."""
        if encoder_hidden_states is None:
            context = hidden_states
        else:
            context = self.norm_cross(encoder_hidden_states) if self.norm_cross is not None else encoder_hidden_states
        q, k, v = self._project(hidden_states, context)
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        if rotary_fn is not None:
            # Positions are only meaningful when q and k index the same token set.
            q = rotary_fn(q)
            if not self.is_cross_attention:
                k = rotary_fn(k)
        scale = None
        if qk_extra is not None:
            q = torch.cat([q, qk_extra[0].to(q.dtype)], dim=-1)
            k = torch.cat([k, qk_extra[1].to(k.dtype)], dim=-1)
            scale = self.dim_head ** -0.5
            # Values padded to the same width keep SDPA on its fused kernel (unequal widths fall
            # back to an explicit attention matrix, 2x slower on CPU); the padding is cut off below.
            v = F.pad(v, (0, q.shape[-1] - v.shape[-1]))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=scale)[..., : self.dim_head]
        out = out.transpose(1, 2).reshape(hidden_states.shape[0], -1, self.heads * self.dim_head)
        return self.to_out[1](self.to_out[0](out.to(q.dtype)))


class GELUProjection(nn.Module):
    """Linear then GELU, named `proj` so the first FF layer is `ff.net.0.proj`."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none", bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out, bias=bias)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate=self.approximate)


class FeedForward(nn.Module):
    """dim -> inner_dim -> dim MLP; `net` = [GELUProjection, Dropout, Linear] as in diffusers.

    TripoSG's "gelu" activation is the exact (erf) GELU, hence approximate="none" by default.
    """

    def __init__(self, dim: int, inner_dim: Optional[int] = None, mult: int = 4, approximate: str = "none",
                 bias: bool = True):
        super().__init__()
        inner_dim = inner_dim or dim * mult
        self.net = nn.ModuleList(
            [GELUProjection(dim, inner_dim, approximate=approximate, bias=bias), nn.Dropout(0.0),
             nn.Linear(inner_dim, dim, bias=bias)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


# The same pre-norm block is saved under different parameter names by the two official model
# families; each layout maps our roles to those names. Roles are listed in registration order,
# which is the checkpoints' state_dict order.
BLOCK_LAYOUTS = {
    # TripoSG (VAE and DiT), diffusers-style names.
    "triposg": dict(norm_self="norm1", attn_self="attn1", norm_cross="norm2", attn_cross="attn2", norm_ff="norm3",
                    ff="ff", skip_norm="skip_norm", skip_linear="skip_linear"),
    # ActionMesh (Stage I denoiser, Stage II autoencoder).
    "actionmesh": dict(norm_self="norm_s_attn", attn_self="s_attn", norm_cross="norm_x_attn", attn_cross="x_attn",
                       norm_ff="norm_ff", ff="ff", skip_norm="norm_skip", skip_linear="linear_skip"),
}


class TransformerBlock(nn.Module):
    """Pre-norm block: [long skip] -> self-attention -> cross-attention -> feed-forward.

    Each part is optional so the same class gives TripoSG's VAE blocks (self-only or cross-only)
    and the DiT blocks of TripoSG and ActionMesh (both, QK RMS-norm, long skips). Residuals wrap
    every part. `layout` picks the parameter names (BLOCK_LAYOUTS); the computation is the same.
    """

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        use_self_attention: bool = True,
        cross_attention_dim: Optional[int] = None,
        cross_attention_norm: Optional[str] = None,
        qk_norm: Optional[str] = None,
        qkv_bias: bool = False,
        norm_eps: float = 1e-5,
        ff_mult: int = 4,
        skip: bool = False,
        interleaved_heads: bool = True,
        ff_inner_dim: Optional[int] = None,
        layout: str = "triposg",
    ):
        super().__init__()
        if layout not in BLOCK_LAYOUTS:
            raise ValueError(f"unknown block layout {layout!r} (expected one of {sorted(BLOCK_LAYOUTS)})")
        self._names = BLOCK_LAYOUTS[layout]
        attn_kwargs = dict(heads=num_attention_heads, dim_head=dim // num_attention_heads, qk_norm=qk_norm,
                           bias=qkv_bias, interleaved_heads=interleaved_heads)
        # Registration order = state_dict order, kept as in the official checkpoints.
        if use_self_attention:
            self._add("norm_self", FP32LayerNorm(dim, eps=norm_eps))
            self._add("attn_self", Attention(dim, **attn_kwargs))
        if cross_attention_dim is not None:
            self._add("norm_cross", FP32LayerNorm(dim, eps=norm_eps))
            self._add("attn_cross", Attention(dim, cross_attention_dim=cross_attention_dim,
                                              cross_attention_norm=cross_attention_norm, **attn_kwargs))
        self._add("norm_ff", FP32LayerNorm(dim, eps=norm_eps))
        self._add("ff", FeedForward(dim, inner_dim=ff_inner_dim, mult=ff_mult))
        if skip:
            # Linear over cat[skip, x], THEN norm (so the norm is dim-sized), as both DiTs were trained.
            self._add("skip_norm", FP32LayerNorm(dim, eps=norm_eps))
            self._add("skip_linear", nn.Linear(2 * dim, dim))

    def _add(self, role: str, module: nn.Module) -> None:
        self.add_module(self._names[role], module)

    def part(self, role: str) -> Optional[nn.Module]:
        """The submodule playing `role` (a BLOCK_LAYOUTS key), or None when the block has no such part."""
        return self._modules.get(self._names[role])

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        skip: Optional[torch.Tensor] = None,
        rotary_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        self_attention_group: Optional[int] = None,
    ) -> torch.Tensor:
        """self_attention_group: the self-attention runs over the tokens of this many consecutive
        batch rows at once ([B*G, S, C] -> [B, G*S, C]: ActionMesh's "inflated" attention across the
        G frames of a clip); rotary_fn then sees that joint token axis. Cross-attention and the
        feed-forward stay per row. rotary_fn is not applied to the cross-attention (its keys are
        another token set)."""
        x = hidden_states
        skip_linear = self.part("skip_linear")
        if skip_linear is not None:
            if skip is None:
                raise ValueError("this block has a long skip connection: pass skip=")
            x = self.part("skip_norm")(skip_linear(torch.cat([skip, x], dim=-1)))
        attn_self = self.part("attn_self")
        if attn_self is not None:
            h = self.part("norm_self")(x)
            if self_attention_group:
                rows, tokens, width = h.shape
                h = h.reshape(rows // self_attention_group, self_attention_group * tokens, width)
            h = attn_self(h, rotary_fn=rotary_fn)
            x = x + h.reshape(x.shape)
        attn_cross = self.part("attn_cross")
        if attn_cross is not None:
            if encoder_hidden_states is None:
                raise ValueError("this block has cross-attention: pass encoder_hidden_states=")
            x = x + attn_cross(self.part("norm_cross")(x), encoder_hidden_states=encoder_hidden_states)
        return x + self.part("ff")(self.part("norm_ff")(x))
