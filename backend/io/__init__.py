"""Input readers: the clip a generation starts from (video, frame folder or array).

Pure numpy/Pillow at import time; OpenCV is imported only when a video is read.
"""

from .frames import DEFAULT_FPS, IMAGE_SUFFIXES, VIDEO_SUFFIXES, Clip, natural_key, read_frames

__all__ = ["Clip", "DEFAULT_FPS", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "natural_key", "read_frames"]
