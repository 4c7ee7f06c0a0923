"""Input preparation before the models: masks for frames without one, then frames cropped and
composited as the release does.

Pure numpy at import time; importing this package imports neither torch nor transformers (the
RMBG remover imports torch when it is built).
"""

from .background import (BackgroundRemover, FolderMasks, RMBGRemover, apply_masks, ensure_alpha, otsu_threshold,
                         refine_mask, remove_small_components)
from .frames import PADDING_RATIO, PreparedFrames, alpha_box, alpha_is_usable, prepare_frames, union_box

__all__ = [
    "BackgroundRemover",
    "FolderMasks",
    "PADDING_RATIO",
    "PreparedFrames",
    "RMBGRemover",
    "alpha_box",
    "alpha_is_usable",
    "apply_masks",
    "ensure_alpha",
    "otsu_threshold",
    "prepare_frames",
    "refine_mask",
    "remove_small_components",
    "union_box",
]
