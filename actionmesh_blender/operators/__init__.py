# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators: one module per family; `classes` lists them in registration order.

job.py      the shared job machinery (start, modal or blocking wait, cancel, finish, fail) and Cancel
sequence.py mesh sequence -> shape keys on the active mesh (`register` job)
video.py    video -> new animated object, video / another object's motion -> active mesh, Show Frame 0
(Set Up Backend and the model manager live with their preferences UI: backend_setup.py, models_ui.py.)
"""

from .job import ACTIONMESH_OT_cancel_job, JobOperator, UserError
from .sequence import ACTIONMESH_OT_animate_from_sequence
from .video import (ACTIONMESH_OT_animate_from_video, ACTIONMESH_OT_generate_from_video, ACTIONMESH_OT_show_frame0,
                    ACTIONMESH_OT_transfer_motion)

classes = (
    ACTIONMESH_OT_animate_from_sequence,
    ACTIONMESH_OT_generate_from_video,
    ACTIONMESH_OT_animate_from_video,
    ACTIONMESH_OT_transfer_motion,
    ACTIONMESH_OT_show_frame0,
    ACTIONMESH_OT_cancel_job,
)

__all__ = ["classes", "JobOperator", "UserError"] + [c.__name__ for c in classes]
