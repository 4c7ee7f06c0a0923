"""Input preparation before the models: frames cropped and composited as the release does.

Pure numpy; importing this package imports neither torch nor transformers.
"""

from .frames import PADDING_RATIO, PreparedFrames, alpha_box, alpha_is_usable, prepare_frames, union_box

__all__ = ["PADDING_RATIO", "PreparedFrames", "alpha_box", "alpha_is_usable", "prepare_frames", "union_box"]
