# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a video job's frames come from: a Sequencer movie strip, a movie file, a folder of
images, or another object's animation rendered by Blender; and the way a prompt's clip goes into
the Sequencer (bpy + stdlib)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import bpy

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MOVIE_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


class SourceError(Exception):
    """The chosen source cannot be used; the message says why."""


@dataclass
class VideoSource:
    path: str  # a movie file or a folder of frames, as the backend reads it
    name: str  # what to call the result
    fps: float | None  # the rate of the source's frames (before the stride); None: the movie's own
    start: int  # first frame of the source to use
    frames: int | None  # how many frames (after the stride); None: to the end
    stride: int
    scene_start: int  # scene frame of the first key


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def strips(sequence_editor):
    """The editor's strips (Blender 5 renamed `sequences` to `strips`)."""
    if sequence_editor is None:
        return []
    return sequence_editor.strips_all if hasattr(sequence_editor, "strips_all") else sequence_editor.sequences_all


def find_movie_strip(scene, name: str = ""):
    """The named movie strip, else the Sequencer's active strip if it is a movie."""
    editor = scene.sequence_editor
    if editor is None:
        raise SourceError("The scene has no Sequencer strips: add a movie strip, or choose a movie file")
    if name:
        strip = next((s for s in strips(editor) if s.name == name), None)
        if strip is None:
            raise SourceError(f"No strip named '{name}' in the Sequencer")
    else:
        strip = editor.active_strip
        if strip is None:
            raise SourceError("No active strip in the Sequencer: click a movie strip first")
    if strip.type != "MOVIE":
        raise SourceError(f"Strip '{strip.name}' is a {strip.type.lower()} strip, not a movie")
    return strip


def natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def folder_frames(directory: str) -> list[str]:
    return sorted((f for f in os.listdir(directory) if f.lower().endswith(IMAGE_SUFFIXES)), key=natural_key)


def resolve(scene, *, kind: str, input: str = "", strip_name: str = "", start: int = -1, frames: int = 0,
            stride: int = 1, fps: float = 0.0) -> VideoSource:
    """The frames a video job reads, its timing and where its keys go. `input`: the movie file
    (kind FILE) or the folder of frames (FOLDER); unused for a strip. `start` -1 and `frames` 0
    mean "from the source": the strip's visible part, else the whole clip from its first frame;
    `fps` 0 means the source's own rate (a movie's; the scene's for an image folder). The keys'
    timing comes from the result's rate (the clip's over the stride), mapped onto the scene's."""
    if stride < 1:
        raise SourceError(f"Stride must be 1 or more, got {stride}")
    scene_start = scene.frame_start
    if kind == "STRIP":
        strip = find_movie_strip(scene, strip_name)
        path = bpy.path.abspath(strip.filepath, library=strip.id_data.library)
        if not os.path.isfile(path):
            raise SourceError(f"The movie of strip '{strip.name}' is missing: {path}")
        own_fps = float(getattr(strip, "fps", 0.0) or 0.0) or None
        # Blender shows one movie frame per scene frame in the strip; its visible part starts
        # frame_offset_start frames into the movie, at scene frame frame_final_start.
        if start < 0:
            start = int(round(strip.frame_offset_start))
        if frames <= 0:
            frames = max(1, math.ceil(strip.frame_final_duration / stride))
        scene_start = int(strip.frame_final_start)
        name = os.path.splitext(strip.name)[0] or Path(path).stem
    elif kind == "FILE":
        path = bpy.path.abspath(input)
        if not input:
            raise SourceError("Choose a movie file first")
        if not os.path.isfile(path):
            raise SourceError(f"Movie file not found: {path}")
        if not path.lower().endswith(MOVIE_SUFFIXES):
            raise SourceError(f"{os.path.basename(path)} is not a movie file ({', '.join(MOVIE_SUFFIXES)})")
        own_fps = None  # the backend reads the movie's own rate
        name = Path(path).stem
    elif kind == "FOLDER":
        path = bpy.path.abspath(input)
        if not input:
            raise SourceError("Choose the folder of frames first")
        if not os.path.isdir(path):
            raise SourceError(f"Image folder not found: {path}")
        if not folder_frames(path):
            raise SourceError(f"No PNG or JPG frames in {path}")
        own_fps = scene_fps(scene)
        name = Path(path.rstrip("/\\")).name or "Frames"
    else:
        raise SourceError(f"Unknown source {kind!r}")
    return VideoSource(path=path, name=name, fps=float(fps) if fps > 0 else own_fps, start=max(0, start),
                       frames=frames if frames > 0 else None, stride=stride, scene_start=scene_start)


def add_movie_strip(scene, name: str, path: str, frame_start: int):
    """A movie strip of `path` from `frame_start`, on the lowest channel where it overlaps no
    other strip (so it hides nothing and nothing is shuffled), made the active strip. Raises
    SourceError, leaving the Sequencer as it was, when Blender cannot read the movie."""
    created = scene.sequence_editor is None
    editor = scene.sequence_editor_create()
    collection = editor.strips if hasattr(editor, "strips") else editor.sequences
    others = list(strips(editor))
    top = min(128, max((s.channel for s in others), default=0) + 1)
    try:
        strip = collection.new_movie(name, path, top, frame_start)
    except RuntimeError as exc:
        if created:
            scene.sequence_editor_clear()
        raise SourceError(f"Blender cannot read the clip {path}: {exc}") from None
    start, end = strip.frame_final_start, strip.frame_final_end
    busy = {s.channel for s in others if s.frame_final_start < end and start < s.frame_final_end}
    strip.channel = next(c for c in range(1, top + 1) if c not in busy or c == top)
    editor.active_strip = strip
    return strip


def first_frame_image(source: VideoSource):
    """An image datablock showing the source's first used frame (a movie image for a movie)."""
    if os.path.isdir(source.path):
        files = folder_frames(source.path)
        if source.start >= len(files):
            raise SourceError(f"Start frame {source.start} is past the folder's {len(files)} frames")
        image = bpy.data.images.load(os.path.join(source.path, files[source.start]), check_existing=True)
        return image, 0
    image = bpy.data.images.load(source.path, check_existing=True)
    return image, source.start
