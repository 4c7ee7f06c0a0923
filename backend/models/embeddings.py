"""Fourier features for 3D points, and the diffusion-time embedding of the DiTs.

The layout matters more than the maths: `encoder.proj_in` (54 inputs) and `decoder.proj_query`
(51 inputs) were trained on [x, sin(x * f), cos(x * f)] with the sin/cos blocks ordered
coordinate-major (x0 f0..f7, x1 f0..f7, ...), so official weights only work with that order.
Likewise the DiTs' time token was trained on [sin | cos] (not [cos | sin]) of the timestep in
0..1000, and `time_proj.linear_1/linear_2` are named as in their checkpoints.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class FourierEmbedder(nn.Module):
    """Maps [..., input_dim] to [..., input_dim * (2 * num_freqs + include_input)].

    Frequencies are 2**0 .. 2**(num_freqs-1), optionally times pi (TripoSG uses no pi: inputs in
    [-1, 1] then see periods down to 2 * pi / 128, about 1/20 of the box).
    """

    def __init__(self, num_freqs: int = 8, input_dim: int = 3, include_input: bool = True, include_pi: bool = False):
        super().__init__()
        self.num_freqs = num_freqs
        self.input_dim = input_dim
        self.include_input = include_input
        self.include_pi = include_pi
        self.out_dim = input_dim * (2 * num_freqs + (1 if include_input or num_freqs == 0 else 0))

    def frequencies(self, device: torch.device) -> torch.Tensor:
        # Built on demand rather than stored as a buffer: a buffer would be left on the meta
        # device when a model is built there and filled with load_state_dict(assign=True).
        freqs = 2.0 ** torch.arange(self.num_freqs, dtype=torch.float32, device=device)
        return freqs * torch.pi if self.include_pi else freqs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_freqs == 0:
            return x
        # float32 on purpose: sin(128 * x) in fp16/bf16 loses most of its digits.
        x32 = x.float()
        angles = (x32[..., None] * self.frequencies(x.device)).flatten(-2)  # coordinate-major
        parts = [x32, angles.sin(), angles.cos()] if self.include_input else [angles.sin(), angles.cos()]
        return torch.cat(parts, dim=-1).to(x.dtype)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Diffusion times [B] (0..1000, any float) -> [B, dim] float32: [sin(t f_i) | cos(t f_i)],
    f_i = max_period^(-i / (dim/2)), i < dim/2; an odd dim gets one zero column at the end.

    The embedding both DiTs were trained with (diffusers' `Timesteps(dim, flip_sin_to_cos=False,
    downscale_freq_shift=0)`). The exponent is computed as upstream does (float32, multiplied then
    divided); its exp is taken in float64 and rounded. torch's float32 exp can be an ulp off that,
    depending on the CPU's kernel, and at t = 1000 one ulp of a frequency moves the angle by ~3e-5:
    the official reference values agree with the rounded float64 exp, which is the same everywhere.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp((exponent / half).double()).float()
    angles = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepProjection(nn.Module):
    """The learned MLP on `timestep_embedding`: linear_1 -> exact GELU -> linear_2 (the DiTs' `time_proj`)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, hidden_dim)
        self.linear_2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(x)))
