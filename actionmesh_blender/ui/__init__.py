# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's drawing: the 3D View sidebar panel (panel.py) and the preferences' boxes
(preferences.py, drawn by the preferences class)."""

from .panel import VIEW3D_PT_actionmesh

classes = (VIEW3D_PT_actionmesh,)
