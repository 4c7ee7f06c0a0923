"""ShapeVAE: a 3D shape autoencoder over latent token sets (the TripoSG VAE architecture).

surface points + normals [B, N, 6]
  -> encoder: Fourier features; FPS picks `num_latents` query points from a random subset;
     one cross-attention block (queries -> all points), self-attention blocks, LayerNorm
  -> `quant` -> mean / logvar (diagonal Gaussian) -> latents z [B, num_latents, latent_channels]
  -> decoder: `post_quant`, self-attention blocks ONCE per shape -> "memory" [B, M, width]
  -> per chunk of query points: Fourier features -> `proj_query` -> one cross-attention block on
     the memory -> LayerNorm -> `proj_out` -> signed value, positive INSIDE the shape.

Splitting decode into `decode_latents` (expensive, once) and `query` (cheap, per chunk) is what
makes dense/octree surface extraction affordable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from .attention import TransformerBlock
from .configs import ModelMixin, register_to_config
from .embeddings import FourierEmbedder

# ---------------------------------------------------------------- posterior


class DiagonalGaussianDistribution:
    """N(mean, exp(logvar)) per latent channel; `parameters` holds [mean | logvar] on the last dim."""

    def __init__(self, parameters: torch.Tensor):
        self.parameters = parameters
        self.mean, logvar = parameters.chunk(2, dim=-1)
        # The clamp keeps exp() finite for untrained or fp16 weights (same bounds as diffusers).
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=torch.float32,
                            device=generator.device if generator is not None else self.mean.device)
        return self.mean + self.std * noise.to(self.mean.device, self.mean.dtype)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL to N(0, I), summed over tokens and channels: one value per shape, [B]."""
        kl = 0.5 * (self.mean.float().pow(2) + self.var.float() - 1.0 - self.logvar.float())
        return kl.flatten(1).sum(-1)


# ---------------------------------------------------------------- query-token selection


def farthest_point_sampling(points: torch.Tensor, num_samples: int, start_index: int = 0) -> torch.Tensor:
    """Greedy FPS over [B, K, 3] points -> indices [B, num_samples], batched in plain torch.

    One pass per sample (O(num_samples * K)): each step adds the point farthest from the set
    chosen so far. No custom CUDA kernel, so it runs anywhere torch does; 2048 of 8192 points is
    a few hundred ms on CPU. The start point is fixed (index 0) so the result depends only on the
    candidate order, which the caller randomises.
    """
    b, k, _ = points.shape
    pts = points.float()
    indices = torch.empty(b, num_samples, dtype=torch.long, device=points.device)
    nearest = torch.full((b, k), float("inf"), device=points.device)
    current = torch.full((b,), start_index, dtype=torch.long, device=points.device)
    batch = torch.arange(b, device=points.device)
    for i in range(num_samples):
        indices[:, i] = current
        d = (pts - pts[batch, current][:, None]).pow(2).sum(-1)
        nearest = torch.minimum(nearest, d)
        current = nearest.argmax(-1)
    return indices


def select_query_points(x: torch.Tensor, num_latents: int, subset_factor: int = 4,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Pick `num_latents` well-spread rows of x [B, N, C] by FPS on xyz (first 3 channels).

    FPS runs on a random subset of subset_factor * num_latents points (one subset shared by the
    batch, as TripoSG does): cheaper than FPS over all N, and the randomness varies the tokens
    between training steps. A generator makes the choice reproducible.
    """
    n = x.shape[1]
    pool = subset_factor * num_latents
    device = generator.device if generator is not None else x.device
    if pool <= n:
        subset = torch.randperm(n, generator=generator, device=device)[:pool]
    else:  # too few points: draw with replacement (FPS then picks duplicates last)
        subset = torch.randint(n, (pool,), generator=generator, device=device)
    candidates = x[:, subset.to(x.device)]
    chosen = farthest_point_sampling(candidates[..., :3], num_latents)
    return torch.gather(candidates, 1, chosen[..., None].expand(-1, -1, x.shape[-1]))


# ---------------------------------------------------------------- encoder / decoder


class ShapeEncoder(nn.Module):
    """Query tokens cross-attend to all input points once, then refine by self-attention."""

    def __init__(self, in_channels: int, width: int, num_attention_heads: int, num_layers: int):
        super().__init__()
        self.proj_in = nn.Linear(in_channels, width)
        block = dict(dim=width, num_attention_heads=num_attention_heads)
        self.blocks = nn.ModuleList(
            [TransformerBlock(**block, use_self_attention=False, cross_attention_dim=width,
                              cross_attention_norm="layer_norm")]
            + [TransformerBlock(**block) for _ in range(num_layers)]
        )
        self.norm_out = nn.LayerNorm(width)

    def forward(self, queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        # One projection for both: query tokens are themselves input points.
        h = self.proj_in(queries)
        context = self.proj_in(points)
        h = self.blocks[0](h, encoder_hidden_states=context)
        for block in self.blocks[1:]:
            h = block(h)
        return self.norm_out(h)


class ShapeDecoder(nn.Module):
    """Self-attention over latent tokens, then a cross-attention read-out at query points."""

    def __init__(self, in_channels: int, width: int, num_attention_heads: int, num_layers: int,
                 out_channels: int = 1):
        super().__init__()
        block = dict(dim=width, num_attention_heads=num_attention_heads)
        self.blocks = nn.ModuleList(
            [TransformerBlock(**block) for _ in range(num_layers)]
            + [TransformerBlock(**block, use_self_attention=False, cross_attention_dim=width,
                                cross_attention_norm="layer_norm")]
        )
        self.proj_query = nn.Linear(in_channels, width)
        self.norm_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, out_channels)

    def memory(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks[:-1]:
            h = block(h)
        return h

    def read(self, memory: torch.Tensor, query_features: torch.Tensor) -> torch.Tensor:
        q = self.proj_query(query_features)
        q = self.blocks[-1](q, encoder_hidden_states=memory)
        return self.proj_out(self.norm_out(q))


# ---------------------------------------------------------------- the model


@dataclass
class ShapeVAEOutput:
    sdf: torch.Tensor  # [B, Q], positive inside
    latents: torch.Tensor  # [B, M, latent_channels]
    posterior: DiagonalGaussianDistribution


class ShapeVAE(ModelMixin):
    """TripoSG-architecture VAE. `ShapeVAE(**TRIPOSG_VAE_CONFIG)` loads the official weights.

    Config keys (constructor arguments) keep the official names; `num_latents` is ours: the
    default token count for `encode` (TripoSG passes 2048 at call time).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 64,
        num_attention_heads: int = 8,
        width_encoder: int = 512,
        width_decoder: int = 1024,
        num_layers_encoder: int = 8,
        num_layers_decoder: int = 16,
        embedding_type: str = "frequency",
        embed_frequency: int = 8,
        embed_include_pi: bool = False,
        num_latents: int = 2048,
    ):
        super().__init__()
        if embedding_type != "frequency":
            raise ValueError(f"embedding_type {embedding_type!r} is not supported (only 'frequency')")
        self.embedder = FourierEmbedder(num_freqs=embed_frequency, input_dim=in_channels, include_pi=embed_include_pi)
        # Encoder input = Fourier(xyz) + the raw extra channels (normals): 51 + 3 = 54 for TripoSG.
        self.encoder = ShapeEncoder(self.embedder.out_dim + in_channels, width_encoder, num_attention_heads,
                                    num_layers_encoder)
        self.decoder = ShapeDecoder(self.embedder.out_dim, width_decoder, num_attention_heads, num_layers_decoder)
        self.quant = nn.Linear(width_encoder, 2 * latent_channels)
        self.post_quant = nn.Linear(latent_channels, width_decoder)
        self.position_channels = in_channels
        self.default_num_latents = num_latents

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        xyz, extra = x[..., : self.position_channels], x[..., self.position_channels:]
        return torch.cat([self.embedder(xyz), extra], dim=-1)

    def encode(self, points_normals: torch.Tensor, generator: Optional[torch.Generator] = None,
               num_latents: Optional[int] = None) -> DiagonalGaussianDistribution:
        """[B, N, 6] surface points (in [-1, 1]) and unit normals -> posterior over [B, M, C] latents."""
        return self.encode_tokens(points_normals, generator=generator, num_latents=num_latents)[0]

    def encode_tokens(self, points_normals: torch.Tensor, generator: Optional[torch.Generator] = None,
                      num_latents: Optional[int] = None) -> Tuple[DiagonalGaussianDistribution, torch.Tensor]:
        """`encode`, plus each latent token's anchor [B, M, 3]: the surface point it was encoded at
        (Stage II models with anchor_positions / readout_locality take them beside the latents)."""
        expected = 2 * self.position_channels
        if points_normals.shape[-1] != expected:
            raise ValueError(f"expected [B, N, {expected}] points+normals, got {tuple(points_normals.shape)}")
        m = num_latents or self.default_num_latents
        queries = select_query_points(points_normals, m, generator=generator)
        return self.encode_at(points_normals, queries), queries[..., : self.position_channels]

    def encode_at(self, points_normals: torch.Tensor, queries: torch.Tensor) -> DiagonalGaussianDistribution:
        """`encode` with the latent tokens' points given: queries [B, M, 6] (points + normals, usually
        rows of points_normals) instead of drawn by FPS. Deterministic; what `encode` runs after its
        random choice."""
        h = self.encoder(self._features(queries), self._features(points_normals))
        return DiagonalGaussianDistribution(self.quant(h))

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [B, M, C] -> decoder memory [B, M, width_decoder]; run once per shape."""
        return self.decoder.memory(self.post_quant(z))

    def query(self, memory: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        """Signed value at xyz [B, Q, 3] (positive inside, surface at 0) -> [B, Q].

        Each query point attends only to the memory, never to other queries, so any chunking of
        xyz gives the same values.
        """
        # The positions are embedded in float32 whatever the precision around them: cast to bf16
        # first, a point of a 512^3 grid moves by up to 0.72 of a cell (and fp16 by 0.06, which is
        # what the release's float16 Stage 0 gets). The embedding then takes the weights' dtype
        # (half weights run without autocast); under autocast the layers cast it themselves.
        features = self.embedder(xyz.float()).to(self.post_quant.weight.dtype)
        out = self.decoder.read(memory, features)
        # The official head predicts "outside-positive" logits; TripoSG negates them, and so do we.
        return -out[..., 0]

    def decode(self, z: torch.Tensor, xyz: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
        """decode_latents once, then query xyz in chunks -> [B, Q]."""
        memory = self.decode_latents(z)
        return torch.cat([self.query(memory, c) for c in xyz.split(chunk_size, dim=1)], dim=1)

    def forward(self, points_normals: torch.Tensor, xyz: torch.Tensor, generator: Optional[torch.Generator] = None,
                sample_posterior: bool = True) -> ShapeVAEOutput:
        posterior = self.encode(points_normals, generator=generator)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return ShapeVAEOutput(sdf=self.decode(z, xyz), latents=z, posterior=posterior)
