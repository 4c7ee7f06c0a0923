"""ActionMesh's Stage I sampler: flow matching over a window of frames, some of them known.

The window's latents start as known frames' clean latents and noise elsewhere
(x = cond * mask + noise * (1 - mask)). Each step the denoiser sees every frame (known ones at
diffusion time 0, see TemporalDenoiser) and only the unknown frames move:
x[unknown] += d_i v[unknown]. Guidance: the batch is [image context zeroed | image context], the
known frames given in both, v = v_0 + g (v_1 - v_0) (g = 7.5 in the release).

The schedule (timesteps in 0..1000, S + 1 of them for S steps, and the step sizes d_i, their
differences / 1000): with shift(s) = k s / (1 + (k - 1) s), k = 3, the timesteps are spaced
evenly from 1000 down to 1000 shift(1/1000), the smallest noise of the training grid, and then
shifted again (so the last is 1000 shift(shift(1/1000)), about 8.93: the loop never reaches 0).

The starting noise (`initial_noise`): the release draws, from the window's generator, a tensor
shared by all frames [B, 1, N, C] FIRST, then the per-frame one [B, T, N, C], and mixes them with
weights sqrt(0) and sqrt(1) (its noise correlation is 0): the result is the second draw, bit for
bit. The first draw still advances the generator, so it is drawn and dropped here too: otherwise
a seed gives the release's noise shifted by N * C values, and another result.

Upstream (read, not copied): actionmesh/scheduler/scheduler.py (SchedulerFlow: get_schedule,
_compute_timesteps in float64 then float32, get_noise, _flow_sample with is_additive=True as
configured in configs/actionmesh.yaml) and actionmesh/scheduler/guidance.py (cfg_at_inference with
guidance_at_inference [[0, 1], [1, 1]]: image context zeroed, latent condition kept).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch

from .guidance import apply_guidance


def flow_schedule(num_inference_steps: int, num_train_timesteps: int = 1000,
                  shift: float = 3.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """-> (timesteps [S + 1] float32, descending from num_train_timesteps; distances [S] float32)."""
    if num_inference_steps < 1:
        raise ValueError("need at least one step")
    n = num_train_timesteps

    def shifted(s):
        return shift * s / (1.0 + (shift - 1.0) * s)

    smallest = shifted(1.0 / n)  # the least noisy level of the training grid 1/n .. 1
    grid = np.linspace(shifted(1.0) * n, smallest * n, num_inference_steps + 1)
    timesteps = torch.from_numpy((shifted(grid / n) * n).astype(np.float32))
    distances = (timesteps[:-1] - timesteps[1:]) / n
    return timesteps, distances


class TemporalFlowScheduler:
    """Stage I sampling: `sample(denoiser, latents, context, mask, framestep)`."""

    def __init__(self, num_inference_steps: int = 30, num_train_timesteps: int = 1000, shift: float = 3.0):
        self.num_inference_steps = num_inference_steps
        self.num_train_timesteps = num_train_timesteps
        self.shift = shift

    def schedule(self) -> Tuple[torch.Tensor, torch.Tensor]:
        return flow_schedule(self.num_inference_steps, self.num_train_timesteps, self.shift)

    @staticmethod
    def initial_noise(latent_shape: Tuple[int, ...], num_frames: int, generator: torch.Generator,
                      batch_size: int = 1) -> torch.Tensor:
        """A window's starting noise [B, T, *latent_shape] float32, drawn as the release draws it
        (module docstring): same generator, same seed, same values."""
        device = generator.device
        torch.randn((batch_size, 1) + tuple(latent_shape), generator=generator, device=device)  # the shared draw
        return torch.randn((batch_size, num_frames) + tuple(latent_shape), generator=generator, device=device)

    @torch.no_grad()
    def sample(
        self,
        denoiser: Callable[..., torch.Tensor],
        latents: torch.Tensor,
        context: torch.Tensor,
        mask: Optional[torch.Tensor],
        framestep: torch.Tensor,
        guidance_scale: float = 7.5,
        callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
    ) -> torch.Tensor:
        """Denoise a window.

        denoiser(hidden_states, context, framestep, diffusion_time, mask) -> velocity (a
        TemporalDenoiser). latents [B, T, N, C]: known frames clean, the others noise; context
        [B, T, M, D] image tokens; mask [B, T] 1 = known (None: none known); framestep [B, T].
        callback(i, t, latents) after each step. Returns new latents [B, T, N, C]; known frames
        keep their input values exactly. The input is not modified.
        """
        if mask is None:
            mask = torch.zeros(latents.shape[:2], dtype=latents.dtype, device=latents.device)
        mask = mask.to(latents.dtype)
        unknown = (mask == 0)[..., None, None]
        timesteps, distances = self.schedule()
        timesteps, distances = timesteps.to(latents.device), distances.to(latents.device)
        guided = guidance_scale != 1.0
        if guided:
            context_in = torch.cat([torch.zeros_like(context), context], dim=0)
            mask_in, framestep_in = torch.cat([mask, mask], dim=0), torch.cat([framestep, framestep], dim=0)
        else:
            context_in, mask_in, framestep_in = context, mask, framestep
        for i, t in enumerate(timesteps[:-1]):
            model_input = torch.cat([latents, latents], dim=0) if guided else latents
            velocity = denoiser(model_input, context_in, framestep_in, t.to(latents.dtype), mask_in)
            if guided:
                velocity = apply_guidance(velocity, [guidance_scale])
            latents = torch.where(unknown, latents + distances[i] * velocity, latents)
            if callback is not None:
                callback(i, t, latents)
        return latents
