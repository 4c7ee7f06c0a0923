"""Reading a clip: a video file, a folder of PNG/JPG frames, or frames already in memory.

`read_frames(source, start=, frames=, stride=, fps=)` -> `Clip`: uint8 frames [T, H, W, 3|4]
(RGBA kept where the input has an alpha channel), the playback rate and, for a folder, the
frame file names (so user masks can be matched by name).

Selection: frames start, start + stride, ... (`frames` of them, default: to the end of the
clip, or the first `max_frames` of those where a caller caps it: `Clip.more_frames` then says
whether frames were left out). The clip's rate is the video's own (or `fps` when given; 24 for a folder or an array);
taking every `stride`-th frame divides it by `stride`, so the animation lasts as long as the
footage did.

Everything the pipeline cannot work with is refused here with BadInput, before any model is
loaded: a missing, unreadable or empty video, fewer than 2 frames, frames of different sizes,
a start or count outside the clip.

OpenCV (opencv-python-headless) is imported only for videos. It decodes colour only: a video's
alpha channel (rare: ProRes 4444, VP9 with alpha) is not read, so such clips take masks from
--masks or the background remover; export RGBA frames as PNG to keep the alpha.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from ..errors import BadInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
DEFAULT_FPS = 24.0
MIN_FRAMES = 2  # an animation needs a start and an end

Source = Union[str, Path, np.ndarray, Sequence[np.ndarray]]


@dataclass
class Clip:
    """The selected frames of an input clip."""

    frames: np.ndarray  # uint8 [T, H, W, 3 or 4]
    fps: float  # playback rate of the selected frames
    source: str  # path, or "<array>"
    indices: List[int]  # which frames of the source were taken
    names: Optional[List[str]] = None  # frame file names (folder input), for mask matching
    source_fps: float = DEFAULT_FPS  # the rate of the source before the stride
    source_frames: Optional[int] = None  # how many frames the source has (None: not read to its end)
    notes: List[str] = field(default_factory=list)
    more_frames: bool = False  # max_frames left selectable frames out

    @property
    def has_alpha(self) -> bool:
        return self.frames.shape[-1] == 4

    def __len__(self) -> int:
        return len(self.frames)


def frame_list(frames, layout: str, purpose: str) -> list:
    """An array [T, H, W, C] or a sequence of [H, W, C] images -> a non-empty list of arrays;
    BadInput naming `layout` (e.g. "[T, H, W, 4]") or saying there is nothing to `purpose`. The
    callers check each frame's channels themselves, each for what it needs."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise BadInput(f"frames must be an array {layout}, got shape {frames.shape}")
        frames = list(frames)
    else:
        frames = [np.asarray(f) for f in frames]
    if not frames:
        raise BadInput(f"no frames to {purpose}")
    return frames


def natural_key(name: str):
    """"frame_2" before "frame_10": digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _check_selection(start: int, frames: Optional[int], stride: int) -> None:
    for name, value in (("start", start), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise BadInput(f"{name} must be an integer, got {value!r}")
    if start < 0:
        raise BadInput(f"start must be 0 or more, got {start}")
    if stride < 1:
        raise BadInput(f"stride must be 1 or more, got {stride}")
    if frames is not None:
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)):
            raise BadInput(f"frames must be an integer, got {frames!r}")
        if frames < MIN_FRAMES:
            raise BadInput(f"frames must be at least {MIN_FRAMES} (an animation needs a start and an end), "
                           f"got {frames}")


def _selected(total: int, start: int, frames: Optional[int], stride: int, what: str,
              max_frames: Optional[int] = None) -> List[int]:
    """The source indices to take from a clip of `total` frames (at most `max_frames` when
    `frames` is not given); BadInput when outside it."""
    if total == 0:
        raise BadInput(f"{what} holds no frames")
    if start >= total:
        raise BadInput(f"start {start} is outside {what}, which has {total} frame(s) (0..{total - 1})")
    available = len(range(start, total, stride))
    count = available if frames is None else frames
    if frames is None and max_frames is not None:
        count = min(count, max_frames)
    if count > available:
        raise BadInput(f"{count} frames from {start} every {stride} need {start + (count - 1) * stride + 1} "
                       f"frames, but {what} has {total}")
    if count < MIN_FRAMES:
        raise BadInput(f"{what} gives only {count} frame from start {start} (stride {stride}); an animation "
                       f"needs at least {MIN_FRAMES}")
    return list(range(start, start + count * stride, stride))


def _check_fps(fps: Optional[float]) -> Optional[float]:
    if fps is None:
        return None
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise BadInput(f"fps must be a number, got {fps!r}") from None
    if not (math.isfinite(fps) and fps > 0):
        raise BadInput(f"fps must be a positive number, got {fps}")
    return fps


def _same_size(frames: Sequence[np.ndarray], names: Sequence[str]) -> None:
    size = frames[0].shape[:2]
    for frame, name in zip(frames[1:], names[1:]):
        if frame.shape[:2] != size:
            raise BadInput(f"{name} is {frame.shape[1]}x{frame.shape[0]} pixels but {names[0]} is "
                           f"{size[1]}x{size[0]}: all frames must have the same size")


def _unify_channels(frames: List[np.ndarray]) -> np.ndarray:
    """Frames of 3 and 4 channels mixed: all RGBA, the RGB ones fully opaque (their alpha is then
    not a usable mask, so they go to the background remover like any RGB frame)."""
    if any(f.shape[-1] == 4 for f in frames) and any(f.shape[-1] == 3 for f in frames):
        opaque = lambda f: np.concatenate([f, np.full(f.shape[:2] + (1,), 255, np.uint8)], -1)  # noqa: E731
        frames = [f if f.shape[-1] == 4 else opaque(f) for f in frames]
    return np.stack(frames)


# ------------------------------------------------------------------ sources


def _read_image(path: Path) -> np.ndarray:
    """uint8 [H, W, 4] when the file has an alpha channel (or a transparent palette entry), else [H, W, 3]."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
            return np.asarray(image.convert("RGBA" if has_alpha else "RGB")).copy()
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read frame {path.name}: {exc}") from exc


def _read_folder(directory: Path, start: int, frames: Optional[int], stride: int, fps: Optional[float],
                 max_frames: Optional[int]) -> Clip:
    files = sorted((p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: natural_key(p.name))
    what = f"the folder {directory}"
    if not files:
        raise BadInput(f"{what} holds no {'/'.join(IMAGE_SUFFIXES)} frames")
    indices = _selected(len(files), start, frames, stride, what, max_frames)
    chosen = [files[i] for i in indices]
    images = [_read_image(p) for p in chosen]
    names = [p.name for p in chosen]
    _same_size(images, names)
    rate = fps or DEFAULT_FPS
    return Clip(_unify_channels(images), rate / stride, str(directory), indices, names, rate, len(files),
                more_frames=frames is None and indices[-1] + stride < len(files))


def _read_video(path: Path, start: int, frames: Optional[int], stride: int, fps: Optional[float],
                max_frames: Optional[int]) -> Clip:
    try:
        import cv2
    except ImportError:
        raise BadInput("reading a video needs OpenCV: pip install -r backend/requirements.txt "
                       "(or give a folder of PNG/JPG frames)") from None
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise BadInput(f"cannot open the video {path.name}: not a video OpenCV can decode")
        file_fps = capture.get(cv2.CAP_PROP_FPS)
        last = None if frames is None else start + (frames - 1) * stride
        if frames is None and max_frames is not None:
            last = start + max_frames * stride  # one frame past the cap: whether there is more
        decoded, taken = 0, []
        while last is None or decoded <= last:
            ok, bgr = capture.read()
            if not ok or bgr is None:
                break
            if decoded >= start and (decoded - start) % stride == 0:
                if bgr.ndim == 2:  # grey video
                    bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
                taken.append(cv2.cvtColor(bgr[..., :3], cv2.COLOR_BGR2RGB))
            decoded += 1
    finally:
        capture.release()
    what = f"the video {path.name}"
    if decoded == 0:
        raise BadInput(f"{what} holds no frames OpenCV can decode (empty, truncated or an unsupported codec)")
    reached_end = last is None or decoded <= last
    # The count is exact when the video was read to its end; otherwise it has at least `decoded`.
    indices = _selected(decoded, start, frames, stride, what, max_frames)
    if file_fps and math.isfinite(file_fps) and file_fps > 0:
        rate = fps or float(file_fps)
        notes = []
    else:
        rate = fps or DEFAULT_FPS
        notes = [] if fps else [f"{what} states no frame rate; {DEFAULT_FPS:g} fps assumed (pass --fps)"]
    clip = Clip(np.stack(taken[:len(indices)]), rate / stride, str(path), indices, None, rate,
                decoded if reached_end else None, notes, more_frames=len(taken) > len(indices))
    _same_size(list(clip.frames), [f"frame {i}" for i in indices])
    return clip


def _from_array(frames_in, start: int, frames: Optional[int], stride: int, fps: Optional[float],
                max_frames: Optional[int]) -> Clip:
    items = list(frames_in) if not isinstance(frames_in, np.ndarray) else frames_in
    if isinstance(items, np.ndarray) and items.ndim != 4:
        raise BadInput(f"frames must be an array [T, H, W, 3 or 4], got shape {items.shape}")
    indices = _selected(len(items), start, frames, stride, "the given frames", max_frames)
    chosen = [np.asarray(items[i]) for i in indices]
    for i, frame in zip(indices, chosen):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
            raise BadInput(f"frame {i}: expected uint8 [H, W, 3 or 4], got {frame.dtype} {frame.shape}")
    _same_size(chosen, [f"frame {i}" for i in indices])
    rate = fps or DEFAULT_FPS
    return Clip(_unify_channels(chosen), rate / stride, "<array>", indices, None, rate, len(items),
                more_frames=frames is None and indices[-1] + stride < len(items))


def read_frames(source: Source, *, start: int = 0, frames: Optional[int] = None, stride: int = 1,
                fps: Optional[float] = None, max_frames: Optional[int] = None) -> Clip:
    """Read and select a clip's frames (module docstring). `fps` overrides the video's own rate;
    `max_frames` caps the selection when `frames` is not given (a video is not decoded past it)."""
    _check_selection(start, frames, stride)
    fps = _check_fps(fps)
    if max_frames is not None and max_frames < MIN_FRAMES:
        raise ValueError(f"max_frames must be at least {MIN_FRAMES}, got {max_frames}")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return _read_folder(path, start, frames, stride, fps, max_frames)
        if not path.is_file():
            raise BadInput(f"input not found: {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise BadInput(f"{path.name} is a single image; give a video or a folder of at least {MIN_FRAMES} frames")
        return _read_video(path, start, frames, stride, fps, max_frames)
    return _from_array(source, start, frames, stride, fps, max_frames)


def write_video(path, frames: np.ndarray, fps: float) -> Path:
    """uint8 frames [T, H, W, 3] -> an MPEG-4 video (`mp4v`, which OpenCV's bundled FFmpeg writes
    on every platform and Blender's Sequencer plays). Lossy: keep the frames themselves where
    exact pixels matter."""
    import cv2

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"write_video needs uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write an MPEG-4 video to {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path
