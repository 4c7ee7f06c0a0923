"""TripoSG's rectified-flow sampler: the schedule, the Euler step and the guided denoising loop.

Noise is sigma = 1 and data sigma = 0; the model predicts a velocity v pointing from noise to data,
so one step from sigma_i to sigma_{i+1} is x += (sigma_i - sigma_{i+1}) v. The schedule of n steps
is sigma_i = shift(1 - i / n), i < n, then a final 0, with shift(s) = k s / (1 + (k - 1) s)
(k = `shift`, 1 in the release: evenly spaced) or, with dynamic shifting, e^mu / (e^mu + 1/s - 1).
The model is given the timestep 1000 sigma.

Upstream (read, not copied): triposg/schedulers/scheduling_rectified_flow.py (set_timesteps: the
grid in float64, sigmas cast to float32, timesteps = float32 sigmas * 1000; step: computed in
float32, cast back to the velocity's dtype) and triposg/pipelines/pipeline_triposg.py (__call__:
the loop and its guidance batch [zero image tokens | image tokens], guidance only when the scale
is above 1). Its scheduler_config.json keys are this class's constructor arguments.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from .guidance import apply_guidance

SCHEDULER_CONFIG_NAME = "scheduler_config.json"


class RectifiedFlowScheduler:
    """`set_timesteps(n)` then `step(v, i, x)` for i < n; `sample` runs the whole guided loop."""

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0, use_dynamic_shifting: bool = False):
        self.num_train_timesteps = num_train_timesteps
        self.shift = shift
        self.use_dynamic_shifting = use_dynamic_shifting
        self.timesteps: Optional[torch.Tensor] = None  # [n] float32, 1000 sigma
        self.sigmas: Optional[torch.Tensor] = None  # [n + 1] float32, ends with 0

    @property
    def config(self) -> dict:
        return dict(num_train_timesteps=self.num_train_timesteps, shift=self.shift,
                    use_dynamic_shifting=self.use_dynamic_shifting)

    @classmethod
    def from_pretrained(cls, directory: Union[str, Path], subfolder: Optional[str] = None) -> "RectifiedFlowScheduler":
        """Reads a diffusers `scheduler/scheduler_config.json` (TripoSG's `RectifiedFlowScheduler`)."""
        directory = Path(directory) / subfolder if subfolder else Path(directory)
        raw = json.loads((directory / SCHEDULER_CONFIG_NAME).read_text())
        known = {"num_train_timesteps", "shift", "use_dynamic_shifting"}
        unknown = sorted(k for k in raw if k not in known and not k.startswith("_"))
        if unknown:
            warnings.warn(f"{directory / SCHEDULER_CONFIG_NAME}: ignoring keys {', '.join(unknown)}")
        return cls(**{k: v for k, v in raw.items() if k in known})

    def _shifted(self, sigmas: np.ndarray, mu: Optional[float]) -> np.ndarray:
        if self.use_dynamic_shifting:
            if mu is None:
                raise ValueError("use_dynamic_shifting needs mu= in set_timesteps")
            return math.exp(mu) / (math.exp(mu) + (1.0 / sigmas - 1.0))
        return self.shift * sigmas / (1.0 + (self.shift - 1.0) * sigmas)

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device, None] = None,
                      mu: Optional[float] = None) -> torch.Tensor:
        """Builds the n-step schedule; returns `timesteps` (also kept with `sigmas` on self)."""
        if num_inference_steps < 1:
            raise ValueError("need at least one step")
        grid = 1.0 - np.arange(num_inference_steps, dtype=np.float64) / num_inference_steps
        sigmas = torch.from_numpy(self._shifted(grid, mu)).to(torch.float32)
        self.timesteps = (sigmas * self.num_train_timesteps).to(device)
        self.sigmas = torch.cat([sigmas, torch.zeros(1)]).to(device)
        return self.timesteps

    def step(self, velocity: torch.Tensor, step_index: int, sample: torch.Tensor) -> torch.Tensor:
        """One Euler step from sigmas[step_index] to sigmas[step_index + 1], in float32."""
        if self.sigmas is None:
            raise RuntimeError("call set_timesteps first")
        sigma, sigma_next = self.sigmas[step_index], self.sigmas[step_index + 1]
        return (sample.float() + (sigma - sigma_next) * velocity).to(velocity.dtype)

    @torch.no_grad()
    def sample(
        self,
        transformer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        latents: torch.Tensor,
        image_embeds: torch.Tensor,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.0,
        negative_image_embeds: Optional[torch.Tensor] = None,
        callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
    ) -> torch.Tensor:
        """Denoise `latents` [B, N, C] (noise, sigma 1) into shape latents.

        transformer(latents, timestep [rows], image tokens) -> velocity (a ShapeDiT); image_embeds
        [B, M, D]; the negative condition defaults to zeros, as the release. Guidance runs when
        guidance_scale > 1. callback(i, t, latents) after each step. Returns [B, N, C].
        """
        self.set_timesteps(num_inference_steps, device=latents.device)
        guided = guidance_scale > 1.0
        if guided:
            negative = torch.zeros_like(image_embeds) if negative_image_embeds is None else negative_image_embeds
            context = torch.cat([negative, image_embeds], dim=0)
        else:
            context = image_embeds
        for i, t in enumerate(self.timesteps):
            model_input = torch.cat([latents, latents], dim=0) if guided else latents
            velocity = transformer(model_input, t.expand(model_input.shape[0]), context)
            if guided:
                velocity = apply_guidance(velocity, [guidance_scale])
            latents = self.step(velocity, i, latents)
            if callback is not None:
                callback(i, t, latents)
        return latents
