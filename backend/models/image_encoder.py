"""DINOv2 image tokens: the image conditioning of both official pipelines.

prepared RGB uint8 frames [T, H, W, 3]   (backend.preprocessing.prepare_frames)
  -> transformers' BitImageProcessor, configured by the folder's preprocessor_config.json
     (released settings: shortest edge 256, PIL bicubic, centre crop 224, ImageNet mean/std)
  -> pixel values [T, 3, 224, 224]
  -> transformers' Dinov2Model -> last_hidden_state [T, 1 + (224/14)^2 = 257, hidden]
     (DINOv2-large: hidden 1024, the cross-attention width of both denoisers).

ActionMesh (Stage I) reads `facebook/dinov2-large`, one folder holding the model and the processor
config. TripoSG (Stage 0) keeps them apart: `image_encoder_dinov2/` and `feature_extractor_dinov2/`
(`ImageEncoder.from_triposg`). The network and the resize are transformers' own on purpose: the
tokens must equal the ones the denoisers were trained on, and the parity test proves they do.

Loading is local and safe: safetensors only (pickle can run code), no hub access, and concrete
transformers classes, which never execute code shipped with the weights. transformers is imported
when an encoder is built, so importing this module costs no more than torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import BadInput
from ..io.frames import frame_list
from .configs import IncompatibleWeights

MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PROCESSOR_CONFIG = "preprocessor_config.json"
#: Processor classes whose settings BitImageProcessor reproduces (the fast one is the same recipe
#: on torch tensors; the official code always runs the PIL-based one, and so do we).
PROCESSOR_TYPES = ("BitImageProcessor", "BitImageProcessorFast")
#: Frames per forward pass: one Stage I window; bounds memory for long clips.
DEFAULT_BATCH_SIZE = 16


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise BadInput(f"no {path.name} in {path.parent} ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from exc


def _check_model_folder(directory: Path) -> None:
    """Refuses, before transformers sees it, a folder that is not a safetensors DINOv2 model."""
    config = _read_json(directory / MODEL_CONFIG, "the DINOv2 model config")
    if config.get("model_type") != "dinov2":
        raise BadInput(f"{directory / MODEL_CONFIG} describes a {config.get('model_type')!r} model, "
                       "not DINOv2 ('model_type': 'dinov2')")
    if not any((directory / name).is_file() for name in MODEL_WEIGHTS):
        pickles = sorted(p.name for p in directory.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        hint = f" (found {', '.join(pickles)}: pickle files are refused, they can run code)" if pickles else ""
        raise BadInput(f"no DINOv2 weights in {directory}: expected {MODEL_WEIGHTS[0]}{hint}")


def _check_processor_folder(directory: Path) -> None:
    config = _read_json(directory / PROCESSOR_CONFIG, "the DINOv2 image processor settings")
    kind = config.get("image_processor_type", config.get("feature_extractor_type"))
    if kind is not None and kind not in PROCESSOR_TYPES:
        raise BadInput(f"{directory / PROCESSOR_CONFIG} is for a {kind}, not a BitImageProcessor")


def _as_rgb_frames(frames: Union[np.ndarray, Sequence[np.ndarray]]) -> list:
    """Validates prepared frames and returns them as a list of [H, W, 3] uint8 arrays."""
    frames = frame_list(frames, "[T, H, W, 3]", "encode")
    for i, frame in enumerate(frames):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise BadInput(f"frame {i}: expected RGB uint8 [H, W, 3] (prepare_frames output), "
                           f"got {frame.dtype} {frame.shape}")
    return frames


class ImageEncoder:
    """DINOv2 tokens of prepared frames, computed exactly as the official pipelines do.

    model_dir: folder with config.json + model.safetensors (a transformers Dinov2Model).
    processor_dir: folder with preprocessor_config.json; defaults to model_dir (dinov2-large layout).
    device, dtype: where and in which precision the network runs; preprocessing is float32 on CPU.
    batch_size: frames per forward pass.
    """

    def __init__(self, model_dir: Union[str, Path], processor_dir: Union[str, Path, None] = None, *,
                 device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                 batch_size: int = DEFAULT_BATCH_SIZE):
        from transformers import BitImageProcessor, Dinov2Model

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        model_dir = Path(model_dir)
        processor_dir = Path(processor_dir) if processor_dir is not None else model_dir
        _check_model_folder(model_dir)
        _check_processor_folder(processor_dir)

        try:
            model, info = Dinov2Model.from_pretrained(model_dir, use_safetensors=True, local_files_only=True,
                                                      dtype=dtype, output_loading_info=True)
        except (OSError, RuntimeError, ValueError) as exc:  # wrong shapes, unreadable file
            raise IncompatibleWeights(f"cannot load the DINOv2 model in {model_dir}: {exc}") from exc
        # transformers only warns about these and fills the gaps with random values; a conditioning
        # network with random parts would silently produce wrong tokens, so they are errors here.
        problems = {k: info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)}
        if problems:
            listed = "; ".join(f"{k.replace('_', ' ')}: {', '.join(sorted(map(str, v))[:12])}"
                               for k, v in problems.items())
            raise IncompatibleWeights(f"DINOv2 weights in {model_dir} do not fit their config.json: {listed}")

        self.model = model.to(device).eval()
        self.processor = BitImageProcessor.from_pretrained(processor_dir, local_files_only=True)
        self.batch_size = batch_size

    @classmethod
    def from_triposg(cls, root: Union[str, Path], **kwargs) -> "ImageEncoder":
        """The encoder of a TripoSG pipeline folder (`image_encoder_dinov2/`, `feature_extractor_dinov2/`)."""
        root = Path(root)
        return cls(root / "image_encoder_dinov2", root / "feature_extractor_dinov2", **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def hidden_size(self) -> int:
        """Width of every token: the cross-attention dimension the denoiser must have."""
        return int(self.model.config.hidden_size)

    def preprocess(self, frames: Union[np.ndarray, Sequence[np.ndarray]]) -> torch.Tensor:
        """Prepared RGB uint8 frames -> float32 pixel values [T, 3, crop_h, crop_w] on the CPU."""
        frames = _as_rgb_frames(frames)
        # Stated explicitly: inferring the channel axis from the shape guesses wrong on images a
        # few pixels wide.
        return self.processor.preprocess(frames, return_tensors="pt", input_data_format="channels_last").pixel_values

    @torch.no_grad()
    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pixel values [T, 3, h, w] -> tokens [T, 1 + patches, hidden] (CLS first), in the model's dtype."""
        if pixel_values.ndim != 4 or pixel_values.shape[0] == 0:
            raise BadInput(f"pixel values must be [T, 3, H, W] with T >= 1, got {tuple(pixel_values.shape)}")
        device, dtype = self.device, self.dtype
        chunks = [self.model(pixel_values=batch.to(device=device, dtype=dtype)).last_hidden_state
                  for batch in pixel_values.split(self.batch_size)]
        return torch.cat(chunks)

    def encode(self, frames: Union[np.ndarray, Sequence[np.ndarray]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prepared RGB uint8 frames [T, H, W, 3] -> (pixel_values [T, 3, 224, 224], tokens [T, 257, hidden])."""
        pixel_values = self.preprocess(frames)
        return pixel_values, self.encode_pixels(pixel_values)

