"""Every file format the backend reads or writes, one module each: meshes, mesh sequences and
animation.npz (`mesh`), the animated glTF (`gltf`), what a mesh file carries besides its shape
(`surface`), the clip a generation starts from (`frames`); the exporters to come belong here too.

Pure numpy at import time: trimesh, Pillow and OpenCV are imported by the functions that need them,
so reading a clip never loads the mesh libraries and the reverse.
"""

from .frames import DEFAULT_FPS, IMAGE_SUFFIXES, VIDEO_SUFFIXES, Clip, natural_key, read_frames, write_video

__all__ = ["Clip", "DEFAULT_FPS", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "natural_key", "read_frames", "write_video"]
