"""generate --prompt: the clip a video model makes for the prompt (backend.pipelines.prompt_video),
made first into a hidden folder beside the output, then read by the job as any clip is; it is
published with the result as prompt_video.mp4, and the report's "prompt" says what made it.

With --mesh the clip continues --view (an image of the mesh as frame 0: the add-on renders one),
so the mesh + video path moves the user's own mesh; --view alone makes a new object from it."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from ...errors import BadInput
from ...jobs import JobContext
from .outputs import Attachment

CLIP_NAME = "prompt_video.mp4"


def check_prompt_inputs(input, prompt, view, mesh) -> None:
    if prompt is None:
        if view is not None:
            raise BadInput("--view is the first frame of a prompt's clip: give --prompt too")
        if input is None:
            raise BadInput("give --input (a video or a folder of frames) or --prompt (a description to make one)")
        return
    if input is not None:
        raise BadInput("give --input or --prompt, not both: the prompt makes the clip")
    if mesh is not None and view is None:
        raise BadInput("--prompt with --mesh needs --view: an image of the mesh as the clip's first frame, in the "
                       "pose and from the view the motion should start (the Blender add-on renders one)")


@contextlib.contextmanager
def prompt_clip(ctx: JobContext, out_dir: Path, *, prompt: str, view: Optional[str], frames: Optional[int], seed: int,
                video_model: Optional[str], models_dir: Optional[str], device: str,
                low_vram: bool) -> Iterator[tuple]:
    """(the clip's path, its Attachment) for the job to read and publish; the hidden folder it
    was made in is removed when the job ends, whatever way it ends."""
    from ..prompt_video import MIN_FRAMES, make_clip

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".prompt", dir=out_dir.parent))
    try:
        made = make_clip(ctx, prompt=prompt, out=str(folder / CLIP_NAME), image=view,
                         frames=MIN_FRAMES if frames is None else frames, seed=seed, video_model=video_model,
                         models_dir=models_dir, device=device, low_vram=low_vram)
        made = {k: v for k, v in made.items() if k != "video"}
        yield folder / CLIP_NAME, Attachment(files={"prompt_video": (CLIP_NAME, str(folder / CLIP_NAME))},
                                             report={"prompt": made}, source=CLIP_NAME)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
