"""Masks for frames that have none: the release's background removal, or the user's own masks.

The release (actionmesh/preprocessing/background_removal.py) runs every frame whose alpha is not
a usable mask (the same test as `frames.alpha_is_usable`) through RMBG-1.4:

    RGB uint8 -> float32, bilinear resize to 1024 x 1024, / 255, (x - 0.5) / 1.0
      -> BriaRMBG -> first side output (a probability map at 1024 x 1024)
      -> bilinear resize back to the frame's size, min-max normalised to 0..1, x 255, truncated
      -> Otsu threshold -> drop connected components under 200 pixels -> alpha 0 / 255

`RMBGRemover` does exactly that with our own network (backend.models.rmbg); Otsu's threshold and
the component filter are implemented here in numpy/scipy with the arithmetic of the release's
cv2 / scikit-image calls. RMBG struggles on cluttered scenes (the official README recommends
SAM2 masks for real videos), so a user's masks are first-class too: `FolderMasks` reads one mask
image per frame. Both implement `BackgroundRemover`, the interface `ensure_alpha` takes; another
remover plugs in by implementing `masks`.

Importing this module imports numpy only; torch (RMBGRemover) and scipy (the component filter)
are imported when used.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from ..errors import BadInput
from .frames import alpha_is_usable

#: The release's network input size (height, width) and normalisation (after / 255).
MODEL_INPUT_SIZE = (1024, 1024)
NORMALIZE_MEAN = 0.5
NORMALIZE_STD = 1.0
#: Connected foreground components smaller than this many pixels are dropped (the release's default).
MIN_COMPONENT_SIZE = 200
#: Mask files `FolderMasks` reads.
MASK_SUFFIXES = (".png", ".jpg", ".jpeg")

NO_REMOVER = ("frames have no alpha and no background remover is installed: run "
              "`python -m backend models download rmbg` or pass --masks DIR")

Frames = Union[np.ndarray, Sequence[np.ndarray]]


# ------------------------------------------------------------------ the interface


class BackgroundRemover(ABC):
    """Something that gives a foreground mask per RGB frame."""

    #: False: `masks` may be given any subset of a clip's frames (it looks at pixels only), so
    #: `ensure_alpha` sends just the frames that need a mask. True: the source holds one mask per
    #: frame of the clip (FolderMasks), so it is always given the whole clip, in order.
    needs_whole_clip: bool = False

    @abstractmethod
    def masks(self, frames_rgb: np.ndarray) -> np.ndarray:
        """frames_rgb: uint8 [T, H, W, 3] -> uint8 [T, H, W] alpha (255 = foreground)."""


# ------------------------------------------------------------------ refinement (numpy/scipy)


def otsu_threshold(gray: np.ndarray) -> int:
    """Otsu's threshold of a uint8 image, as OpenCV's THRESH_OTSU computes it.

    The level t (0..255) maximising the between-class variance of {<= t} and {> t} over the
    256-bin histogram; the first maximum wins. Levels that leave either class (nearly) empty are
    skipped, so an image with one grey level gets 0.
    """
    if gray.dtype != np.uint8:
        raise BadInput(f"Otsu's threshold needs a uint8 image, got {gray.dtype}")
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist / max(gray.size, 1)
    levels = np.arange(256, dtype=np.float64)
    q1 = np.cumsum(p)                       # weight of the class {<= t}
    q2 = 1.0 - q1
    mu = float(np.dot(levels, p))
    with np.errstate(divide="ignore", invalid="ignore"):
        mu1 = np.cumsum(levels * p) / q1    # mean of {<= t}
        mu2 = (mu - q1 * mu1) / q2          # mean of {> t}
        sigma = q1 * q2 * (mu1 - mu2) ** 2
    # OpenCV's guard against empty classes (FLT_EPSILON), and its strict "> max" starting at 0.
    eps = float(np.finfo(np.float32).eps)
    valid = (np.minimum(q1, q2) >= eps) & (np.maximum(q1, q2) <= 1.0 - eps)
    sigma = np.where(valid, sigma, 0.0)
    best = int(np.argmax(sigma))
    return best if sigma[best] > 0.0 else 0


def remove_small_components(foreground: np.ndarray, min_size: int = MIN_COMPONENT_SIZE) -> np.ndarray:
    """Drops 8-connected foreground components of fewer than `min_size` pixels (bool in, bool out).

    8-connectivity and "< min_size" are what the release's `skimage.measure.label` (full
    connectivity by default) followed by `remove_small_objects(labels, min_size)` do.
    """
    from scipy import ndimage

    labels, count = ndimage.label(foreground, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros(foreground.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False  # label 0 is the background
    return keep[labels]


def refine_mask(mask: np.ndarray, min_size: int = MIN_COMPONENT_SIZE) -> np.ndarray:
    """Soft uint8 mask -> 0/255 mask: Otsu binarisation (> threshold), then small specks removed."""
    foreground = mask > otsu_threshold(mask)
    return remove_small_components(foreground, min_size).astype(np.uint8) * np.uint8(255)


# ------------------------------------------------------------------ RMBG-1.4


class RMBGRemover(BackgroundRemover):
    """RMBG-1.4 with the release's pre- and post-processing (module docstring).

    model_dir: a folder with the released `config.json` + `model.safetensors` (as
    `python -m backend models download rmbg` stores them), loaded strictly into our BriaRMBG.
    input_size: the network's input (height, width); the release's 1024 x 1024 unless a test wants
    a faster, smaller run. refine=False returns the soft 0..255 mask, as the release can.
    progress: optional callable(done, total) after each frame.
    """

    def __init__(self, model_dir: Union[str, Path], device: str = "cpu", *,
                 input_size: Sequence[int] = MODEL_INPUT_SIZE, refine: bool = True,
                 min_size: int = MIN_COMPONENT_SIZE, progress: Optional[Callable[[int, int], None]] = None):
        from ..models.rmbg import BriaRMBG

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise BadInput(f"no RMBG-1.4 model in {model_dir} (config.json missing): run "
                           f"`python -m backend models download rmbg` or pass --masks DIR")
        model = BriaRMBG.from_pretrained(model_dir, device=device)
        self._setup(model, input_size, refine, min_size, progress)

    @classmethod
    def from_model(cls, model, *, input_size: Sequence[int] = MODEL_INPUT_SIZE, refine: bool = True,
                   min_size: int = MIN_COMPONENT_SIZE,
                   progress: Optional[Callable[[int, int], None]] = None) -> "RMBGRemover":
        """Wraps a BriaRMBG already in memory (its device and dtype are used as they are)."""
        remover = cls.__new__(cls)
        remover._setup(model.eval(), input_size, refine, min_size, progress)
        return remover

    def _setup(self, model, input_size, refine, min_size, progress) -> None:
        self.model = model
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.refine = refine
        self.min_size = int(min_size)
        self.progress = progress

    def preprocess(self, frame_rgb: np.ndarray):
        """uint8 [H, W, 3] -> float [1, 3, h, w] network input, in the release's operation order."""
        import torch
        import torch.nn.functional as F

        image = torch.from_numpy(np.ascontiguousarray(frame_rgb)).to(torch.float32).permute(2, 0, 1)
        image = F.interpolate(image[None], size=self.input_size, mode="bilinear", align_corners=False)
        return (image / 255.0 - NORMALIZE_MEAN) / NORMALIZE_STD

    @staticmethod
    def postprocess(probability, size: Sequence[int]) -> np.ndarray:
        """[1, 1, h, w] probabilities -> uint8 [H, W]: resized back, min-max to 0..255, truncated.

        A constant map has no foreground to tell apart: it gives an all-zero mask (the release
        would divide by zero).
        """
        import torch
        import torch.nn.functional as F

        resized = F.interpolate(probability, size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
        low, high = torch.min(resized), torch.max(resized)
        if not bool(high > low):
            return np.zeros(tuple(size), dtype=np.uint8)
        scaled = (resized - low) / (high - low) * 255
        return scaled.float().cpu().numpy().astype(np.uint8)

    def soft_mask(self, frame_rgb: np.ndarray) -> np.ndarray:
        """One frame's unrefined mask (uint8 0..255)."""
        import torch

        parameter = next(self.model.parameters())
        with torch.no_grad():
            x = self.preprocess(frame_rgb).to(device=parameter.device, dtype=parameter.dtype)
            probability = self.model.first_side_output(x)
        return self.postprocess(probability, frame_rgb.shape[:2])

    def masks(self, frames_rgb: np.ndarray) -> np.ndarray:
        frames_rgb = _check_rgb(frames_rgb)
        out = np.empty(frames_rgb.shape[:3], dtype=np.uint8)
        # One frame at a time, as the release: the min-max is per frame anyway, and a 1024^2
        # activation stack per frame is what fits everywhere.
        for i, frame in enumerate(frames_rgb):
            mask = self.soft_mask(frame)
            out[i] = refine_mask(mask, self.min_size) if self.refine else mask
            if self.progress is not None:
                self.progress(i + 1, len(frames_rgb))
        return out


# ------------------------------------------------------------------ the user's own masks


def _natural_key(name: str):
    """"frame_2" before "frame_10": digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_mask(path: Path) -> np.ndarray:
    """A mask image -> uint8 [H, W]: its alpha channel when it has a non-opaque one (a cut-out),
    otherwise its luminance (white = foreground), as given (soft edges kept)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                alpha = np.asarray(image.convert("RGBA"))[..., 3]
                if alpha.min() < 255:
                    return alpha.copy()
            return np.asarray(image.convert("L")).copy()
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read mask {path}: {exc}") from exc


class FolderMasks(BackgroundRemover):
    """The user's masks: one image per frame (PNG or JPG, white or opaque = foreground).

    Without `frame_names` the masks are matched to the frames in sorted order (natural order:
    2 before 10), and their count must equal the clip's frame count. With `frame_names` (the
    frames' file names) each frame takes the mask with the same name stem (`0007.png` for
    `0007.jpg`). Masks must have the frames' size; they are not resized, since a mask of another
    size usually belongs to another clip. JPEG masks carry compression noise; PNG is better.
    """

    needs_whole_clip = True

    def __init__(self, directory: Union[str, Path], frame_names: Optional[Sequence[str]] = None):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise BadInput(f"mask folder {self.directory} does not exist")
        self.files = sorted((p for p in self.directory.iterdir()
                             if p.is_file() and p.suffix.lower() in MASK_SUFFIXES),
                            key=lambda p: _natural_key(p.name))
        if not self.files:
            raise BadInput(f"mask folder {self.directory} holds no {'/'.join(MASK_SUFFIXES)} images")
        self.frame_names = list(frame_names) if frame_names is not None else None

    def _files_for(self, count: int) -> list:
        if self.frame_names is None:
            if len(self.files) != count:
                raise BadInput(f"{len(self.files)} mask images in {self.directory} but {count} frames: "
                               f"give exactly one mask per frame")
            return list(self.files)
        if len(self.frame_names) != count:
            raise BadInput(f"{len(self.frame_names)} frame names for {count} frames")
        by_stem = {}
        for path in self.files:
            if path.stem in by_stem:
                raise BadInput(f"two masks named {path.stem} in {self.directory}: "
                               f"{by_stem[path.stem].name} and {path.name}")
            by_stem[path.stem] = path
        missing = [name for name in self.frame_names if Path(name).stem not in by_stem]
        if missing:
            shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
            raise BadInput(f"no mask in {self.directory} for frame(s) {shown}: masks are matched by name stem")
        return [by_stem[Path(name).stem] for name in self.frame_names]

    def masks(self, frames_rgb: np.ndarray) -> np.ndarray:
        frames_rgb = _check_rgb(frames_rgb)
        height, width = frames_rgb.shape[1:3]
        out = np.empty(frames_rgb.shape[:3], dtype=np.uint8)
        for i, path in enumerate(self._files_for(len(frames_rgb))):
            mask = read_mask(path)
            if mask.shape != (height, width):
                raise BadInput(f"mask {path.name} is {mask.shape[1]}x{mask.shape[0]} pixels but the frames "
                               f"are {width}x{height}")
            out[i] = mask
        return out


# ------------------------------------------------------------------ applying masks


def _check_rgb(frames_rgb) -> np.ndarray:
    frames_rgb = np.asarray(frames_rgb)
    if frames_rgb.dtype != np.uint8 or frames_rgb.ndim != 4 or frames_rgb.shape[-1] != 3:
        raise BadInput(f"expected RGB frames uint8 [T, H, W, 3], got {frames_rgb.dtype} {frames_rgb.shape}")
    return frames_rgb


def apply_masks(frames_rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] + uint8 [T, H, W] -> RGBA uint8 [T, H, W, 4] (colours untouched)."""
    frames_rgb = _check_rgb(frames_rgb)
    alpha = np.asarray(alpha)
    if alpha.dtype != np.uint8 or alpha.shape != frames_rgb.shape[:3]:
        raise BadInput(f"masks must be uint8 {frames_rgb.shape[:3]}, got {alpha.dtype} {alpha.shape}")
    return np.concatenate([frames_rgb, alpha[..., None]], axis=-1)


def _stack(frames: Frames) -> np.ndarray:
    """[T, H, W, 3|4] uint8, one size for all frames."""
    if isinstance(frames, np.ndarray):
        stacked = frames
    else:
        frames = [np.asarray(f) for f in frames]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise BadInput(f"all frames must have the same size and channels, got {sorted(shapes)}")
        stacked = np.stack(frames) if frames else np.empty((0, 0, 0, 3), dtype=np.uint8)
    if len(stacked) == 0:
        raise BadInput("no frames")
    if stacked.dtype != np.uint8 or stacked.ndim != 4 or stacked.shape[-1] not in (3, 4):
        raise BadInput(f"expected frames uint8 [T, H, W, 3 or 4], got {stacked.dtype} {stacked.shape}")
    return stacked


def has_usable_alpha(frame: np.ndarray) -> bool:
    """Whether a frame [H, W, 3|4] keeps its own alpha (the release's `_has_a_valid_alpha_mask`):
    it has an alpha channel and that channel is a usable mask. Otherwise it takes a remover's."""
    return frame.shape[-1] == 4 and alpha_is_usable(frame[..., 3])


def ensure_alpha(frames: Frames, remover: Optional[BackgroundRemover] = None) -> np.ndarray:
    """RGBA uint8 [T, H, W, 4] where every frame has a mask.

    Frames whose alpha is a usable mask (`frames.alpha_is_usable`, the release's test) are kept
    as they are; the others (RGB, or an alpha that is blank / fully opaque) take the remover's
    mask over their RGB. Raises BadInput when some frame needs a mask and there is no remover.
    """
    stacked = _stack(frames)
    needs = [i for i, frame in enumerate(stacked) if not has_usable_alpha(frame)]
    if stacked.shape[-1] == 4 and not needs:
        return stacked
    if remover is None:
        raise BadInput(NO_REMOVER)

    rgb = np.ascontiguousarray(stacked[..., :3])
    out = np.empty(stacked.shape[:3] + (4,), dtype=np.uint8)
    out[..., :3] = rgb
    if stacked.shape[-1] == 4:
        out[..., 3] = stacked[..., 3]
    if getattr(remover, "needs_whole_clip", False):
        alpha = _checked_masks(remover.masks(rgb), len(stacked), stacked.shape[1:3])
        out[needs, ..., 3] = alpha[needs]
    else:
        out[needs, ..., 3] = _checked_masks(remover.masks(rgb[needs]), len(needs), stacked.shape[1:3])
    return out


def _checked_masks(alpha, count: int, size) -> np.ndarray:
    """A remover's output, validated: plug-in removers are outside our control."""
    alpha = np.asarray(alpha)
    if alpha.dtype != np.uint8 or alpha.shape != (count, *size):
        raise BadInput(f"the background remover returned {alpha.dtype} {alpha.shape}, "
                       f"expected uint8 {(count, *size)}")
    return alpha
