# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators: one module per family; `classes` lists them in registration order.

job.py      the one base of every backend job (start, modal or blocking wait, cancel, finish,
            fail; where it shows: the panel or the preferences) and Cancel
sequence.py mesh sequence -> shape keys on the active mesh (`register` job)
video.py    video -> new animated object, video / another object's motion -> active mesh, Show Frame 0
prompt.py   prompt -> a clip in the Sequencer to judge (`prompt_video` job), Generate then reads it as video
models.py   the model manager: Refresh, Accept Licence, Download, Verify, Remove
backend.py  Set Up Backend, Check
rig.py      Bake to Armature: the AM_ keys -> an armature, weights and bone keys (`rig` job)
"""

from . import backend, models, rig
from .job import ACTIONMESH_OT_cancel_job, JobOperator, UserError
from .prompt import ACTIONMESH_OT_make_clip
from .sequence import ACTIONMESH_OT_animate_from_sequence
from .video import (ACTIONMESH_OT_animate_from_video, ACTIONMESH_OT_generate_from_video, ACTIONMESH_OT_show_frame0,
                    ACTIONMESH_OT_transfer_motion)

classes = (
    ACTIONMESH_OT_animate_from_sequence,
    ACTIONMESH_OT_generate_from_video,
    ACTIONMESH_OT_animate_from_video,
    ACTIONMESH_OT_transfer_motion,
    ACTIONMESH_OT_show_frame0,
    ACTIONMESH_OT_make_clip,
    ACTIONMESH_OT_cancel_job,
    *rig.classes,
    *models.classes,
    *backend.classes,
)

__all__ = ["classes", "JobOperator", "UserError"] + [c.__name__ for c in classes]
