"""BriaRMBG: the background-removal network of RMBG-1.4, our own implementation.

RMBG-1.4 (`briaai/RMBG-1.4`) is an IS-Net ("DIS", Qin et al. 2022) trained by BRIA on its own
data. The release loads it with transformers' remote code enabled, i.e. by running the `briarmbg.py` of the
Hugging Face repository; we never do that. This module defines the same network so the released
`model.safetensors` loads strictly into OUR class, and `config.json` is read for two integers only
(plus `width_scale`, our own key for small stand-ins, which the release's file does not have).

Layout (names as in the released state_dict):

    conv_in                      3x3 conv, stride 2 (the network works at half the input size)
    stage1 .. stage6             encoder: RSU-7, RSU-6, RSU-5, RSU-4, RSU-4F, RSU-4F, a 2x2 max-pool
                                 (ceil mode) between stages
    stage5d .. stage1d           decoder: RSU-4F, RSU-4, RSU-5, RSU-6, RSU-7 on [upsampled deeper
                                 features, same-level encoder features] (channel concatenation)
    side1 .. side6               3x3 conv per decoder level (side6 on stage6) -> one logit map each,
                                 upsampled to the input size; the probabilities are their sigmoids

    RSU-L ("residual U-block" of height L): rebnconvin (to out_ch) -> a small U-Net of
    REBNCONV layers rebnconv1..rebnconv{L-1} with max-pools between them, rebnconv{L} (dilation 2)
    at the bottom, decoder rebnconv{L-1}d..rebnconv1d, output + rebnconvin's output.
    RSU-4F: the same with dilations 1, 2, 4, 8 instead of pooling (the deepest stages are small).
    REBNCONV: conv_s1 (3x3, dilated, with bias) -> bn_s1 (BatchNorm2d) -> ReLU.

Where the names and sizes come from (read, not copied): the public copies of the release's
`briarmbg.py` / `MyConfig.py` / `config.json` in github:xyMicro/RMBG-1.4 (a mirror of the Hugging
Face repository: `BriaRMBG(PreTrainedModel)` with `RMBGConfig(in_ch=3, out_ch=1)`), the same
network in github:lllyasviel/IC-Light `briarmbg.py`, and `ISNetDIS` in the original IS-Net code
(github:xuebinqin/DIS `IS-Net/models/isnet.py`, also mirrored as `models/isnet.py` in
github:JoeYZXd/RMBG-1.4), which has identical module names and widths. The released network keeps
two unused pieces of IS-Net: a `pool_in` max-pool after `conv_in` that its forward skips, and no
`outconv` fusion layer (commented out). Neither holds parameters, so neither appears here.

What is not verified here (no network access to the Hugging Face hub): the released
`model.safetensors` itself. Its names are those of the class above (config.json says it was
written by transformers 4.35.2's `save_pretrained` of `BriaRMBG`, which stores the whole
state_dict, BatchNorm's `num_batches_tracked` counters included). Independent evidence for the
widths: the sizes of the release's fp32 and fp16 ONNX exports (BatchNorm folded) imply
44,017,000 +- 1,000 weights; our conv kernels + biases are 44,017,990 (tests/test_background_removal.py).

Output: like the release, `forward` returns the six side probabilities at the input size; only the
first (`side1`, the finest) is used for masks, see `first_side_output`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .configs import ModelMixin, register_to_config

#: The released `config.json`'s model keys (its other keys are transformers metadata).
RMBG_CONFIG = dict(in_ch=3, out_ch=1)
#: Our own config key: every layer's width times this (at least 1 channel). The release's folder has
#: no such key, so it loads at 1.0, the released widths. Only for small stand-ins (tests): a
#: scaled network has the same parameter names and layout, with narrower tensors.
WIDTH_SCALE_KEY = "width_scale"

#: Keys transformers writes into config.json that describe how IT would load the model (including
#: `auto_map`, which names remote code). We read none of them and run none of it.
_TRANSFORMERS_METADATA = frozenset({
    # transformers writes "torch_dtype" up to 4.55 and "dtype" from 4.56 on.
    "architectures", "auto_map", "model_type", "torch_dtype", "dtype", "transformers_version",
    "custom_pipelines", "_name_or_path",
})


def upsample_like(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of `x` to `reference`'s height and width (half-pixel centres, as trained)."""
    return F.interpolate(x, size=reference.shape[2:], mode="bilinear", align_corners=False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    # ceil_mode keeps the last row/column of odd sizes, so every level maps back onto the one above.
    return F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


class REBNCONV(nn.Module):
    """3x3 convolution (padding = dilation, so the size is kept), batch norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of height `height` (RSU-7 ... RSU-4 of the paper).

    Levels 1..height-1 are REBNCONVs with a 2x2 max-pool after each but the last; level `height`
    is a dilation-2 REBNCONV on the last level's output (same size); the decoder walks back up,
    each step fusing the concatenation [deeper, same-level] and upsampling to the level above.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        if height < 3:
            raise ValueError(f"an RSU needs at least 3 levels, got {height}")
        self.height = height
        # Registration order = the released state_dict order: in, 1..height, then (height-1)d..1d.
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        for level in range(1, height):
            self.add_module(f"rebnconv{level}", REBNCONV(out_ch if level == 1 else mid_ch, mid_ch))
        self.add_module(f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, dilation=2))
        for level in range(height - 1, 0, -1):
            self.add_module(f"rebnconv{level}d", REBNCONV(2 * mid_ch, out_ch if level == 1 else mid_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.rebnconvin(x)
        skips = []
        h = residual
        for level in range(1, self.height):
            if level > 1:
                h = _pool(h)
            h = getattr(self, f"rebnconv{level}")(h)
            skips.append(h)
        h = getattr(self, f"rebnconv{self.height}")(h)
        for level in range(self.height - 1, 0, -1):
            h = getattr(self, f"rebnconv{level}d")(torch.cat((h, skips[level - 1]), dim=1))
            if level > 1:
                h = upsample_like(h, skips[level - 2])
        return h + residual


class RSU4F(nn.Module):
    """RSU-4 with dilated convolutions (1, 2, 4, 8) in place of pooling: for the 1/32 and 1/64
    resolution stages, where another halving would leave almost no pixels."""

    DILATIONS = (1, 2, 4, 8)

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        depth = len(self.DILATIONS)
        for level, dilation in enumerate(self.DILATIONS, start=1):
            self.add_module(f"rebnconv{level}", REBNCONV(out_ch if level == 1 else mid_ch, mid_ch, dilation))
        for level in range(depth - 1, 0, -1):
            self.add_module(f"rebnconv{level}d", REBNCONV(2 * mid_ch, out_ch if level == 1 else mid_ch,
                                                          self.DILATIONS[level - 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.rebnconvin(x)
        depth = len(self.DILATIONS)
        skips = []
        h = residual
        for level in range(1, depth):
            h = getattr(self, f"rebnconv{level}")(h)
            skips.append(h)
        h = getattr(self, f"rebnconv{depth}")(h)
        for level in range(depth - 1, 0, -1):
            h = getattr(self, f"rebnconv{level}d")(torch.cat((h, skips[level - 1]), dim=1))
        return h + residual


class BriaRMBG(ModelMixin):
    """The RMBG-1.4 network (IS-Net layout); see the module docstring for the layout and sources.

    Config keys equal the released config.json's (`in_ch`, `out_ch`), so its folder loads as is.
    About 44M parameters with the released widths. `width_scale` (ours, absent from the release's
    config, default 1.0 = the released widths) multiplies every width, for small stand-ins: the
    layout and parameter names stay the same.
    """

    @register_to_config
    def __init__(self, in_ch: int = 3, out_ch: int = 1, width_scale: float = 1.0):
        super().__init__()
        if isinstance(width_scale, bool) or not isinstance(width_scale, (int, float)) or not width_scale > 0:
            raise ValueError(f"width_scale must be a positive number, got {width_scale!r}")

        def w(channels: int) -> int:  # the released width, scaled
            return max(1, int(round(channels * width_scale)))

        self.conv_in = nn.Conv2d(in_ch, w(64), 3, stride=2, padding=1)

        self.stage1 = RSU(7, w(64), w(32), w(64))
        self.stage2 = RSU(6, w(64), w(32), w(128))
        self.stage3 = RSU(5, w(128), w(64), w(256))
        self.stage4 = RSU(4, w(256), w(128), w(512))
        self.stage5 = RSU4F(w(512), w(256), w(512))
        self.stage6 = RSU4F(w(512), w(256), w(512))

        # Each decoder stage takes [upsampled deeper output, encoder output of its level].
        self.stage5d = RSU4F(2 * w(512), w(256), w(512))
        self.stage4d = RSU(4, 2 * w(512), w(128), w(256))
        self.stage3d = RSU(5, 2 * w(256), w(64), w(128))
        self.stage2d = RSU(6, 2 * w(128), w(32), w(64))
        self.stage1d = RSU(7, 2 * w(64), w(16), w(64))

        self.side1 = nn.Conv2d(w(64), out_ch, 3, padding=1)
        self.side2 = nn.Conv2d(w(64), out_ch, 3, padding=1)
        self.side3 = nn.Conv2d(w(128), out_ch, 3, padding=1)
        self.side4 = nn.Conv2d(w(256), out_ch, 3, padding=1)
        self.side5 = nn.Conv2d(w(512), out_ch, 3, padding=1)
        self.side6 = nn.Conv2d(w(512), out_ch, 3, padding=1)

    def decoder_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(stage1d, stage2d, stage3d, stage4d, stage5d, stage6) outputs: what side1..side6 read."""
        h = self.conv_in(x)
        encoder = []
        for index, stage in enumerate((self.stage1, self.stage2, self.stage3, self.stage4, self.stage5)):
            h = stage(h if index == 0 else _pool(h))
            encoder.append(h)
        deepest = self.stage6(_pool(h))

        decoded = [deepest]
        h = deepest
        for stage, skip in zip((self.stage5d, self.stage4d, self.stage3d, self.stage2d, self.stage1d),
                               reversed(encoder)):
            h = stage(torch.cat((upsample_like(h, skip), skip), dim=1))
            decoded.append(h)
        return tuple(reversed(decoded))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """x: [B, in_ch, H, W] normalised images -> six [B, out_ch, H, W] probabilities (side1 first).

        The release also returns the decoder features (a training aid); `decoder_features` gives them.
        """
        sides = (self.side1, self.side2, self.side3, self.side4, self.side5, self.side6)
        return [torch.sigmoid(upsample_like(side(f), x)) for side, f in zip(sides, self.decoder_features(x))]

    def first_side_output(self, x: torch.Tensor) -> torch.Tensor:
        """The release's mask: the sigmoid of side1 at the input size, without computing the others."""
        return torch.sigmoid(upsample_like(self.side1(self.decoder_features(x)[0]), x))

    # ------------------------------------------------------------ loading the released folder

    @classmethod
    def config_from_file(cls, path: Union[str, Path]) -> dict:
        """Reads `in_ch` / `out_ch` (and our `width_scale` where a stand-in has it); transformers'
        own keys (auto_map ...) are ignored silently, anything else with a warning."""
        raw = json.loads(Path(path).read_text())
        known = set(RMBG_CONFIG) | {WIDTH_SCALE_KEY}
        unknown = sorted(k for k in raw if k not in known and k not in _TRANSFORMERS_METADATA
                         and not k.startswith("_"))
        if unknown:
            warnings.warn(f"{path}: ignoring config keys {cls.__name__} does not take: {', '.join(unknown)}")
        return {k: raw[k] for k in known if k in raw}

    @classmethod
    def from_pretrained(cls, directory: Union[str, Path], subfolder: Optional[str] = None,
                        device: Union[str, torch.device, None] = None,
                        dtype: Optional[torch.dtype] = torch.float32) -> "BriaRMBG":
        """Strict load (names and shapes must equal ours), then the dtype.

        The dtype is applied with `Module.to`, which converts floating tensors only: BatchNorm's
        int64 `num_batches_tracked` counters stay integers, so a re-saved folder keeps the
        released file's tensor types.
        """
        model = super().from_pretrained(directory, subfolder=subfolder, device=device, dtype=None)
        if dtype is not None:
            model.to(dtype)
        return model
