"""Fourier features for 3D points, laid out as the TripoSG VAE expects them.

The layout matters more than the maths: `encoder.proj_in` (54 inputs) and `decoder.proj_query`
(51 inputs) were trained on [x, sin(x * f), cos(x * f)] with the sin/cos blocks ordered
coordinate-major (x0 f0..f7, x1 f0..f7, ...), so official weights only work with that order.
"""

from __future__ import annotations

import torch
from torch import nn


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
